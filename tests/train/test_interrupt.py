"""Ctrl-C during ``steer train``: one line naming the last checkpoint and the command that continues
the run, exit 130, no traceback; that command continues the run."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from steer.train.metrics import read_jsonl

from .conftest import SMALL


def test_ctrl_c_names_the_checkpoint_and_the_resume_command(policy_path, tmp_path):
    out = tmp_path / "run"
    ov = [*SMALL, f"model.name_or_path={policy_path}", "trainer.steps=200", "checkpoint.every=1"]
    cmd = [sys.executable, "-m", "steer.cli", "train", "--config", "testbed", "--out", str(out), *ov]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ck = out / "checkpoints" / "step_00000002"
    deadline = time.time() + 120
    while not (ck / "manifest.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    last = lines[-1]
    assert "steer train: interrupted at step" in last and "last checkpoint" in last, err
    resume = shlex.split(last.split("continue with: ")[1])
    assert resume[:2] == ["steer", "train"] and "--resume" in resume
    step = int(last.split("(step ")[1].split(")")[0])
    assert step >= 2
    # the printed command continues the run (one more step here)
    rc = subprocess.run(
        [sys.executable, "-m", "steer.cli", *resume[1:], f"trainer.stop_after={step + 1}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert rc.returncode == 0, rc.stderr
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, step + 2))
