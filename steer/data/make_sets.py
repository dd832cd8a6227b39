"""Build the benchmark copies shipped in ``steer/data/sets/`` from the full files.

    python -m steer.data.make_sets SRC_DIR [OUT_DIR]

``SRC_DIR`` holds the six benchmark parquet files of the STEER authors' repository (verl's schema;
AIME24/AIME25/AMC23 repeat every problem 32 times so that ``n=1`` sampling gives avg@32). Each
output file keeps the first row of every distinct problem (``steer.data.deduplicate``: same problem
text and id, the gold checked equal across repeats), every column but a pandas index, in the
original order. ``steer.data.load_benchmark`` reads both forms alike; only ``Problem.repeats``
differs (1 here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from steer.data.benchmarks import BENCHMARKS
from steer.data.loaders import deduplicate, load_parquet


def make_set(src: Path, out: Path) -> tuple[int, int]:
    """De-duplicated copy of ``src`` at ``out``; returns (rows in, rows out)."""
    table = pq.read_table(src)
    keep = [c for c in table.schema.names if not c.startswith("__index_level")]
    rows = table.select(keep).to_pylist()
    probs = deduplicate(load_parquet(src, name=src.stem))
    idx = [int(p.source.rsplit(":", 1)[1].removeprefix("row").strip()) for p in probs]
    sub = pa.Table.from_pylist([rows[i] for i in idx], schema=table.select(keep).schema)
    pq.write_table(sub, out, compression="zstd")
    return len(rows), len(idx)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "sets"
    out.mkdir(parents=True, exist_ok=True)
    for name, fname in BENCHMARKS.items():
        n_in, n_out = make_set(src / fname, out / fname)
        print(f"{name}: {n_in} rows -> {n_out} problems, {(out / fname).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
