"""Sub-commands ``steer train`` and ``steer demo`` (registered by ``steer/cli.py``)."""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from steer.train.checkpoint import CheckpointError
    from steer.train.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"steer train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        from steer.train.config import to_yaml

        print(to_yaml(cfg))
        return 0
    from steer.train.trainer import NonFiniteError, Trainer

    try:
        trainer = Trainer(cfg)
        last = trainer.fit(resume=args.resume)
    except (CheckpointError, NonFiniteError) as exc:
        print(f"steer train: {exc}", file=sys.stderr)
        return 1
    keys = ("step", "reward", "entropy", "heldout/acc")
    print(
        " ".join(
            f"{k}={last[k]:.4g}" if isinstance(last.get(k), float) else f"{k}={last.get(k)}"
            for k in keys
            if k in last
        )
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from steer.train.config import ConfigError
    from steer.train.demo import run_demo

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
    p = subparsers.add_parser(
        "train",
        help="RL-train a policy (GRPO loop, any method of the registry)",
        description="Train with a YAML config and dotted overrides, e.g. "
        "`steer train --config testbed method.name=steer method.lambda_min=0.7 optim.lr=5e-4`.",
    )
    p.add_argument(
        "--config",
        default="testbed",
        help="YAML file, or a shipped config: testbed, extreme, qwen_math_7b_dapo",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest valid checkpoint in logging.out_dir"
    )
    p.add_argument("--print-config", action="store_true", help="print the merged, validated config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides (omegaconf syntax)")
    p.set_defaults(func=_train)

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


def main(argv: list[str] | None = None) -> int:
    """``python -m steer.train.cli {train,demo} ...`` (the same sub-commands without the other
    areas' ones)."""
    parser = argparse.ArgumentParser(prog="steer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
