"""The tables of pure functions, the method table, explicit composition, STEER as one function,
the scope hook, Dr. GRPO's constant, the floor warnings and the clip-by-probability metrics, each
against an independent float64 loop reference where there is a number to check."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from steer.core import registry as R
from steer.core.aggregation import aggregate
from steer.core.losses import clip_by_prob_metrics, clipped_surrogate
from steer.core.metrics import reduce_metrics
from steer.core.parts import ADVANTAGES, POLICY_LOSSES, WEIGHTINGS, check_combination
from steer.core.presets import PRESETS, Preset
from steer.core.steer import SteerFloorWarning
from steer.core.types import LossBatch, Normalisers
from tests.core.test_registry import REQUIRED, loss_batch, ref_steer_paper_loss, rollout


def test_every_row_names_registered_parts_and_builds():
    assert [p.name for p in PRESETS] == R.list_methods()
    for row in PRESETS:
        check_combination(row.advantage, row.policy_loss, row.weighting)
        cls = R.method_config_class(row.name)
        fields = {f.name for f in dataclasses.fields(cls)}
        parts = [ADVANTAGES[row.advantage].params, POLICY_LOSSES[row.policy_loss].params]
        if row.weighting:
            parts.append(WEIGHTINGS[row.weighting].params)
        for p in parts:
            assert {f.name for f in dataclasses.fields(p)} <= fields, row.name
        c = R.build_method(row.name, **REQUIRED.get(row.name, {})).config
        for k, v in row.defaults.items():
            assert getattr(c, k) == v, (row.name, k)
        assert (c.advantage, c.policy_loss, c.weighting) == (row.advantage, row.policy_loss, row.weighting)
    # parameters of other parts are refused (a grpo method has no lambda_min)
    with pytest.raises(ValueError, match="unknown parameter"):
        R.build_method("grpo", lambda_min=0.5)


def test_unsupported_combinations_are_errors():
    with pytest.raises(ValueError, match="does not compose"):
        check_combination("grpo", "kl_cov", "steer")
    with pytest.raises(ValueError, match="does not compose"):
        R.define_method(Preset("kl_cov_steer", policy_loss="kl_cov", weighting="steer"), register=False)
    with pytest.raises(ValueError, match="unknown token weighting"):
        R.define_method(Preset("x", weighting="nope"), register=False)
    with pytest.raises(ValueError, match="unknown parameter"):
        R.define_method(Preset("x", defaults={"lambda_min": 0.5}), register=False)
    with pytest.raises(ValueError, match="already registered"):
        R.define_method(Preset("steer", weighting="steer"))


def test_clip_cov_with_steer_applies_both_against_reference():
    """Weighting on top of any surrogate it composes with: Clip-Cov's keep mask times STEER's lambda."""
    cls = R.define_method(
        Preset(
            "clip_cov_steer",
            policy_loss="clip_cov",
            weighting="steer",
            defaults={"eps_low": 1.0, "eps_high": 1.0},
        ),
        register=False,
    )
    m = R.Method("clip_cov_steer", cls(clip_cov_ratio=0.2, lambda_min=0.6))
    rb, g = rollout(11)
    lb = loss_batch(rb, m.compute_advantages(rb), g, dtype=torch.float64)
    state = m.generator.get_state()
    tl = m.token_loss(lb)
    # the same draw through Clip-Cov alone gives the keep mask
    m.generator.set_state(state)
    base = R.Method("clip_cov", R.method_config_class("clip_cov")(clip_cov_ratio=0.2))
    base.generator.set_state(state)
    keep = base.token_loss(lb).weight
    assert keep is not None and bool((keep[lb.response_mask] == 0).any())
    # float64 loop reference of STEER's lambda with w = I_clip r A (clip 1/1, no dual clip)
    mask = lb.response_mask
    cells = [(i, j) for i in range(mask.shape[0]) for j in range(mask.shape[1]) if mask[i, j]]
    om = {}
    for cell in cells:
        lp, olp = float(lb.logp.detach()[cell]), float(lb.old_logp[cell])
        a, h = float(lb.advantages[cell]), float(lb.entropy.detach()[cell])
        r = math.exp(lp - olp)
        blocked = (a > 0 and r > 2.0) or (a < 0 and r < 0.0)
        w = 0.0 if blocked else r * a
        p = math.exp(lp)
        om[cell] = abs(-lb.lr * w * (1 - p) ** 2 * (lp + h))
    k = -math.log(0.6) / max(om.values())
    for cell in cells:
        lam = max(math.exp(-k * om[cell]), 0.6)
        assert float(tl.weight[cell]) == pytest.approx(lam * float(keep[cell]), rel=1e-9, abs=1e-12)


def test_steer_token_loss_matches_the_loop_reference():
    """STEER's token loss (the registered method) against an independent loop reference."""
    rb, g = rollout(3)
    m = R.build_method("steer")
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    tl = m.token_loss(lb)
    loss = aggregate(tl, lb.response_mask, "token-mean", Normalisers())
    ref, wmin = ref_steer_paper_loss(lb, 0.7)
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)
    assert tl.metrics["weight_min"] == pytest.approx(wmin, rel=1e-5)
    with pytest.raises(ValueError, match="entropy"):
        bad = lb.entropy.detach().clone()
        bad[lb.response_mask] = float("nan")
        m.token_loss(dataclasses.replace(lb, entropy=bad))


