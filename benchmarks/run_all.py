"""Run every benchmark module (``benchmarks/bench_*.py``) in turn.

Each module exposes ``main(argv=None) -> int`` and writes its own results file under
``benchmarks/results/`` with the machine and the date. Run one alone with
``python -m benchmarks.bench_<name>``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str] | None = None) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    wanted = set(argv or sys.argv[1:])
    failures = []
    for name in names:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        rc = importlib.import_module(f"benchmarks.{name}").main([])
        print(f"== {name}: rc={rc} in {time.perf_counter() - t0:.1f}s", flush=True)
        if rc:
            failures.append(name)
    if failures:
        print("failed:", ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
