"""Sub-command ``steer demo`` (registered by ``steer/cli.py``): GRPO against STEER on the CPU
testbed, with plots and a summary (:mod:`steer.analysis.demo`)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from steer.analysis.demo import run_demo
    from steer.preflight import check_writable
    from steer.train.config import ConfigError

    check_writable(args.out, "--out")
    try:
        run_demo(
            args.out,
            quick=args.quick,
            config=args.config,
            overrides=args.overrides,
            progress=not args.no_progress,
            parallel=False if args.sequential else None,
        )
    except ConfigError as exc:
        print(f"steer demo: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers) -> None:
    d = subparsers.add_parser(
        "demo",
        help="GRPO vs STEER on the CPU testbed: metrics, plots and an honest summary in runs/demo/",
    )
    d.add_argument("--quick", action="store_true", help="a much smaller budget (seconds; used by the tests)")
    d.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    d.add_argument("--config", default="testbed", help="base config (default: the shipped testbed.yaml)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument(
        "--sequential",
        action="store_true",
        help="train the methods one after the other (default: in parallel, one process and one "
        "torch thread each, when there is a core per method)",
    )
    d.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides applied to both runs")
    d.set_defaults(func=_demo)
