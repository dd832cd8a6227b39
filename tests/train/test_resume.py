"""Exact resumption: a run stopped (or killed with SIGKILL) and resumed writes the same metrics
lines, wall-clock fields aside, as an uninterrupted run with the same seed (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steer.train.checkpoint import CheckpointError
from steer.train.metrics import read_jsonl, strip_time
from steer.train.trainer import Trainer

#: the method with the most state to restore (STEER: generator; weights depend on every ratio)
RUN = ["method.name=steer", "trainer.steps=3", "eval.at_end=true", "eval.every=2", "checkpoint.every=1"]


def _records(out: Path) -> list[dict]:
    return [strip_time(r) for r in read_jsonl(out / "metrics.jsonl")]


@pytest.fixture
def straight(small_cfg):
    cfg = small_cfg(*RUN, out="straight")
    Trainer(cfg, log=lambda m: None).fit()
    return _records(Path(cfg.logging.out_dir))


def test_stop_and_resume_equals_straight_run(small_cfg, straight):
    cfg = small_cfg(*RUN, "trainer.stop_after=1", out="resumed")
    Trainer(cfg, log=lambda m: None).fit()
    out = Path(cfg.logging.out_dir)
    assert [r["step"] for r in _records(out)] == [1]  # stopped after one step
    # a killed run may have written a line after its last checkpoint: it must be discarded
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "garbage": true}\n{"step": 3, "tor')
    cfg2 = small_cfg(*RUN, out="resumed")
    Trainer(cfg2, log=lambda m: None).fit(resume=True)
    assert _records(out) == straight


def test_resume_falls_back_from_corrupt_checkpoint(small_cfg, straight):
    cfg = small_cfg(*RUN, "trainer.stop_after=2", out="corrupt")
    Trainer(cfg, log=lambda m: None).fit()
    out = Path(cfg.logging.out_dir)
    newest = out / "checkpoints" / "step_00000002"
    data = bytearray((newest / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0x55
    (newest / "model.pt").write_bytes(bytes(data))
    logs: list[str] = []
    Trainer(small_cfg(*RUN, out="corrupt"), log=logs.append).fit(resume=True)
    assert any("corrupt" in m and "step_00000002" in m for m in logs)
    assert any("resumed from" in m and "step_00000001" in m for m in logs)
    assert _records(out) == straight


def test_resume_with_only_corrupt_checkpoints_fails_clearly(small_cfg):
    cfg = small_cfg(*RUN, "trainer.stop_after=1", out="bad")
    Trainer(cfg, log=lambda m: None).fit()
    ck = Path(cfg.logging.out_dir) / "checkpoints" / "step_00000001"
    (ck / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        Trainer(small_cfg(*RUN, out="bad"), log=lambda m: None).fit(resume=True)


def _cli(cfg_overrides: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "steer.train.cli", "train", "--config", "testbed", *extra, *cfg_overrides]


@pytest.mark.slow
def test_sigkill_and_resume_equals_straight_run(small_cfg, policy_path, tmp_path):
    """A real ``kill -9`` of a ``steer train`` process mid-run, then ``--resume``."""
    from .conftest import SMALL

    common = [*SMALL, f"model.name_or_path={policy_path}", *RUN[:1], "trainer.steps=5", "checkpoint.every=1"]
    common += ["eval.at_end=true", "eval.every=2"]
    straight_dir, killed_dir = tmp_path / "s", tmp_path / "k"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        _cli([*common, f"logging.out_dir={straight_dir}"]), check=True, env=env, capture_output=True
    )
    proc = subprocess.Popen(
        _cli([*common, f"logging.out_dir={killed_dir}"]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = killed_dir / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the training process ended before it could be killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(read_jsonl(metrics)) < 5
    subprocess.run(
        _cli([*common, f"logging.out_dir={killed_dir}"], "--resume"), check=True, env=env, capture_output=True
    )
    assert _records(killed_dir) == _records(straight_dir)