def _micro(lb: LossBatch, rows: slice, n_tok: float, n_seq: float) -> LossBatch:
    kw = {
        f: getattr(lb, f)[rows]
        for f in ("logp", "old_logp", "advantages", "response_mask", "entropy", "old_entropy")
    }
    return LossBatch(**kw, lr=lb.lr, global_num_tokens=n_tok, global_num_seqs=n_seq)


def _split_loss_and_grad(m, lb, split, n_tok, n_seq, hook: bool):
    parts = [_micro(lb, r, n_tok, n_seq) for r in split]
    stats = [m.scope_stats(p) for p in parts]
    if hook and stats[0]:
        reduced = {k: torch.stack([s[k] for s in stats]).max() for k in stats[0]}
        for p in parts:
            p.scope_stats = reduced
    total = sum(m.compute_loss(p)[0] for p in parts)
    (grad,) = torch.autograd.grad(total, lb.logp)
    return total, grad, stats


@pytest.mark.parametrize("name", ["steer", "steer_linear", "steer_binary", "steer_reference"])
def test_minibatch_scope_makes_the_update_independent_of_the_micro_batch_size(name):
    """Eq. 10's max over the mini-batch: with the scope hook, splitting a mini-batch into micro-batches
    gives the whole batch's loss and gradient (the linear mapping's min too). steer_reference (the
    released code) and steer_binary (a quantile is not MAX-reducible) keep per-micro-batch statistics."""
    m = R.build_method(name)
    rb, g = rollout(12, b=24)
    adv = torch.randn(rb.response_mask.shape, generator=g, dtype=torch.float64)  # no zero-Omega tokens
    adv = torch.where(rb.response_mask, adv, torch.zeros((), dtype=adv.dtype))
    lb = loss_batch(rb, adv, g, dtype=torch.float64)
    n_tok, n_seq = float(lb.response_mask.sum()), float(lb.response_mask.shape[0])
    whole = dataclasses.replace(lb, global_num_tokens=n_tok, global_num_seqs=n_seq)
    l_whole, _ = m.compute_loss(whole)
    (g_whole,) = torch.autograd.grad(l_whole, lb.logp)
    per_micro = name in ("steer_reference", "steer_binary")
    for split in ([slice(0, 8), slice(8, 16), slice(16, 24)], [slice(0, 5), slice(5, 24)]):
        total, g_split, stats = _split_loss_and_grad(m, lb, split, n_tok, n_seq, hook=True)
        if per_micro:
            assert stats == [{}] * len(split)
            assert not torch.allclose(g_split, g_whole, rtol=1e-6, atol=0)
        else:
            assert set(stats[0]) == (
                {"omega_max", "omega_neg_min"} if name == "steer_linear" else {"omega_max"}
            )
            torch.testing.assert_close(total, l_whole, rtol=1e-12, atol=1e-15)
            torch.testing.assert_close(g_split, g_whole, rtol=1e-10, atol=1e-15)
            # without the hook the update depends on the split (the check can fail)
            _, g_local, _ = _split_loss_and_grad(m, lb, split, n_tok, n_seq, hook=False)
            assert not torch.allclose(g_local, g_whole, rtol=1e-6, atol=0)
    if per_micro:
        with pytest.raises(ValueError, match="scope"):
            R.build_method("steer_binary", scope="minibatch")


