"""A run folder that holds a run is never overwritten unless asked (--resume, --overwrite), and a
resume that changes the optimisation is refused unless allowed (then recorded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steer.cli import main
from steer.train.checkpoint import CheckpointError
from steer.train.metrics import read_jsonl
from steer.train.rundir import ResumeConfigError, RunDirError, config_differences
from steer.train.trainer import Trainer

from .conftest import SMALL


def _fit(cfg, **kw):
    return Trainer(cfg, log=lambda m: None).fit(**kw)


def _snapshot(out: Path) -> dict:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "tb" not in p.parts
    }


def test_second_run_into_a_run_folder_is_refused_and_touches_nothing(small_cfg):
    cfg = small_cfg("trainer.steps=2", out="r")
    _fit(cfg)
    out = Path(cfg.logging.out_dir)
    before = _snapshot(out)
    with pytest.raises(RunDirError, match="already holds a run.*--resume.*--overwrite"):
        _fit(small_cfg("trainer.steps=1", out="r"))
    assert _snapshot(out) == before


def test_overwrite_replaces_the_earlier_run(small_cfg):
    cfg = small_cfg("trainer.steps=2", out="r")
    _fit(cfg)
    out = Path(cfg.logging.out_dir)
    (out / "notes.txt").write_text("mine")
    _fit(small_cfg("trainer.steps=1", out="r"), overwrite=True)
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000001"]
    assert (out / "notes.txt").read_text() == "mine"  # only what a run writes is removed


def test_resume_with_a_changed_learning_rate_is_refused_then_recorded_when_allowed(small_cfg):
    cfg = small_cfg("trainer.steps=3", "trainer.stop_after=1", out="r")
    _fit(cfg)
    out = Path(cfg.logging.out_dir)
    before = _snapshot(out)
    with pytest.raises(ResumeConfigError, match=r"optim\.lr: 0\.0001 -> 0\.001"):
        _fit(small_cfg("trainer.steps=3", "optim.lr=1e-3", out="r"), resume=True)
    assert _snapshot(out) == before
    _fit(small_cfg("trainer.steps=2", "optim.lr=1e-3", out="r"), resume=True, allow_config_change=True)
    rec = [json.loads(x) for x in (out / "config_changes.jsonl").read_text().splitlines()]
    assert rec == [
        {
            "step": 1,
            "checkpoint": str(out / "checkpoints" / "step_00000001"),
            "changes": {"optim.lr": {"checkpoint": 1e-4, "now": 1e-3}},
        }
    ]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]


def test_resume_may_change_the_budget_but_never_the_method(small_cfg):
    _fit(small_cfg("trainer.steps=2", "trainer.stop_after=1", out="r"))
    with pytest.raises(ResumeConfigError, match="cannot change the method"):
        _fit(
            small_cfg("trainer.steps=2", "method.name=steer", out="r"), resume=True, allow_config_change=True
        )
    _fit(small_cfg("trainer.steps=2", "eval.every=5", "checkpoint.keep_last=3", out="r"), resume=True)


def test_config_differences_ignore_what_does_not_change_the_optimisation():
    old = {"trainer": {"steps": 5, "seed": 0}, "optim": {"lr": 1e-4}, "logging": {"out_dir": "a"}}
    new = {"trainer": {"steps": 9, "seed": 1}, "optim": {"lr": 1e-4}, "logging": {"out_dir": "b"}}
    assert config_differences(old, new) == {"trainer.seed": (0, 1)}


def test_resume_refuses_a_metrics_file_shorter_than_the_checkpoint(small_cfg):
    cfg = small_cfg("trainer.steps=3", "trainer.stop_after=2", out="r")
    _fit(cfg)
    out = Path(cfg.logging.out_dir)
    m = out / "metrics.jsonl"
    m.write_bytes(m.read_bytes()[:10])  # replaced or cut behind the run's back
    with pytest.raises(CheckpointError, match="metrics file was replaced or cut"):
        _fit(small_cfg("trainer.steps=3", out="r"), resume=True)
    assert b"\0" not in m.read_bytes()


def test_resume_into_metrics_without_checkpoints_is_refused(small_cfg):
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0", "checkpoint.save_best=false", out="r")
    out = Path(cfg.logging.out_dir)
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunDirError, match="no checkpoint to resume from"):
        _fit(cfg, resume=True)


def test_cli_refuses_before_loading_anything(policy_path, tmp_path, capsys):
    """The issue's sequence through ``steer train``: the second run exits 2 with one line."""
    out = tmp_path / "r"
    common = ["train", "--config", "testbed", "--out", str(out), *SMALL, f"model.name_or_path={policy_path}"]
    assert main([*common, "trainer.steps=2", "checkpoint.every=1"]) == 0
    captured = capsys.readouterr()
    assert f"outputs in {out}/" in captured.out
    before = _snapshot(out)
    assert main([*common, "trainer.steps=1", "model.name_or_path=/nonexistent-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0], err
    assert _snapshot(out) == before
    assert main([*common, "--resume", "trainer.steps=3", "optim.lr=5e-4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr" in err[0] and "--allow-config-change" in err[0], err
    assert _snapshot(out) == before
    assert main([*common, "--resume", "trainer.steps=3"]) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]


def test_report_refuses_a_damaged_metrics_file(tmp_path, capsys):
    m = tmp_path / "run" / "metrics.jsonl"
    m.parent.mkdir()
    m.write_bytes(b'{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.5}\n' + b"\0" * 50 + b'{"step": 7}\n')
    assert main(["report", str(m.parent), "--out", str(tmp_path / "rep")]) == 2
    assert "NUL bytes from line 3" in capsys.readouterr().err


def test_resume_from_a_checkpoint_without_newer_schema_keys(small_cfg, tmp_path):
    """A key added to the schema after the checkpoint was written is not a difference."""
    from steer.train.config import to_dict
    from steer.train.rundir import check_resume_config

    cfg = small_cfg("trainer.steps=2", "trainer.stop_after=1", out="r")
    _fit(cfg)
    ck = Path(cfg.logging.out_dir) / "checkpoints" / "step_00000001"
    state = json.loads((ck / "state.json").read_text())
    del state["config"]["trainer"]["cause_probe"]
    (ck / "state.json").write_text(json.dumps(state))
    assert check_resume_config(ck, to_dict(cfg)) == {}
