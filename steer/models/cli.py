"""``steer models`` (also ``python -m steer.models``): list the named models, or print the local
folder of one (converting it on first use).

    python -m steer.models list
    python -m steer.models path smollm2-135m-instruct     # prints the converted folder

``path`` prints anything that is not a name unchanged, so a script can pass every model through
it: ``MODEL=$(python -m steer.models path "$MODEL")``.
"""

from __future__ import annotations

import argparse
import sys


def _list(args: argparse.Namespace) -> int:
    from steer.models import MODELS, _package_version, cache_root

    root = cache_root()
    for spec in MODELS.values():
        version = _package_version(spec)
        folder = root / spec.name
        state = "converted" if (folder / "steer_model.json").is_file() else "not converted yet"
        pkg = f"{spec.package} {version}" if version else f"{spec.package} not installed ({spec.install})"
        print(f"{spec.name}\t{pkg}\t{state}: {folder}\n    {spec.description}; licence {spec.license}")
    return 0


def _path(args: argparse.Namespace) -> int:
    from steer.models import ModelNotAvailable, resolve

    try:
        print(resolve(args.name))
    except ModelNotAvailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _add(sub) -> None:
    p = sub.add_parser("list", help="the named models, their packages and cache folders")
    p.set_defaults(func=_list)
    p = sub.add_parser("path", help="print the local folder of a named model (other values unchanged)")
    p.add_argument("name", help="a named model (see list), a local folder or a hub name")
    p.set_defaults(func=_path)


def register(subparsers) -> None:
    """Add ``models`` to the ``steer`` command."""
    p = subparsers.add_parser(
        "models",
        help="named models (smollm2-135m-instruct): list them, print the converted folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    _add(sub)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m steer.models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    _add(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
