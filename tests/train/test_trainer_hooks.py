"""The trainer through the core's generic hooks only: mini-batch scope statistics (the update does
not depend on ``micro_batch_size``), non-finite inputs caught by type, metrics reduced by their
declared reductions, and a reasoning-gym task end to end."""

from __future__ import annotations

import ast
import inspect
import math

import pytest
import torch

from steer.core.errors import NonFiniteError
from steer.core.metrics import reduce_metrics
from steer.train.trainer import Trainer

from .helpers import CoinTask


def make_trainer(cfg, **kw):
    return Trainer(cfg, task=CoinTask(cfg.task), log=lambda m: None, **kw)


def _prepared(small_cfg, *overrides):
    """A trainer and one collected step with random advantages and a perturbed policy (ratios
    away from 1, so clipping and weights are exercised)."""
    cfg = small_cfg(*overrides, "rollout.temperature=0.9")
    tr = make_trainer(cfg)
    data = tr.collect(0)
    g = torch.Generator().manual_seed(0)
    data.advantages = torch.randn(data.advantages.shape, generator=g) * data.rollouts.response_mask
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    tr.model.train()
    return tr, data


def _grads(tr):
    return [None if p.grad is None else p.grad.clone() for p in tr.model.parameters()]


def _backward(tr, data, idx, micro: int):
    tr.cfg.trainer.micro_batch_size = micro
    loss, items, bad = tr.minibatch_backward(data, idx, lr=1e-3)
    assert bad is None
    return loss, reduce_metrics(items), _grads(tr)


