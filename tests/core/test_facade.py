"""The integration facade: TokenLoss, token_loss + aggregate == compute_loss, requires, the scope
hook, the typed non-finite error and the metric reductions."""

from __future__ import annotations

import math

import pytest
import torch

from steer.core import metrics as M
from steer.core import registry as R
from steer.core.aggregation import aggregate
from steer.core.errors import NonFiniteError
from steer.core.types import LossBatch, Normalisers, TokenLoss
from tests.core.test_registry import REQUIRED, loss_batch, rollout


def _method_and_batch(name: str, seed: int = 0, **over):
    method = R.build_method(name, **{**REQUIRED.get(name, {}), **over})
    rb, g = rollout(seed)
    adv = method.compute_advantages(rb)
    return method, loss_batch(rb, adv, g)


@pytest.mark.parametrize("name", R.list_methods())
def test_token_loss_aggregate_is_compute_loss_pg(name):
    method, lb = _method_and_batch(name)
    state = method.generator.get_state()
    tl = method.token_loss(lb)
    assert isinstance(tl, TokenLoss)
    m = lb.response_mask
    assert tl.loss_mat.shape == m.shape
    assert bool((tl.loss_mat[~m] == 0).all())
    if tl.weight is not None:
        assert not tl.weight.requires_grad and tl.weight.shape == m.shape
    pg = aggregate(tl, lb.response_mask, method.config.loss_agg_mode, Normalisers.of(lb, method.config.loss_scale_factor))
    method.generator.set_state(state)
    _, metrics = method.compute_loss(lb)
    assert float(pg.detach()) == metrics["pg_loss"]
    assert set(tl.metrics) <= set(metrics)
    for k in ("pg_loss", "loss"):
        assert k not in tl.metrics
    # every key has a declared reduction (or is derived)
    for k in metrics:
        assert M.reduction_of(k) in M.REDUCTION_KINDS


def test_requires_matches_the_flags():
    for name in R.list_methods():
        method = R.build_method(name, **REQUIRED.get(name, {}))
        req = method.requires
        assert isinstance(req, frozenset) and req <= R.REQUIREMENTS
        assert ("entropy" in req) == method.needs_entropy
        assert ("old_entropy" in req) == method.needs_old_entropy
        assert ("sums" in req) == method.needs_sums
        assert ("ref_logp" in req) == method.needs_ref
        assert ("old_logp" in req) == method.needs_old_logp
    assert "generator" in R.build_method("clip_cov").requires
    assert "generator" not in R.build_method("grpo").requires
    assert "sums" in R.build_method("steer", estimator="exact").requires


def _split(lb: LossBatch, rows: list[slice]) -> list[LossBatch]:
    out = []
    n_tok = float(lb.response_mask.sum())
    for r in rows:
        kw = {}
        for f in ("logp", "old_logp", "advantages", "response_mask", "entropy", "old_entropy"):
            kw[f] = getattr(lb, f)[r]
        out.append(
            LossBatch(
                **kw, lr=lb.lr, global_num_tokens=n_tok, global_num_seqs=float(lb.response_mask.shape[0])
            )
        )
    return out


def test_scope_stats_max_reduced_gives_the_whole_batch_weights():
    method, lb = _method_and_batch("steer", scope="minibatch", lambda_min=0.5)
    whole = method.token_loss(lb)
    parts = _split(lb, [slice(0, 5), slice(5, 11), slice(11, 16)])
    stats = [method.scope_stats(p) for p in parts]
    assert all(set(s) == {"omega_max"} for s in stats)
    omega_max = torch.stack([s["omega_max"] for s in stats]).max()
    # float64 reference: max |Omega| over the whole batch, Omega from the loss's own estimator
    omega = method.compute_omega(lb).double()
    assert float(omega_max) == pytest.approx(float(omega.abs().max()), rel=1e-6)
    ws = []
    for p in parts:
        p.scope_stats = {"omega_max": omega_max}
        ws.append(method.token_loss(p).weight)
    torch.testing.assert_close(torch.cat(ws), whole.weight)
    # per-micro-batch weights differ (the max of each part is smaller than the whole's)
    local = torch.cat(
        [method.token_loss(_split(lb, [r])[0]).weight for r in (slice(0, 5), slice(5, 11), slice(11, 16))]
    )
    assert not torch.equal(local, whole.weight)
    # methods without a scope statistic, and per-micro-batch STEER, return {}
    assert R.build_method("grpo").scope_stats(lb) == {}
    assert R.build_method("steer", scope="microbatch").scope_stats(lb) == {}


