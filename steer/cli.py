"""The ``steer`` command. Each area registers its own sub-commands in ``steer/<area>/cli.py``
through a ``register(subparsers)`` function; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that add sub-commands. Each exposes ``register(subparsers)`` and sets
# ``func`` on the parsers it adds (argparse ``set_defaults(func=...)``).
SUBCOMMAND_MODULES = (
    "steer.train.cli",
    "steer.analysis.demo_cli",
    "steer.evaluation.cli",
    "steer.analysis.reproduce_cli",
    "steer.analysis.cli",
    "steer.models.cli",
)


def build_parser() -> argparse.ArgumentParser:
    from steer import __version__

    parser = argparse.ArgumentParser(
        prog="steer",
        description="STEER and the entropy interventions of RLVR: train, demo and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"steer {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the full traceback of an error (also {DEBUG_ENV}=1); accepted anywhere on the line",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


DEBUG_ENV = "STEER_DEBUG"


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user's input is wrong: one line and exit 2."""
    from steer.errors import UserError
    from steer.train.config import ConfigError

    return (UserError, ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A user error (a bad path, argument or config) prints one line naming the
    problem and returns 2; Ctrl-C prints one line and returns 130; ``--debug`` (anywhere on the
    command line) or ``STEER_DEBUG=1`` shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    # overrides (key=value) may come before or after the options: argparse takes only the first
    # run of positionals, so the later ones are collected here
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.parse_args(argv)  # argparse's own message and exit 2
        args.overrides = list(args.overrides) + extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = f"steer {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
    except _user_error_types() as exc:
        if debug:
            raise
        msg = str(exc).strip().splitlines()
        print(f"{name}: {msg[0] if msg else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
