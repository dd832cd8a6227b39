"""Loaders: verl-format parquet, JSONL, and HF ``datasets`` folders saved with ``save_to_disk``.

Every row is parsed (:func:`steer.data.problems.parse_row`); a malformed row raises ValueError
naming the file and the row; nothing is dropped silently. Rows without a gold answer are
collected: by default (``empty_gold="error"``) the loader refuses the file with a ValueError that
lists every such row; ``empty_gold="skip"`` drops them and warns (``EmptyGoldWarning``) naming
them. Repeated problems (the aime/amc files carry
each problem 32 times, the authors' way of sampling 32 times) are merged by
:func:`deduplicate`, which records the count in ``Problem.repeats``; the evaluator then samples k
times itself.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from steer.data.problems import EmptyGoldError, Problem, parse_row

EMPTY_GOLD_POLICIES = ("error", "skip")


class EmptyGoldWarning(UserWarning):
    """Rows without a gold answer were skipped (``empty_gold="skip"``)."""


def _finish(rows_iter, path: str, name: str, empty_gold: str = "error") -> list[Problem]:
    if empty_gold not in EMPTY_GOLD_POLICIES:
        raise ValueError(f"empty_gold must be one of {EMPTY_GOLD_POLICIES}, got {empty_gold!r}")
    out, empty = [], []
    for i, row in rows_iter:
        try:
            p = parse_row(row, where=f"{path}:row {i}", name=name)
        except EmptyGoldError:
            empty.append(i)
            continue
        if not p.id.split("/", 1)[-1] or p.id.endswith("/None"):
            p.id = f"{name}/row{i}"
        out.append(p)
    if empty:
        shown = ", ".join(str(i) for i in empty[:50]) + (f", ... ({len(empty)} in all)" if len(empty) > 50 else "")
        if empty_gold == "error":
            raise ValueError(
                f"{path}:row {empty[0]}: no gold answer (reward_model.ground_truth / answer / "
                f"final_answer); {len(empty)} row(s) without one: rows {shown} "
                "(pass empty_gold='skip' to drop them)"
            )
        warnings.warn(f"{path}: skipped {len(empty)} row(s) without a gold answer: rows {shown}", EmptyGoldWarning, stacklevel=3)
    return out


def load_parquet(path: str | os.PathLike, *, name: str | None = None, empty_gold: str = "error") -> list[Problem]:
    """All rows of a verl-format parquet file, in file order (no de-duplication).

    ``empty_gold``: ``"error"`` (refuse, listing the rows without a gold) or ``"skip"``."""
    import pyarrow.parquet as pq

    path = str(path)
    name = name or Path(path).stem
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:
        raise ValueError(f"{path}: cannot read parquet: {e}") from e
    return _finish(enumerate(rows), path, name, empty_gold)


def load_jsonl(path: str | os.PathLike, *, name: str | None = None, empty_gold: str = "error") -> list[Problem]:
    """All rows of a JSONL file (verl or flat layout), in order. Blank lines are errors too.
    ``empty_gold`` as in :func:`load_parquet`."""
    path = str(path)
    name = name or Path(path).stem

    def rows():
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:row {i}: invalid JSON: {e}") from e

    return _finish(rows(), path, name, empty_gold)


def load_hf_disk(
    path: str | os.PathLike, *, split: str | None = None, name: str | None = None, empty_gold: str = "error"
) -> list[Problem]:
    """A HF ``datasets`` folder written by ``save_to_disk`` (a Dataset, or a DatasetDict + ``split``).

    Needs the optional ``datasets`` package (imported here, lazily).
    """
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            "loading a HF datasets folder needs the 'datasets' package: pip install datasets"
        ) from e
    path = str(path)
    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise ValueError(f"{path}: DatasetDict with splits {sorted(ds)}; pass split=")
            split = next(iter(ds))
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r}; splits: {sorted(ds)}")
        ds = ds[split]
    name = name or Path(path).name
    return _finish(enumerate(ds), f"{path}[{split or 'data'}]", name, empty_gold)


HUB_PREFIX = "hf:"


def load_hub(
    repo_id: str, *, split: str = "train", name: str | None = None, empty_gold: str = "error"
) -> list[Problem]:
    """A data set on the Hugging Face hub through ``datasets.load_dataset`` (verl's schema or
    question/answer columns), cached by ``datasets`` after the first download. Needs the optional
    ``datasets`` package; offline and not cached, a one-line ``OSError`` says so."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            f"loading {HUB_PREFIX}{repo_id} needs the 'datasets' package: pip install 'steer[hf]'"
        ) from e
    try:
        ds = datasets.load_dataset(repo_id, split=split)
    except (ConnectionError, OSError) as exc:
        raise OSError(
            f"{HUB_PREFIX}{repo_id}: not in the datasets cache and the hub cannot be reached (offline?): "
            f"download it where there is a network, or pass a local parquet file ({type(exc).__name__})"
        ) from None
    return _finish(
        enumerate(ds), f"{HUB_PREFIX}{repo_id}[{split}]", name or repo_id.split("/")[-1], empty_gold
    )


def load_any(path: str | os.PathLike, **kw) -> list[Problem]:
    """Pick the loader by path: ``hf:<hub id>`` (``datasets.load_dataset``), ``.parquet``,
    ``.jsonl``/``.json``, or a directory (HF folder written by ``save_to_disk``)."""
    if str(path).startswith(HUB_PREFIX):
        return load_hub(
            str(path)[len(HUB_PREFIX) :],
            **{k: v for k, v in kw.items() if k in ("split", "name", "empty_gold")},
        )
    p = Path(path)
    if p.is_dir():
        return load_hf_disk(p, **kw)
    if p.suffix == ".parquet":
        return load_parquet(p, **{k: v for k, v in kw.items() if k in ("name", "empty_gold")})
    if p.suffix in (".jsonl", ".json"):
        return load_jsonl(p, **{k: v for k, v in kw.items() if k in ("name", "empty_gold")})
    raise ValueError(f"{path}: unknown data format (expected .parquet, .jsonl or a datasets folder)")


def deduplicate(problems: list[Problem]) -> list[Problem]:
    """Merge rows with the same problem text (and id); ``repeats`` counts them.

    Two rows with the same problem but different gold answers raise ValueError naming both rows.
    """
    seen: dict[tuple[str, str], Problem] = {}
    out = []
    for p in problems:
        key = (p.problem, p.id)
        q = seen.get(key)
        if q is None:
            p.repeats = 1
            seen[key] = p
            out.append(p)
            continue
        if q.gold != p.gold:
            raise ValueError(f"{p.source}: same problem as {q.source} but gold {p.gold!r} != {q.gold!r}")
        q.repeats += 1
    return out
