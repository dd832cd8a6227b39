"""steer_causal and entropy_band (the project's own methods) against float64 loop references, with
padding, empty responses and equal-reward groups: the per-token cause c_t, the aggregation
coefficients, the band controller's 1-D search, the mini-batch scope, and the generic predicted
entropy change every method reports when it is given the cause direction."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from steer.core import registry as R
from steer.core.aggregation import AGG_MODES, token_coefficients
from steer.core.causal import BandSolution, band_solve, band_weights
from steer.core.errors import NonFiniteError
from steer.core.types import LossBatch, Normalisers
from tests.core.test_directional import ref_directional
from tests.core.test_registry import loss_batch, rollout


def _batch(seed: int, b: int = 16, t: int = 12, dtype=torch.float64, lr=1e-4):
    rb, g = rollout(seed, b=b, t=t)
    m = R.build_method("grpo")
    adv = m.compute_advantages(rb)  # rows 4-7: an equal-reward group (A = 0); row 0 empty
    lb = loss_batch(rb, adv, g, dtype=dtype, lr=lr)
    cause = torch.randn(rb.response_mask.shape, generator=g, dtype=torch.float64) * 1e-2
    lb.token_cause = torch.where(rb.response_mask, cause, torch.zeros((), dtype=cause.dtype))
    lb.cause_offset = 0.0
    return lb


def ref_coefficients(mask, mode, n_tok, n_seq, scale):
    b, t = mask.shape
    out = [[0.0] * t for _ in range(b)]
    for i in range(b):
        li = int(mask[i].sum())
        for j in range(t):
            if not mask[i, j]:
                continue
            if mode == "token-mean":
                out[i][j] = 1.0 / n_tok
            elif mode == "token-sum":
                out[i][j] = 1.0
            elif mode == "seq-mean-token-mean":
                out[i][j] = 1.0 / (n_seq * li)
            elif mode == "seq-mean-token-sum":
                out[i][j] = 1.0 / n_seq
            else:
                out[i][j] = 1.0 / (n_seq * scale)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_token_coefficients_match_loops(mode):
    lb = _batch(1)
    m = lb.response_mask
    n_tok, n_seq = float(m.sum()) + 5, float(m.any(1).sum()) + 2  # a wider mini-batch's counts
    got = token_coefficients(m, mode, Normalisers(n_tok, n_seq, 7.0))
    ref = ref_coefficients(m, mode, n_tok, n_seq, 7.0)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-15)


def _ref_cause(lb, coef, eps_low=0.2, eps_high=0.2, clip_c=None):
    """c_t = coef_t * I_clip r A * g_t by loops (the vanilla clipped surrogate's masks)."""
    m = lb.response_mask
    out = torch.zeros(m.shape, dtype=torch.float64)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if not m[i, j]:
                continue
            r = math.exp(float(lb.logp.detach()[i, j]) - float(lb.old_logp[i, j]))
            a = float(lb.advantages[i, j])
            blocked = (a > 0 and r > 1 + eps_high) or (a < 0 and r < 1 - eps_low)
            if clip_c is not None and a < 0 and r > clip_c:
                blocked = True
            w = 0.0 if blocked else r * a
            out[i, j] = float(coef[i, j]) * w * float(lb.token_cause[i, j])
    return out


def test_predicted_change_of_grpo_matches_loops():
    """Every method given the cause direction reports sum_t u_t g_t with u = -d pg / d logp: for GRPO
    (weights 1) it equals the loop value of sum_t c_t and the unweighted prediction."""
    lb = _batch(2)
    m = R.build_method("grpo")
    _, met = m.compute_loss(lb)
    coef = ref_coefficients(lb.response_mask, "token-mean", float(lb.response_mask.sum()), 0, 0)
    ref = float(_ref_cause(lb, coef).sum())
    assert met["cause/pred_sum"] == pytest.approx(ref, rel=1e-10, abs=1e-15)
    assert met["cause/pred_sum_unweighted"] == pytest.approx(ref, rel=1e-10, abs=1e-15)
    assert ref != 0.0


@pytest.mark.parametrize("mapping", ["exp", "quantile"])
def test_steer_causal_weights_are_directional_weights_on_the_cause(mapping):
    extra = {"scope": "microbatch"} if mapping == "quantile" else {}
    m = R.build_method("steer_causal", mapping=mapping, lambda_min=0.6, rho=0.3, **extra)
    lb = _batch(3)
    tl = m.token_loss(lb)
    coef = ref_coefficients(lb.response_mask, "token-mean", float(lb.response_mask.sum()), 0, 0)
    c = _ref_cause(lb, coef, eps_high=0.28, clip_c=10.0)
    ref = ref_directional(c, lb.response_mask, 0.6, mapping, rho=0.3)
    torch.testing.assert_close(tl.weight.double(), ref, rtol=1e-9, atol=1e-12)
    assert bool((tl.weight[~lb.response_mask] == 1).all())
    assert bool((tl.weight[lb.response_mask & (c >= 0)] == 1).all())
    assert float(tl.weight.min()) == pytest.approx(0.6)
    # the prediction under the method's own weights: sum lambda_t c_t
    _, met = m.compute_loss(lb)
    assert met["cause/pred_sum"] == pytest.approx(float((ref * c).sum()), rel=1e-9, abs=1e-15)
    assert met["cause/pred_sum_unweighted"] == pytest.approx(float(c.sum()), rel=1e-9, abs=1e-15)


def _micro(lb: LossBatch, rows: slice, n_tok: float, n_seq: float) -> LossBatch:
    kw = {
        f: getattr(lb, f)[rows]
        for f in ("logp", "old_logp", "advantages", "response_mask", "entropy", "old_entropy", "token_cause")
    }
    return LossBatch(
        **kw, lr=lb.lr, global_num_tokens=n_tok, global_num_seqs=n_seq, cause_offset=lb.cause_offset
    )


def _split_grad(m, lb, split):
    n_tok, n_seq = float(lb.response_mask.sum()), float(lb.response_mask.any(1).sum())
    parts = [_micro(lb, r, n_tok, n_seq) for r in split]
    stats = m.reduce_scope_stats([m.scope_stats(p) for p in parts])
    for p in parts:
        p.scope_stats = stats or None
    total = sum(m.compute_loss(p)[0] for p in parts)
    (grad,) = torch.autograd.grad(total, lb.logp)
    return grad, stats


@pytest.mark.parametrize("name,kw", [("steer_causal", {}), ("entropy_band", {"band": 1e-6}),
                                     ("entropy_band", {"band": 1e-6, "mapping": "quantile"})])
def test_minibatch_scope_makes_the_update_independent_of_micro_batches(name, kw):
    m = R.build_method(name, **kw)
    lb = _batch(4, b=24)
    lb.cause_offset = -0.01
    n_tok, n_seq = float(lb.response_mask.sum()), float(lb.response_mask.any(1).sum())
    whole = dataclasses.replace(lb, global_num_tokens=n_tok, global_num_seqs=n_seq)
    loss, met = m.compute_loss(whole)
    (g_whole,) = torch.autograd.grad(loss, lb.logp)
    if name == "entropy_band":
        assert met["band/active"] == 1.0  # the test exercises the weights
    for split in ([slice(0, 8), slice(8, 16), slice(16, 24)], [slice(0, 5), slice(5, 24)]):
        g_split, stats = _split_grad(m, lb, split)
        assert stats
        torch.testing.assert_close(g_split, g_whole, rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# the band controller


def ref_band(c: list[float], offset, hsum, band, mapping, floor):
    """Brute force: the prediction on a fine grid of strengths (exp) or every k (quantile)."""
    pred0 = offset + sum(c)
    lo, hi = -band * hsum, band * hsum
    if lo <= pred0 <= hi:
        return 0, 1.0, pred0
    side = -1 if pred0 < lo else 1
    target = lo if side < 0 else hi
    damp = [x for x in c if (x < 0 if side < 0 else x > 0)]
    rest = offset + sum(x for x in c if x not in damp)
    if mapping == "exp":
        dmax = max(abs(x) for x in damp)
        for i in range(20001):  # s from 1 down to the floor
            s = 1.0 - (1.0 - floor) * i / 20000
            p = rest + sum((s ** (abs(x) / dmax)) * x for x in damp)
            if (p >= target) if side < 0 else (p <= target):
                return side, s, p
        return side, floor, p
    srt = sorted(damp, key=abs, reverse=True)
    for k in range(1, len(srt) + 1):
        p = rest + sum(floor * x for x in srt[:k]) + sum(srt[k:])
        if (p >= target) if side < 0 else (p <= target):
            return side, k, p
    return side, len(srt), p


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mapping", ["exp", "quantile"])
def test_band_solve_matches_brute_force(seed, mapping):
    g = torch.Generator().manual_seed(seed)
    c = (torch.randn(200, generator=g, dtype=torch.float64) + (0.3 if seed % 2 else -0.3)) * 1e-3
    hsum = 20.0
    band = [1e-6, 2e-6, 5e-6][seed % 3]
    offset = [0.0, -0.002, 0.004][seed % 3]
    sol = band_solve(c, offset, hsum, band=band, mapping=mapping, lambda_floor=0.1)
    side, strength, p_ref = ref_band(c.tolist(), offset, hsum, band, mapping, 0.1)
    assert sol.side == side
    if side == 0:
        assert sol.strength == 1.0 and sol.pred == pytest.approx(p_ref)
        return
    lo, hi = -band * hsum, band * hsum
    if mapping == "exp":
        if not sol.saturated:
            assert sol.strength == pytest.approx(strength, abs=1e-4)  # grid resolution
            assert sol.pred == pytest.approx(lo if side < 0 else hi, rel=1e-6, abs=1e-12)
    else:
        n_sel = int((c.abs()[(c < 0) if side < 0 else (c > 0)] >= sol.threshold).sum())
        assert n_sel == strength
        assert sol.pred == pytest.approx(p_ref, rel=1e-9)
    # the weights realise the solution's prediction
    mask = torch.ones(c.shape, dtype=torch.bool)
    w = band_weights(c, mask, sol, mapping=mapping, lambda_floor=0.1)
    assert float(offset + (w * c).sum()) == pytest.approx(sol.pred, rel=1e-9, abs=1e-15)
    assert bool((w[(c >= 0) if side < 0 else (c <= 0)] == 1).all())
    assert float(w.min()) >= 0.1 - 1e-12


def test_band_inside_unknown_and_saturated():
    c = torch.tensor([-1e-3, 2e-3, -5e-4], dtype=torch.float64)
    inside = band_solve(c, 0.0, 10.0, band=1.0)
    assert inside.side == 0 and inside.strength == 1.0
    unknown = band_solve(c, None, 10.0, band=1e-9)
    assert unknown.side == 0 and not unknown.known
    # all tokens push up, and even the floor cannot bring it down: saturated at the floor
    up = torch.full((5,), 1e-2, dtype=torch.float64)
    sat = band_solve(up, 0.0, 1.0, band=1e-6, lambda_floor=0.5)
    assert sat.side == 1 and sat.saturated and sat.strength == 0.5
    assert sat.pred == pytest.approx(0.5 * 5e-2)
    # nothing on the damped side (the offset alone is outside)
    none = band_solve(up, -1.0, 1.0, band=1e-6)
    assert none.side == -1 and none.saturated and none.strength == 1.0
    with pytest.raises(ValueError):
        band_solve(torch.tensor([math.nan]), 0.0, 1.0, band=1.0)
    s = BandSolution.from_stats(sat.as_stats())
    assert s == sat


def test_entropy_band_inside_the_band_is_exactly_grpo():
    """Weights 1 while the prediction lies inside the band: the loss and gradient are GRPO's bit for
    bit; equal-reward groups (A = 0) and empty responses contribute nothing."""
    lb = _batch(5)
    band = R.build_method("entropy_band", band=1e6)
    grpo = R.build_method("grpo")
    lb2 = dataclasses.replace(lb, logp=lb.logp.detach().clone().requires_grad_())
    l1, m1 = band.compute_loss(lb)
    l2, _ = grpo.compute_loss(lb2)
    assert m1["band/active"] == 0.0 and m1["weight_min"] == 1.0
    (g1,) = torch.autograd.grad(l1, lb.logp)
    (g2,) = torch.autograd.grad(l2, lb2.logp)
    assert torch.equal(l1.detach(), l2.detach()) and torch.equal(g1, g2)
    # unknown offset (Adam's first step): abstains, exactly GRPO too
    lb3 = dataclasses.replace(lb, cause_offset=None, logp=lb.logp.detach().clone().requires_grad_())
    l3, m3 = R.build_method("entropy_band", band=1e-12).compute_loss(lb3)
    assert m3["band/unknown"] == 1.0 and torch.equal(l3.detach(), l2.detach())


def test_entropy_band_brings_the_prediction_to_the_edge():
    lb = _batch(6)
    lb.cause_offset = 0.0
    m0 = R.build_method("grpo")
    pred0 = m0.compute_loss(dataclasses.replace(lb, logp=lb.logp.detach().clone().requires_grad_()))[1][
        "cause/pred_sum"
    ]
    hsum = float(lb.entropy.detach()[lb.response_mask].sum())
    b = abs(pred0) / hsum / 2  # the unweighted prediction is twice the band
    _, met = R.build_method("entropy_band", band=b, lambda_floor=0.01).compute_loss(lb)
    assert met["band/active"] == 1.0 and met["band/saturated"] == 0.0
    assert abs(met["cause/pred_sum"]) == pytest.approx(b * hsum, rel=1e-6)
    assert met["cause/pred_sum_unweighted"] == pytest.approx(pred0, rel=1e-10)


def test_cause_inputs_are_checked():
    m = R.build_method("steer_causal")
    lb = _batch(7)
    bad = dataclasses.replace(lb, token_cause=lb.token_cause.masked_fill(lb.response_mask, math.nan))
    with pytest.raises(NonFiniteError):
        m.compute_loss(bad)
    with pytest.raises(ValueError, match="token_cause"):
        m.compute_loss(dataclasses.replace(lb, token_cause=None))
    with pytest.raises(ValueError):
        m.compute_loss(dataclasses.replace(lb, token_cause=lb.token_cause[:, :3]))
    with pytest.raises(NonFiniteError):
        R.build_method("entropy_band").compute_loss(dataclasses.replace(lb, cause_offset=math.inf))
    with pytest.raises(ValueError, match="scope"):
        R.build_method("steer_causal", mapping="quantile")
    with pytest.raises(ValueError, match="band"):
        R.build_method("entropy_band", band=0.0)
    with pytest.raises(ValueError, match="scope"):
        R.build_method("entropy_band", scope="microbatch")
    # padding-only batch: nothing to weight, zero prediction
    empty = dataclasses.replace(lb, response_mask=torch.zeros_like(lb.response_mask))
    _, met = R.build_method("entropy_band", band=1e-9).compute_loss(empty)
    assert met["cause/pred_sum"] == 0.0 and met["band/active"] == 0.0
