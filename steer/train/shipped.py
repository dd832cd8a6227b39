"""The configs shipped with the package (``steer/configs/*.yaml``), without importing the config
machinery: ``steer train --help`` lists them at start-up."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> list[str]:
    """The names ``--config`` accepts besides a path, sorted."""
    return sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
