"""The ``steer`` command. Each area registers its own sub-commands in ``steer/<area>/cli.py``
through a ``register(subparsers)`` function; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add sub-commands. Each exposes ``register(subparsers)`` and sets
# ``func`` on the parsers it adds (argparse ``set_defaults(func=...)``).
SUBCOMMAND_MODULES = (
    "steer.train.cli",
    "steer.evaluation.cli",
    "steer.analysis.reproduce_cli",
    "steer.analysis.cli",
)


def build_parser() -> argparse.ArgumentParser:
    from steer import __version__

    parser = argparse.ArgumentParser(
        prog="steer",
        description="STEER and the entropy interventions of RLVR: train, demo and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"steer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
