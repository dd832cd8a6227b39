"""Where a result came from: the code version and the machine."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from steer.analysis.reproduce.claims import VERDICT_RULE


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


def result_meta(
    claim,
    *,
    quick: bool,
    seeds: Sequence[int],
    budget: list[str],
    overrides: Sequence[str],
    command: str,
    wall_s: float,
    n_run: int,
    n_reused: int,
    plots: list[str],
) -> dict:
    """The setup of a claim's result: what ran, how, when, where and from which code."""
    return {
        "claim": claim.name,
        "figure": claim.figure,
        "statement": claim.statement,
        "quick": quick,
        "seeds": list(seeds),
        "budget": budget,
        "overrides": list(overrides),
        "command": command or f"steer reproduce {claim.name}" + (" --quick" if quick else ""),
        "wall_s": wall_s,
        "n_run": n_run,
        "n_reused": n_reused,
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "rule": VERDICT_RULE,
        "plots": plots,
        **_provenance(),
    }
