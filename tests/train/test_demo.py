"""`steer demo`: every output file is produced (a fast variant on the cached micro policy, and
the real `steer demo --quick` command, warm-start included, as a slow check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from steer.analysis.demo import run_demo

EXPECTED = [
    "summary.md",
    "summary.html",
    "demo.json",
    "entropy.png",
    "accuracy.png",
    "passk.png",
    "diversity.png",
    "quadrants.png",
    "steer_weights.png",
    "response_length.png",
    "grpo/metrics.jsonl",
    "steer/metrics.jsonl",
    "grpo/config.yaml",
    "steer/config.yaml",
]


def _check_outputs(out: Path) -> dict:
    for name in EXPECTED:
        p = out / name
        assert p.is_file() and p.stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "summary.html").read_text()
    assert html.count("data:image/png;base64,") == len(list(out.glob("*.png")))
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    md = (out / "summary.md").read_text()
    assert "| metric | grpo | steer |" in md
    assert "Outcome (as measured)" in md and "Held-out accuracy at the end" in md
    meta = json.loads((out / "demo.json").read_text())
    assert set(meta["summaries"]) == {"grpo", "steer"}
    assert meta["wall_s"] > 0
    return meta


def test_demo_fast_variant_writes_every_output(tmp_path, policy_path, capsys):
    out = tmp_path / "demo"
    res = run_demo(
        out,
        quick=True,
        overrides=[f"model.name_or_path={policy_path}", "trainer.num_threads=1", "logging.tensorboard=false"],
        progress=True,
    )
    meta = _check_outputs(out)
    captured = capsys.readouterr()
    printed = captured.out
    assert "held-out accuracy at end" in printed and "grpo" in printed and "steer" in printed
    # progress while the methods train (in parallel on a machine with a core per method): a
    # bar per method that reaches the last step
    bars = captured.err.replace("\r", "\n")
    for m in ("grpo", "steer"):
        assert any(line.startswith(f"{m}:") and "3/3" in line for line in bars.splitlines()), m
    assert res["verdict"] == meta["verdict"]
    # both runs started from the same policy with the same seed: identical held-out start
    s = meta["summaries"]
    assert s["grpo"]["start/acc"] == s["steer"]["start/acc"]
    assert s["grpo"]["steps"] == s["steer"]["steps"] == 3


@pytest.mark.slow
def test_steer_demo_quick_command(tmp_path):
    """The real command, warm-start included (into a private cache)."""
    out = tmp_path / "demo"
    env = {"STEER_CACHE_DIR": str(tmp_path / "cache")}
    import os

    r = subprocess.run(
        [sys.executable, "-m", "steer.train.cli", "demo", "--quick", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    _check_outputs(out)
    assert "wall time" in r.stdout


@pytest.mark.slow
def test_demo_worker_failure_is_reported_at_once(tmp_path, policy_path):
    """A method that fails in its worker process stops the demo with that worker's traceback
    (the other worker is stopped, not waited for)."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="fewer than trainer.prompts_per_step"):
        run_demo(
            tmp_path / "demo",
            quick=True,
            overrides=[f"model.name_or_path={policy_path}", "logging.tensorboard=false", "task.train_size=2"],
            progress=False,
            parallel=True,
        )
    assert time.perf_counter() - t0 < 300
