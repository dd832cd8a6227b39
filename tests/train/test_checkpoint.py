"""Checkpoint files: atomic layout, manifest verification, corrupt/partial detection, fallback."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from steer.train import checkpoint as ck


def _save(root, step, value=1.0):
    return ck.save_checkpoint(
        root,
        ck.step_dir_name(step),
        model_state={"w": torch.full((3,), value)},
        optimizer_state={"state": {}, "param_groups": []},
        rng=ck.rng_state(),
        state={"step": step, "metrics_offset": 10 * step},
        config_yaml="a: 1\n",
        method_state={"generator": torch.Generator().get_state()},
    )


def test_roundtrip_and_layout(tmp_path):
    p = _save(tmp_path, 3, 2.5)
    assert sorted(x.name for x in p.iterdir()) == [
        "config.yaml",
        "manifest.json",
        "method.pt",
        "model.pt",
        "optimizer.pt",
        "rng.pt",
        "state.json",
    ]
    man = json.loads((p / "manifest.json").read_text())
    assert set(man["files"]) == {
        "config.yaml",
        "method.pt",
        "model.pt",
        "optimizer.pt",
        "rng.pt",
        "state.json",
    }
    loaded = ck.load_checkpoint(p)
    assert torch.equal(loaded.model_state["w"], torch.full((3,), 2.5))
    assert loaded.state == {"step": 3, "metrics_offset": 30}
    assert not any(x.name.startswith(".tmp") for x in tmp_path.iterdir())


def test_rng_state_roundtrip():
    state = ck.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(2))
    ck.set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_corrupt_file_detected_and_fallback(tmp_path):
    _save(tmp_path, 1)
    p2 = _save(tmp_path, 2)
    data = bytearray((p2 / "model.pt").read_bytes())
    data[-5] ^= 0xFF
    (p2 / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match="model.pt"):
        ck.verify_checkpoint(p2)
    with pytest.raises(ck.CheckpointError):
        ck.load_checkpoint(p2)
    logs = []
    path, problems = ck.find_latest_valid(tmp_path, log=logs.append)
    assert path.name == "step_00000001"
    assert problems and "corrupt" in problems[0] and logs


def test_partial_checkpoint_without_manifest(tmp_path):
    p = _save(tmp_path, 4)
    (p / "manifest.json").unlink()
    with pytest.raises(ck.CheckpointError, match="partial"):
        ck.verify_checkpoint(p)
    p5 = _save(tmp_path, 5)
    (p5 / "optimizer.pt").unlink()
    with pytest.raises(ck.CheckpointError, match="optimizer.pt"):
        ck.verify_checkpoint(p5)
    path, problems = ck.find_latest_valid(tmp_path, log=lambda m: None)
    assert path is None and len(problems) == 2


def test_truncated_file_detected(tmp_path):
    p = _save(tmp_path, 1)
    (p / "state.json").write_text('{"step": 1')
    with pytest.raises(ck.CheckpointError, match="state.json"):
        ck.verify_checkpoint(p)


def test_cleanup_keeps_newest_and_removes_tmp(tmp_path):
    for s in (1, 2, 3, 4):
        _save(tmp_path, s)
    (tmp_path / ".tmp-step_00000005-123").mkdir()
    ck.cleanup(tmp_path, keep_last=2)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["step_00000003", "step_00000004"]


def test_replace_existing_named_checkpoint(tmp_path):
    ck.save_checkpoint(
        tmp_path,
        "best",
        model_state={"w": torch.zeros(1)},
        optimizer_state={},
        rng={},
        state={"step": 1},
        config_yaml="",
    )
    ck.save_checkpoint(
        tmp_path,
        "best",
        model_state={"w": torch.ones(1)},
        optimizer_state={},
        rng={},
        state={"step": 2},
        config_yaml="",
    )
    assert ck.load_checkpoint(tmp_path / "best").state["step"] == 2
    assert [x.name for x in tmp_path.iterdir()] == ["best"]