@pytest.mark.parametrize("extra", [["method.scope=minibatch"], []])
def test_steer_update_does_not_depend_on_micro_batch_size(small_cfg, extra):
    """Eq. 10 takes max|Omega| over the mini-batch: with the mini-batch scope (the hook), the
    update of a mini-batch is the same whether it is processed whole or in micro-batches. The
    second case is STEER's default configuration."""
    tr, data = _prepared(small_cfg, "method.name=steer", *extra)
    idx = torch.arange(0, data.rollouts.batch_size // tr.cfg.trainer.num_mini_batches)
    loss0, m0, g0 = _backward(tr, data, idx, 0)
    loss3, m3, g3 = _backward(tr, data, idx, 3)
    assert m0["steer/omega_max"] == pytest.approx(m3["steer/omega_max"], rel=1e-6)
    assert m0["weight_min"] == pytest.approx(m3["weight_min"], rel=1e-6)
    assert m0["weight_mean"] == pytest.approx(m3["weight_mean"], rel=1e-5)
    assert m3["weight_min"] < 1.0  # the weights did something
    assert loss0 == pytest.approx(loss3, rel=1e-5, abs=1e-7)
    checked = 0
    for a, b in zip(g0, g3):
        if a is None:
            continue
        torch.testing.assert_close(b, a, rtol=2e-4, atol=1e-7)
        checked += 1
    assert checked > 0


def test_microbatch_scope_does_depend_on_it(small_cfg):
    """The control: STEER's per-micro-batch scope changes the weights with micro_batch_size (so
    the test above can fail)."""
    tr, data = _prepared(small_cfg, "method.name=steer", "method.scope=microbatch")
    idx = torch.arange(0, data.rollouts.batch_size // tr.cfg.trainer.num_mini_batches)
    _, m0, _ = _backward(tr, data, idx, 0)
    _, m3, _ = _backward(tr, data, idx, 3)
    assert m0["weight_mean"] != pytest.approx(m3["weight_mean"], rel=1e-7)


@pytest.mark.parametrize(
    "method, extra, forwards", [("grpo", [], 3), ("steer", ["method.scope=minibatch"], 5)]
)
def test_scope_prepass_only_when_the_method_asks(small_cfg, method, extra, forwards):
    """8 responses in micro-batches of 3: GRPO (no scope statistics) is one forward per
    micro-batch; STEER with the mini-batch scope adds a no-grad forward of every micro-batch
    but the first (whose graph is reused)."""
    tr, data = _prepared(small_cfg, f"method.name={method}", *extra)
    calls = []
    real = tr.loss_batch

    def counting(*a, **kw):
        calls.append(torch.is_grad_enabled())
        return real(*a, **kw)

    tr.loss_batch = counting
    tr.cfg.trainer.micro_batch_size = 3
    idx = torch.arange(0, 8)
    assert tr.minibatch_backward(data, idx, lr=1e-3)[2] is None
    assert len(calls) == forwards
    assert calls.count(False) == forwards - 3


@pytest.mark.parametrize("module", ["trainer", "cause_stage", "step_record", "runstate"])
def test_trainer_loop_knows_no_method_by_name(module):
    """The loop (the trainer and the stages it moved into their own modules) reads what a method
    needs from its generic interface only."""
    import importlib

    src = inspect.getsource(importlib.import_module(f"steer.train.{module}"))
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("config", "compute_omega", "omega_max", "scope"):
            owner = ast.unparse(node.value)
            assert "method" not in owner, f"trainer reads {owner}.{node.attr}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in ("steer", "scope", "weighting", "microbatch", "minibatch"), node.value


def test_nonfinite_logits_are_caught_by_type_and_skipped(small_cfg):
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0")
    tr = make_trainer(cfg)
    data = tr.collect(0)
    tr.collect = lambda step: data  # the rollouts come from the healthy policy
    hook = tr.model.lm_head.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    before = [p.detach().clone() for p in tr.model.parameters()]
    try:
        rec = tr.train_step(0)
    finally:
        hook.remove()
    assert rec["optimizer_steps"] == 0 and rec["nonfinite_skips"] == cfg.trainer.num_mini_batches
    assert all(torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert not tr.optimizer.state


def test_other_value_errors_are_not_swallowed(small_cfg):
    """Only the typed error is a skip: a ValueError whose message merely mentions non-finite
    values propagates (no message matching)."""
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0")
    tr = make_trainer(cfg)

    def broken(batch):
        raise ValueError("non-finite NaN values here, but not a NonFiniteError")

    tr.method.compute_loss = broken
    with pytest.raises(ValueError, match="not a NonFiniteError"):
        tr.train_step(0)
    assert tr.nonfinite_skips == 0


def test_nonfinite_stop_raises_the_core_error_type(small_cfg):
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0", "trainer.nonfinite=stop")
    tr = make_trainer(cfg)
    data = tr.collect(0)
    tr.collect = lambda step: data
    hook = tr.model.lm_head.register_forward_hook(lambda mod, inp, out: out * float("inf"))
    try:
        with pytest.raises(NonFiniteError, match="logits at step 0") as info:
            tr.train_step(0)
    finally:
        hook.remove()
    assert info.value.name == "logits"


def test_step_metrics_are_the_declared_reductions(small_cfg):
    """The ``m/`` keys of a step are exactly ``steer.core.metrics.reduce_metrics`` over every
    micro-batch's metrics (with their valid-token counts), derived shares included."""
    cfg = small_cfg(
        "method.name=steer", "method.scope=minibatch", "trainer.micro_batch_size=3", "trainer.steps=1"
    )
    tr = make_trainer(cfg)
    items = []
    real = tr.minibatch_backward

    def recording(data, idx, lr):
        res = real(data, idx, lr)
        items.extend(res[1])
        return res

    tr.minibatch_backward = recording
    rec = tr.train_step(0)
    assert len(items) == 6  # 2 mini-batches of 8 responses, micro-batches of 3, 3, 2
    want = reduce_metrics(items)
    got = {k[2:]: v for k, v in rec.items() if k.startswith("m/")}
    assert got == want
    assert got["tokens"] == sum(n for _, n in items)  # a sum, not a mean
    assert got["weight_min"] == min(m["weight_min"] for m, _ in items)
    assert got["steer/omega_max"] == max(m["steer/omega_max"] for m, _ in items)
    w = sum(m["ratio_mean"] * n for m, n in items) / sum(n for _, n in items)
    assert got["ratio_mean"] == pytest.approx(w, rel=1e-12)
    shares = [got.get(f"quadrant/{q}/share", 0.0) for q in ("I", "II", "III", "IV")]
    assert sum(shares) == pytest.approx(1.0)


def test_an_undeclared_metric_key_is_an_error(small_cfg):
    """Renaming a key can never silently change how it is averaged: an undeclared key raises."""
    cfg = small_cfg("trainer.steps=1", "checkpoint.every=0")
    tr = make_trainer(cfg)
    real = tr.method.compute_loss

    def renamed(batch):
        loss, metrics = real(batch)
        metrics["pg_loss_renamed"] = metrics.pop("pg_loss")
        return loss, metrics

    tr.method.compute_loss = renamed
    with pytest.raises(KeyError, match="pg_loss_renamed"):
        tr.train_step(0)


def test_reasoning_gym_task_trains_and_evaluates(small_cfg):
    cfg = small_cfg(
        "task.name=reasoning_gym",
        "task.options.dataset=chain_sum",
        "task.train_size=8",
        "task.heldout_size=3",
        "trainer.steps=1",
        "eval.at_end=true",
        "checkpoint.every=0",
    )
    tr = Trainer(cfg, log=lambda m: None)
    last = tr.fit()
    assert last["step"] == 1 and last["optimizer_steps"] == cfg.trainer.num_mini_batches
    for key in ("heldout/acc", "heldout/pass@4", "heldout/solved", "heldout/diversity", "heldout/entropy"):
        assert key in last and math.isfinite(last[key]), key
    assert last["heldout/solutions_available"] == 1.0


def test_eval_entropy_memory_warning(small_cfg):
    logs = []
    Trainer(small_cfg("eval.batch_size=200000", "rollout.max_new_tokens=24"), log=logs.append)
    assert any("eval.entropy=false" in m for m in logs)
    logs.clear()
    Trainer(small_cfg(), log=logs.append)
    Trainer(small_cfg("eval.batch_size=200000", "eval.entropy=false"), log=logs.append)
    assert not any("eval.entropy" in m for m in logs)
