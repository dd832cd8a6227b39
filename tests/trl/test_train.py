"""Two-step training runs of a tiny model with SteerGRPOTrainer: they complete, change the
parameters, and log steer's metrics in TRL's log history."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trl.helpers import make_trainer

STEER_KEYS = (
    "steer/weight_mean",
    "steer/weight_min",
    "steer/clipfrac_low",
    "steer/clipfrac_high",
    "steer/clipfrac_dual",
    "steer/omega_max",
    *(f"steer/quadrant/{q}/{k}" for q in ("I", "II", "III", "IV") for k in ("count", "share", "omega_sum")),
)


def _train(trainer):
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, trainer.model.parameters()))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return changed, logs


def test_two_step_steer_run_logs_metrics(tokenizer, tmp_path):
    tr = make_trainer(
        tokenizer,
        tmp_path,
        steer=True,
        steer_method="steer",
        steer_method_kwargs={"scope": "minibatch"},
        gradient_accumulation_steps=2,
        epsilon_high=0.28,
    )
    changed, logs = _train(tr)
    assert changed and len(logs) == 2
    for rec in logs:
        assert math.isfinite(rec["loss"])
        missing = [k for k in STEER_KEYS if k not in rec]
        assert not missing, missing
        assert 0.7 - 1e-6 <= rec["steer/weight_min"] <= rec["steer/weight_mean"] <= 1.0
        shares = sum(rec[f"steer/quadrant/{q}/share"] for q in ("I", "II", "III", "IV"))
        assert shares == pytest.approx(1.0)
        # the valid tokens of both micro-batches of the step (4 completions each), summed
        assert rec["steer/tokens"] == pytest.approx(rec["completions/mean_length"] * 8)
        assert sum(rec[f"steer/quadrant/{q}/count"] for q in ("I", "II", "III", "IV")) <= rec["steer/tokens"]
    assert tr._steer_scope_cache is not None  # the minibatch pre-pass ran


def test_checkpoint_keeps_the_method_state(tokenizer, tmp_path):
    """clip_cov draws tokens from the method's generator: its state is saved with TRL's checkpoint
    and restored on resume."""
    # every token a candidate, so the random selection draws from the generator
    kw = {"clip_cov_ratio": 0.2, "clip_cov_lb": -1e6, "clip_cov_ub": 1e6}
    tr = make_trainer(
        tokenizer,
        tmp_path,
        steer=True,
        steer_method="clip_cov",
        steer_method_kwargs=kw,
        save_strategy="steps",
        save_steps=2,
    )
    tr.train()
    path = tmp_path / "steer" / "checkpoint-2" / "steer_method_state_rank0.pt"
    assert path.exists()
    saved = torch.load(path, weights_only=False)
    assert torch.equal(saved["generator"], tr.steer_method.generator.get_state())
    fresh = make_trainer(
        tokenizer, tmp_path / "b", steer=True, steer_method="clip_cov", steer_method_kwargs=kw
    )
    assert not torch.equal(fresh.steer_method.generator.get_state(), saved["generator"])
    fresh._load_optimizer_and_scheduler(None)  # no checkpoint: untouched
    fresh.create_optimizer_and_scheduler(num_training_steps=2)
    fresh._load_optimizer_and_scheduler(str(path.parent))
    assert torch.equal(fresh.steer_method.generator.get_state(), saved["generator"])


def test_two_step_advantage_level_run(tokenizer, tmp_path):
    """GTPO: token advantages from the rollout-policy entropy (one extra no-grad forward)."""
    tr = make_trainer(
        tokenizer,
        tmp_path,
        steer=True,
        steer_method="gtpo",
        steer_method_kwargs={"alpha1": 0.5, "alpha2": 0.5},
    )
    seen = []
    orig = tr._steer_advantages

    def spy(output, old_logp, old_entropy):
        adv = orig(output, old_logp, old_entropy)
        seen.append((adv.shape, output["completion_mask"].shape, old_entropy is not None))
        return adv

    tr._steer_advantages = spy
    changed, logs = _train(tr)
    assert changed and len(logs) == 2 and all(math.isfinite(r["loss"]) for r in logs)
    assert seen and all(a == m and has_ent for a, m, has_ent in seen)
    assert "steer/weight_mean" in logs[-1]


def test_off_policy_run_carries_the_rollout_entropy(tokenizer, tmp_path):
    """steer_reference reads the rollout policy's entropy; with num_iterations=2 the loss is off
    policy, so it comes from an extra no-grad forward at rollout time and travels in the buffer."""
    tr = make_trainer(tokenizer, tmp_path, steer=True, steer_method="steer_reference", num_iterations=2)
    seen = []
    orig = tr._compute_loss

    def spy(model, inputs):
        seen.append(("steer_old_entropy" in inputs, "old_per_token_logps" in inputs))
        return orig(model, inputs)

    tr._compute_loss = spy
    changed, logs = _train(tr)
    assert changed and seen and all(a and b for a, b in seen)
    assert all(math.isfinite(r["loss"]) and "steer/weight_mean" in r for r in logs)