def test_scope_pre_pass_does_not_touch_the_generator():
    cls = R.define_method(
        Preset(
            "clip_cov_steer",
            policy_loss="clip_cov",
            weighting="steer",
            defaults={"eps_low": 1.0, "eps_high": 1.0},
        ),
        register=False,
    )
    m = R.Method("clip_cov_steer", cls(clip_cov_ratio=0.2))
    rb, g = rollout(13)
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    before = m.generator.get_state()
    assert set(m.scope_stats(lb)) == {"omega_max"}
    m.compute_omega(lb)
    assert torch.equal(m.generator.get_state(), before)


def ref_dr_grpo(lb: LossBatch, loss_rows: list[list[float]], constant: float) -> float:
    """verl's agg_loss seq-mean-token-sum-norm: (sum over sequences of token sums) / n_seq / constant."""
    mask = lb.response_mask
    seqs = [sum(loss_rows[i][j] for j in range(mask.shape[1]) if mask[i, j]) for i in range(mask.shape[0])]
    n_seq = sum(1 for i in range(mask.shape[0]) if bool(mask[i].any()))
    return sum(seqs) / n_seq / constant


def test_dr_grpo_divides_by_the_configured_maximum_length():
    m = R.build_method("dr_grpo")
    rb, g = rollout(14)
    lb = loss_batch(rb, m.compute_advantages(rb), g, dtype=torch.float64)
    tl = m.token_loss(lb)
    rows = tl.loss_mat.detach().tolist()
    T = lb.response_mask.shape[1]
    # without a configured length: the padded length (and the trainer should always pass it)
    assert float(m.compute_loss(lb)[0].detach()) == pytest.approx(ref_dr_grpo(lb, rows, T), rel=1e-12)
    lb.max_response_length = 512
    assert float(m.compute_loss(lb)[0].detach()) == pytest.approx(ref_dr_grpo(lb, rows, 512), rel=1e-12)
    # an explicit loss_scale_factor wins
    m2 = R.build_method("dr_grpo", loss_scale_factor=100.0)
    assert float(m2.compute_loss(lb)[0].detach()) == pytest.approx(ref_dr_grpo(lb, rows, 100.0), rel=1e-12)
    with pytest.raises(ValueError, match="max_response_length"):
        m.compute_loss(dataclasses.replace(lb, max_response_length=0))


def test_floor_that_makes_the_weights_constant_warns():
    with pytest.warns(SteerFloorWarning, match="omega_lr"):
        m = R.build_method("steer", max_floor=0.02)
    rb, g = rollout(15)
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    with pytest.warns(SteerFloorWarning, match="constant"):
        _, met = m.compute_loss(lb)
    assert met["weight_min"] > 0.999  # what the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error", SteerFloorWarning)
        ref = R.build_method("steer_reference")  # omega_lr = 1: the floor acts as released
        ref.compute_loss(lb)
    with pytest.raises(ValueError, match="exp mapping only"):
        R.build_method("steer_linear", max_floor=0.02, omega_lr=1.0)


