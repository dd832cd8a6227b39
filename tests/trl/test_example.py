"""examples/trl/train_steer.py end to end on CPU: a tiny local model, 4 DAPO-Math problems, one
step, the math reward through the verifier pool (slow: about a minute on the shared 2-core box)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from steer.testbed.model import build_model, save_policy

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "DAPO-Math-17k.parquet"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is not on this machine")
def test_example_script_trains_one_step(tokenizer, tmp_path):
    model = build_model(
        tokenizer,
        preset="tiny",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=2048,
    )
    policy = save_policy(model, tokenizer, tmp_path / "policy")
    spec = importlib.util.spec_from_file_location("train_steer", ROOT / "examples/trl/train_steer.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    rc = mod.main(
        [
            "--model_name_or_path", str(policy), "--train_file", str(DATA), "--max_train_samples", "4",
            "--output_dir", str(out), "--max_steps", "1", "--num_generations", "4",
            "--per_device_train_batch_size", "4", "--max_completion_length", "8", "--use_cpu", "true",
            "--bf16", "false", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        ]
    )  # fmt: skip
    assert rc == 0
    assert (out / "model.safetensors").exists()
