"""Metrics sinks: a JSONL file (one line per step, flushed and fsync'ed each step) and TensorBoard.

The JSONL file is the record of a run. Its byte offset after each step is stored in the
checkpoint, so that a resumed run first truncates whatever a killed run wrote after its last
checkpoint and then appends exactly the lines an uninterrupted run would have written.
Keys under ``time/`` hold wall-clock measurements (they differ between runs; everything else is
deterministic on CPU for a given seed).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

TIME_PREFIX = "time/"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf: keep the information as a string
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class JsonlLogger:
    """Append-only JSONL writer that can truncate back to a known offset on resume."""

    def __init__(self, path: str | Path, *, truncate_to: int | None = None, fresh: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        if truncate_to is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(truncate_to)
                f.flush()
                os.fsync(f.fileno())
        self._f = open(self.path, "ab")

    def log(self, record: dict) -> int:
        """Write one record, flush + fsync, and return the file offset after it."""
        line = json.dumps({k: _clean(v) for k, v in record.items()}, sort_keys=False) + "\n"
        self._f.write(line.encode())
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


class TensorBoardLogger:
    """Scalars to TensorBoard via tensorboardX; ``purge_step`` drops events a killed run wrote
    after the checkpoint it resumes from."""

    def __init__(self, logdir: str | Path, *, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        self._w = SummaryWriter(logdir=str(logdir), purge_step=purge_step)

    def log(self, record: dict, step: int) -> None:
        for k, v in record.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or k == "step":
                continue
            if math.isfinite(float(v)):
                self._w.add_scalar(k, float(v), step)
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of a metrics file."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def strip_time(record: dict) -> dict:
    """A record without its wall-clock fields (for exact comparisons between runs)."""
    return {k: v for k, v in record.items() if not k.startswith(TIME_PREFIX)}