def ref_clip_by_prob(old_logp, lo, hi, du, mask):
    out = {}
    for k in range(10):
        out[k] = [0, 0, 0, 0]
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if not mask[i, j]:
                continue
            p = math.exp(float(old_logp[i, j]))
            k = min(int(math.floor(p * 10)), 9)
            out[k][0] += 1
            out[k][1] += int(lo[i, j])
            out[k][2] += int(hi[i, j])
            out[k][3] += int(du[i, j])
    return out


def test_clip_by_prob_metrics_against_loops_and_reduction():
    g = torch.Generator().manual_seed(16)
    b, t = 12, 9
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[0] = False  # an empty response
    old = torch.log(torch.rand(b, t, generator=g, dtype=torch.float64).clamp(min=1e-4))
    old[1, 0] = 0.0  # probability exactly 1 lands in p9
    logp = old + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.8
    adv = torch.randn(b, 1, generator=g, dtype=torch.float64).expand(b, t)
    s = clipped_surrogate(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, clip_c=3.0)
    got = clip_by_prob_metrics(s, old, mask)
    ref = ref_clip_by_prob(old, s.clipped_low, s.clipped_high, s.clipped_dual, mask)
    for k in range(10):
        assert [got[f"clip_by_prob/p{k}/{x}"] for x in ("tokens", "low", "high", "dual")] == ref[k]
    assert sum(ref[k][1] + ref[k][2] + ref[k][3] for k in range(10)) > 0
    # two micro-batches reduce to the whole batch's counts and fractions
    halves = [clip_by_prob_metrics(s_, o_, m_) for s_, o_, m_ in _halves(s, old, mask)]
    red = reduce_metrics([(h, 1.0) for h in halves])
    for k in range(10):
        assert red[f"clip_by_prob/p{k}/tokens"] == ref[k][0]
        if ref[k][0]:
            assert red[f"clip_by_prob/p{k}/low_frac"] == pytest.approx(ref[k][1] / ref[k][0])


def _halves(s, old, mask):
    from steer.core.losses import SurrogateResult

    for r in (slice(0, 6), slice(6, 12)):
        yield (
            SurrogateResult(
                s.loss_mat[r], s.ratio[r], s.clipped_low[r], s.clipped_high[r], s.clipped_dual[r]
            ),
            old[r],
            mask[r],
        )


def test_quadrant_metrics_follow_the_paper_and_shares_are_derived():
    """Quadrants by sign(A) and sign(delta) (paper section 3.2.1): I A>0 & delta<0 (entropy
    decreases), II A>0 & delta>0 (increases), III A<0 & delta>0 (decreases), IV A<0 & delta<0
    (increases); the Omega sums carry those signs."""
    m = R.build_method("grpo")
    rb, g = rollout(17)
    lb = loss_batch(rb, m.compute_advantages(rb), g, dtype=torch.float64)
    _, met = m.compute_loss(lb)
    mask = lb.response_mask
    counts = {q: 0 for q in ("I", "II", "III", "IV")}
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if not mask[i, j]:
                continue
            a = float(lb.advantages[i, j])
            lp = float(lb.logp.detach()[i, j])
            p = math.exp(lp)
            delta = -p * (1 - p) ** 2 * (lp + float(lb.entropy.detach()[i, j]))
            if a > 0 and delta < 0:
                counts["I"] += 1
            elif a > 0 and delta > 0:
                counts["II"] += 1
            elif a < 0 and delta > 0:
                counts["III"] += 1
            elif a < 0 and delta < 0:
                counts["IV"] += 1
    for q, n in counts.items():
        assert met[f"quadrant/{q}/count"] == n
    assert met["quadrant/I/omega_sum"] <= 0 and met["quadrant/III/omega_sum"] <= 0
    assert met["quadrant/II/omega_sum"] >= 0 and met["quadrant/IV/omega_sum"] >= 0
    red = reduce_metrics([(met, met["tokens"])])
    total = sum(counts.values())
    assert red["quadrant/II/share"] == pytest.approx(counts["II"] / total)
