"""What ``steer train`` writes loads as a Hugging Face model: every checkpoint with
``from_pretrained`` (model and the testbed tokenizer), ``steer export`` when the checkpoint holds
no Hugging Face weights, and ``steer eval --model <checkpoint>``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from steer.cli import main
from steer.train.trainer import Trainer


def _same_weights(model, state: dict) -> None:
    got = model.state_dict()
    for k, v in state.items():
        assert torch.equal(got[k], v), k


def test_checkpoint_loads_with_from_pretrained(small_cfg):
    cfg = small_cfg("trainer.steps=1", "eval.at_end=true")
    tr = Trainer(cfg, log=lambda m: None)
    tr.fit()
    for name in ("best", "step_00000001"):
        ck = Path(cfg.logging.out_dir) / "checkpoints" / name
        model = AutoModelForCausalLM.from_pretrained(ck)
        tok = AutoTokenizer.from_pretrained(ck)
        _same_weights(model, torch.load(ck / "model.pt", weights_only=True))
        text = "make 26 from 3 5 7"
        assert tok(text)["input_ids"] == tr.tokenizer(text)["input_ids"]
        assert tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False) == (
            tr.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
        )


def test_export_rebuilds_a_checkpoint_without_hf_weights(small_cfg, tmp_path, capsys):
    cfg = small_cfg("trainer.steps=1", "checkpoint.hf_weights=false")
    Trainer(cfg, log=lambda m: None).fit()
    run = Path(cfg.logging.out_dir)
    ck = run / "checkpoints" / "step_00000001"
    assert not (ck / "config.json").exists()
    out = tmp_path / "hf"
    assert main(["export", str(run), "--out", str(out)]) == 0  # a run folder: its newest checkpoint
    _same_weights(AutoModelForCausalLM.from_pretrained(out), torch.load(ck / "model.pt", weights_only=True))
    AutoTokenizer.from_pretrained(out)
    assert main(["export", str(run), "--out", str(out)]) == 2  # not empty: refused, one line
    assert "not empty" in capsys.readouterr().err


def test_eval_runs_on_a_checkpoint(small_cfg, tmp_path, capsys):
    cfg = small_cfg("trainer.steps=1", "checkpoint.hf_weights=false")
    Trainer(cfg, log=lambda m: None).fit()
    ck = Path(cfg.logging.out_dir) / "checkpoints" / "step_00000001"
    out = tmp_path / "ev" / "samples.jsonl"
    argv = ["eval", "--model", str(ck), "--benchmarks", "amc23", "--limit", "1", "--k", "1"]
    argv += [
        "--max-tokens",
        "4",
        "--device",
        "cpu",
        "--no-progress",
        "--verify-workers",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert out.is_file() and out.with_suffix(".summary.md").is_file()


def test_trl_trains_from_a_checkpoint(small_cfg, tmp_path):
    """TRL's own GRPOTrainer (through SteerGRPOTrainer) loads a steer checkpoint folder as it is,
    the testbed tokenizer included, and trains one step from it."""
    import pytest

    pytest.importorskip("trl")
    from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer
    from tests.trl.helpers import COMMON, prompt_dataset

    def alternating(completions, **kwargs):  # every group has signal, whatever is sampled
        return [float(i % 2) for i in range(len(completions))]

    cfg = small_cfg("trainer.steps=1")
    Trainer(cfg, log=lambda m: None).fit()
    ck = Path(cfg.logging.out_dir) / "checkpoints" / "step_00000001"
    args = SteerGRPOConfig(
        **{**COMMON, "output_dir": str(tmp_path / "trl"), "max_steps": 1}, steer_method="steer"
    )
    tr = SteerGRPOTrainer(model=str(ck), reward_funcs=alternating, args=args, train_dataset=prompt_dataset(4))
    start = torch.load(ck / "model.pt", weights_only=True)
    _same_weights(tr.model, start)
    tr.train()
    assert any(not torch.equal(v, tr.model.state_dict()[k]) for k, v in start.items())
