"""Where a result came from: the code version and the machine."""

from __future__ import annotations

import os
from pathlib import Path


def _machine() -> str:
    import platform

    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"


def _provenance() -> dict:
    """The code a result came from (the git commit of the checkout, when there is one)."""
    import subprocess

    from steer import __version__

    out = {"steer_version": __version__}
    try:
        root = Path(__file__).resolve().parents[3]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode == 0:
            out["git_commit"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out
