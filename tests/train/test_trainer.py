"""The trainer end to end on the tiny testbed policy: several methods, loss/gradient agreement
with the core functions, non-finite handling, held-out evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from steer.core.registry import build_method
from steer.core.stats import token_stats_from_logits
from steer.core.types import LossBatch
from steer.train.config import build_method_from_config
from steer.train.trainer import NonFiniteError, Trainer

from .helpers import CoinTask


def make_trainer(cfg, **kw):
    return Trainer(cfg, task=CoinTask(cfg.task), log=lambda m: None, **kw)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("method", ["grpo", "steer", "clip_cov", "entropy_adv", "forking_tokens"])
def test_trainer_steps_for_method(small_cfg, method):
    cfg = small_cfg(f"method.name={method}", "trainer.steps=1", "checkpoint.every=0")
    tr = make_trainer(cfg)
    before = _params(tr.model)
    rec = tr.train_step(0)
    for key in (
        "reward",
        "acc",
        "entropy",
        "response_length",
        "m/pg_loss",
        "m/clipfrac_low",
        "m/clipfrac_high",
    ):
        assert key in rec and math.isfinite(rec[key]), key
    assert rec["optimizer_steps"] == cfg.trainer.num_mini_batches
    assert rec["nonfinite_skips"] == 0
    assert 0 < rec["entropy"] < math.log(len(tr.tokenizer))
    quad = [rec.get(f"m/quadrant/{q}/count", 0) for q in ("I", "II", "III", "IV")]
    if tr.method.needs_entropy:
        assert sum(quad) > 0
    if method == "steer":
        assert 0.7 - 1e-6 <= rec["m/weight_min"] <= rec["m/weight_mean"] <= 1.0
    # mixed rewards -> non-zero advantages -> the weights moved
    assert rec["adv_abs_mean"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, _params(tr.model)))


def _manual_loss_and_grads(model, method, data, idx, lr, temperature):
    """The core path written out independently: full forward, response-position logits,
    token_stats_from_logits, LossBatch, method.compute_loss, backward."""
    ro = data.rollouts
    model.zero_grad(set_to_none=True)
    P = ro.prompt_ids.shape[1]
    seq = torch.cat([ro.prompt_ids[idx], ro.response_ids[idx]], 1)
    attn = torch.cat([ro.prompt_mask[idx].long(), torch.ones_like(ro.response_ids[idx])], 1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=seq, attention_mask=attn, position_ids=pos).logits
    resp_logits = logits[:, P - 1 : -1]
    st = token_stats_from_logits(resp_logits, ro.response_ids[idx], temperature=temperature, with_sums=True)
    mask = ro.response_mask[idx]
    lb = LossBatch(
        logp=st.logp,
        old_logp=data.old_logp[idx],
        advantages=data.advantages[idx],
        response_mask=mask,
        entropy=st.entropy,
        old_entropy=data.old_entropy[idx],
        sum_p2=st.sum_p2,
        sum_p2_logp=st.sum_p2_logp,
        lr=lr,
        global_num_tokens=float(mask.sum()),
        global_num_seqs=float(len(idx)),
    )
    loss, metrics = method.compute_loss(lb)
    loss.backward()
    return (
        float(loss.detach()),
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        metrics,
    )


@pytest.mark.parametrize("method", ["grpo", "steer"])
def test_trainer_loss_and_grads_equal_core(small_cfg, method):
    """The trainer's mini-batch (accumulated over micro-batches of 3 responses) gives the same
    loss and gradients as the core functions applied to the whole mini-batch at once. For STEER
    this holds with ``scope=minibatch`` (max|Omega| over the mini-batch, reduced by the trainer
    from ``method.scope_stats`` of every micro-batch); with ``scope=microbatch`` the weights
    legitimately differ."""
    extra = ["method.scope=minibatch"] if method == "steer" else []
    cfg = small_cfg(f"method.name={method}", "trainer.micro_batch_size=3", "rollout.temperature=0.9", *extra)
    tr = make_trainer(cfg)
    data = tr.collect(0)
    g = torch.Generator().manual_seed(0)
    data.advantages = torch.randn(data.advantages.shape, generator=g) * data.rollouts.response_mask
    idx = torch.arange(0, data.rollouts.batch_size // cfg.trainer.num_mini_batches)
    tr.model.train()
    # perturb the policy so that ratios differ from 1 (clipping and weights are exercised)
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    loss, _, bad = tr.minibatch_backward(data, idx, lr=1e-3)
    assert bad is None
    grads = [None if p.grad is None else p.grad.clone() for p in tr.model.parameters()]
    ref_method = build_method_from_config(cfg)
    ref_loss, ref_grads, metrics = _manual_loss_and_grads(tr.model, ref_method, data, idx, 1e-3, 0.9)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    assert metrics["ratio_mean"] != pytest.approx(1.0, abs=1e-6)
    n_checked = 0
    for a, b in zip(grads, ref_grads):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
            continue
        torch.testing.assert_close(a, b, rtol=2e-4, atol=1e-7)
        n_checked += 1
    assert n_checked > 0


def test_nonfinite_loss_is_skipped_and_never_reaches_weights(small_cfg):
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0")
    tr = make_trainer(cfg)
    real = tr.method.compute_loss
    tr.method.compute_loss = lambda b: (lambda out: (out[0] * float("nan"), out[1]))(real(b))
    before = _params(tr.model)
    rec = tr.train_step(0)
    assert rec["optimizer_steps"] == 0 and rec["nonfinite_skips"] == cfg.trainer.num_mini_batches
    assert all(torch.equal(a, b) for a, b in zip(before, _params(tr.model)))
    assert all(bool(torch.isfinite(p).all()) for p in tr.model.parameters())
    assert not tr.optimizer.state  # AdamW never stepped


def test_nonfinite_gradient_is_skipped(small_cfg):
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0")
    tr = make_trainer(cfg)
    real = tr.method.compute_loss
    calls = {"n": 0}

    def poisoned(b):
        calls["n"] += 1
        if calls["n"] == 1:  # only the first mini-batch: NaN gradient, finite loss
            b.logp.register_hook(lambda grad: grad * float("nan"))
        return real(b)

    tr.method.compute_loss = poisoned
    rec = tr.train_step(0)
    assert rec["nonfinite_skips"] == 1
    assert rec["optimizer_steps"] == cfg.trainer.num_mini_batches - 1
    assert all(bool(torch.isfinite(p).all()) for p in tr.model.parameters())


def test_nonfinite_stop_raises(small_cfg):
    cfg = small_cfg("trainer.steps=1", "trainer.nonfinite=stop", "checkpoint.every=0")
    tr = make_trainer(cfg)
    real = tr.method.compute_loss
    tr.method.compute_loss = lambda b: (lambda out: (out[0] * float("inf"), out[1]))(real(b))
    before = _params(tr.model)
    with pytest.raises(NonFiniteError, match="step 0"):
        tr.train_step(0)
    assert all(torch.equal(a, b) for a, b in zip(before, _params(tr.model)))


def test_fit_writes_metrics_eval_and_checkpoints(small_cfg):
    cfg = small_cfg(
        "eval.at_start=true", "eval.at_end=true", "checkpoint.every=1", "logging.tensorboard=true"
    )
    tr = Trainer(cfg, log=lambda m: None)
    last = tr.fit()
    from steer.train.metrics import read_jsonl

    recs = read_jsonl(tr.metrics_path)
    assert [r["step"] for r in recs] == [0, 1, 2]
    for key in ("heldout/acc", "heldout/pass@1", "heldout/pass@4", "heldout/diversity", "heldout/acc_se"):
        assert key in recs[0] and key in recs[-1], key
    assert recs[-1]["heldout/pass@4"] >= recs[-1]["heldout/pass@1"]
    assert last["step"] == 2
    ck = tr.ckpt_dir
    assert (ck / "step_00000002" / "manifest.json").exists() and (ck / "best" / "manifest.json").exists()
    assert list((tr.out_dir / "tb").iterdir())


def test_build_method_overrides_reach_the_method(small_cfg):
    cfg = small_cfg("method.name=steer", "method.lambda_min=0.5")
    m = build_method_from_config(cfg)
    assert m.config.lambda_min == 0.5
    assert build_method("steer").config.lambda_min != 0.5
