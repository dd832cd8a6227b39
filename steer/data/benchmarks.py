"""Benchmark registry: names -> parquet files.

The six evaluation sets ship with the package (``steer/data/sets/``, de-duplicated copies of the
STEER authors' files; sources and licences in ``steer/data/sets/SOURCES.md``), so ``steer eval``
works offline after ``pip install``. A folder of full files takes precedence when named: the
``data_dir`` argument (``--data-dir``), else the ``STEER_DATA_DIR`` environment variable.

The training set ``dapo17k`` is not shipped: it is read from ``data_dir`` / ``STEER_DATA_DIR``, or
from ``<repo root>/../shared/data`` in a development checkout; elsewhere the error says how to get
it (a path, or ``hf:BytedTsinghua-SIA/DAPO-Math-17k`` through the ``datasets`` library).

Repeated rows (the authors' aime24/aime25/amc23 carry each problem 32 times) are
**de-duplicated**; the evaluator samples k times per problem itself (``Problem.repeats`` keeps the
count of the file read).
"""

from __future__ import annotations

import os
from pathlib import Path

from steer.data.loaders import deduplicate, load_parquet
from steer.data.problems import Problem

BENCHMARKS: dict[str, str] = {
    "aime24": "aime24.parquet",
    "aime25": "aime25.parquet",
    "amc23": "amc23.parquet",
    "math500": "math500.parquet",
    "minerva": "minerva_math.parquet",
    "olympiad": "olympiadbench.parquet",
}
ALIASES = {"olympiadbench": "olympiad", "minerva_math": "minerva", "math_500": "math500"}
TRAIN_SETS = {"dapo17k": "DAPO-Math-17k.parquet"}
#: where the training sets live on the hub (``hf:<id>`` in ``task.train_path``)
TRAIN_SETS_HUB = {"dapo17k": "BytedTsinghua-SIA/DAPO-Math-17k"}
#: The paper's k per benchmark (avg@32 on AIME24/AIME25/AMC23, avg@1 elsewhere; section 5.1).
PAPER_K = {"aime24": 32, "aime25": 32, "amc23": 32, "math500": 1, "minerva": 1, "olympiad": 1}

ENV_VAR = "STEER_DATA_DIR"
#: the de-duplicated benchmark copies shipped as package data
SHIPPED_DIR = Path(__file__).resolve().parent / "sets"


def _candidates(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]))
    repo = Path(__file__).resolve().parents[2]
    out.append(repo.parent / "shared" / "data")
    return out


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder of full data files (``data_dir``, ``$STEER_DATA_DIR``, a development checkout's
    ``../shared/data``); FileNotFoundError naming where it looked."""
    cands = _candidates(data_dir)
    for c in cands:
        if c.is_dir():
            return c
    raise FileNotFoundError(
        "data folder not found; looked in: "
        + ", ".join(str(c) for c in cands)
        + f" (pass data_dir= / --data-dir or set {ENV_VAR})"
    )


def list_benchmarks() -> list[str]:
    return list(BENCHMARKS)


def canonical_name(name: str) -> str:
    n = name.strip().lower()
    n = ALIASES.get(n, n)
    if n not in BENCHMARKS and n not in TRAIN_SETS:
        raise ValueError(
            f"unknown benchmark {name!r}; valid: {', '.join(list(BENCHMARKS) + list(TRAIN_SETS))}"
        )
    return n


def benchmark_path(name: str, data_dir_: str | os.PathLike | None = None) -> Path:
    """The file of benchmark ``name``: in ``data_dir_`` / ``$STEER_DATA_DIR`` when given, else the
    shipped copy; the training set ``dapo17k`` from the data folder (FileNotFoundError saying how
    to get it when there is none)."""
    n = canonical_name(name)
    if n in BENCHMARKS:
        if data_dir_ is None and not os.environ.get(ENV_VAR):
            return SHIPPED_DIR / BENCHMARKS[n]
        p = data_dir(data_dir_) / BENCHMARKS[n]
    else:
        try:
            p = data_dir(data_dir_) / TRAIN_SETS[n]
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the training set {n!r} is not shipped with steer: pass the folder of "
                f"{TRAIN_SETS[n]} (--data-dir / {ENV_VAR}), or train from the hub with "
                f"task.train_path=hf:{TRAIN_SETS_HUB[n]} (the datasets library)"
            ) from None
    if not p.is_file():
        raise FileNotFoundError(f"benchmark {n!r}: file {p} does not exist")
    return p


def load_benchmark(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    dedupe: bool = True,
    limit: int | None = None,
    empty_gold: str = "error",
) -> list[Problem]:
    """Problems of benchmark ``name`` (de-duplicated by default; ``limit`` keeps the first N).

    Rows without a gold answer: ``empty_gold="error"`` (default) refuses the file naming them,
    ``"skip"`` drops them with an ``EmptyGoldWarning`` naming them."""
    n = canonical_name(name)
    probs = load_parquet(benchmark_path(n, data_dir), name=n, empty_gold=empty_gold)
    if dedupe:
        probs = deduplicate(probs)
    if limit is not None:
        probs = probs[: int(limit)]
    return probs