def test_scope_stats_wins_over_omega_max():
    method, lb = _method_and_batch("steer", scope="minibatch")
    lb.omega_max = 123.0
    lb.scope_stats = {"omega_max": torch.tensor(0.0)}
    a = method.token_loss(lb).weight
    assert a is not None and bool((a == 1).all())  # M = 0 -> all ones


@pytest.mark.parametrize("field", ["logp", "old_logp", "advantages", "entropy"])
def test_non_finite_inputs_raise_the_typed_error(field):
    method, lb = _method_and_batch("steer")
    x = getattr(lb, field).detach().clone()
    row = int(lb.response_mask.sum(1).argmax())
    x[row, 0] = float("nan")
    setattr(lb, field, x)
    with pytest.raises(NonFiniteError) as ei:
        method.compute_loss(lb)
    assert isinstance(ei.value, ValueError) and ei.value.name == field and ei.value.count == 1
    with pytest.raises(NonFiniteError):
        method.token_loss(lb)


def test_non_finite_rewards_and_logits_raise_the_typed_error():
    from steer.core.stats import token_stats_from_logits

    method = R.build_method("grpo")
    rb, _ = rollout(1)
    rb.rewards[3] = float("inf")
    with pytest.raises(NonFiniteError):
        method.compute_advantages(rb)
    logits = torch.randn(2, 3, 5)
    logits[0, 1, 2] = float("nan")
    with pytest.raises(NonFiniteError):
        token_stats_from_logits(logits, torch.zeros(2, 3, dtype=torch.long))


def test_metric_reductions_against_a_reference():
    g = torch.Generator().manual_seed(3)
    items = []
    for _ in range(4):
        n = float(torch.randint(0, 30, (1,), generator=g))
        m = {
            "tokens": n,
            "pg_loss": float(torch.randn(1, generator=g)),
            "weight_min": float(torch.rand(1, generator=g)),
            "steer/omega_max": float(torch.rand(1, generator=g)),
            "quadrant/I/count": float(torch.randint(0, 5, (1,), generator=g)),
            "quadrant/II/count": float(torch.randint(0, 5, (1,), generator=g)),
            "quadrant/III/count": 1.0,
            "quadrant/IV/count": 0.0,
            "quadrant/selected": 2.0,
        }
        items.append((m, n))
    out = M.reduce_metrics(items)
    ns = [n for _, n in items]
    assert out["tokens"] == sum(ns)
    assert out["pg_loss"] == pytest.approx(sum(m["pg_loss"] * n for m, n in items) / sum(ns), rel=1e-12)
    assert out["weight_min"] == min(m["weight_min"] for m, _ in items)
    assert out["steer/omega_max"] == max(m["steer/omega_max"] for m, _ in items)
    assert out["quadrant/selected"] == 8.0
    tot = sum(out[f"quadrant/{q}/count"] for q in ("I", "II", "III", "IV"))
    assert out["quadrant/I/share"] == pytest.approx(out["quadrant/I/count"] / tot)
    assert math.isclose(sum(out[f"quadrant/{q}/share"] for q in ("I", "II", "III", "IV")), 1.0)


def test_undeclared_metric_key_is_an_error_and_can_be_declared():
    with pytest.raises(KeyError, match="no declared reduction"):
        M.reduce_metrics([({"my_engine/thing": 1.0}, 3.0)])
    out = M.reduce_metrics(
        [({"my_engine/thing": 1.0}, 3.0), ({"my_engine/thing": 3.0}, 1.0)], extra={"my_engine/thing": "mean"}
    )
    assert out["my_engine/thing"] == 2.0
    with pytest.raises(ValueError, match="already reduced"):
        M.register_reduction("tokens", "mean")
    with pytest.raises(ValueError, match="must be one of"):
        M.register_reduction("x", "median")
    with pytest.raises(ValueError, match="must be a number"):
        M.reduce_metrics([({"tokens": "a"}, 1.0)])
    # an empty batch (0 tokens) does not make a token mean NaN
    out = M.reduce_metrics([({"pg_loss": 5.0, "tokens": 0.0}, 0.0), ({"pg_loss": 1.0, "tokens": 2.0}, 2.0)])
    assert out["pg_loss"] == 1.0
