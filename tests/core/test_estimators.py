"""Entropy-change estimators against independent float64 references (plain Python loops)."""

from __future__ import annotations

import math

import pytest
import torch

from steer.analysis.correlation import agreement, pearson, rank, spearman
from steer.core.estimators import (
    ESTIMATORS,
    clip_indicator,
    delta_indicator,
    estimate_entropy_change,
    omega_cov,
    omega_exact,
    omega_paper,
    omega_reference,
    token_weight_w,
)
from steer.core.stats import token_stats_from_logits


def _softmax_rows(seed: int, n: int, v: int, scale: float) -> tuple[list[list[float]], list[int]]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    probs = torch.softmax(z, dim=-1).tolist()
    ids = torch.randint(0, v, (n,), generator=g).tolist()
    return probs, ids


def _ref_row(p: list[float], o: int) -> tuple[float, float, float, float]:
    """logp, H, sum p^2, sum p^2 log p of one distribution, plain loops."""
    h = 0.0
    s2 = 0.0
    p2 = 0.0
    for q in p:
        if q > 0:
            h -= q * math.log(q)
            s2 += q * q * math.log(q)
        p2 += q * q
    return math.log(p[o]), h, p2, s2


def _inputs(seed: int, n: int = 37, v: int = 23, dtype=torch.float32):
    probs, ids = _softmax_rows(seed, n, v, scale=1.0 + seed % 4)
    rows = [_ref_row(p, o) for p, o in zip(probs, ids)]
    g = torch.Generator().manual_seed(seed + 1000)
    w = (torch.randn(n, generator=g, dtype=torch.float64) * 2).tolist()
    lr = 10 ** (-1 - seed % 3)
    t = lambda xs: torch.tensor(xs, dtype=torch.float64).to(dtype)  # noqa: E731
    return dict(
        rows=rows,
        w=w,
        lr=lr,
        logp=t([r[0] for r in rows]),
        entropy=t([r[1] for r in rows]),
        sum_p2=t([r[2] for r in rows]),
        sum_p2_logp=t([r[3] for r in rows]),
        wt=t(w),
    )


@pytest.mark.parametrize("seed", [3, 11, 29])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_single_token_forms_match_loop_reference(seed, dtype):
    d = _inputs(seed, dtype=dtype)
    tol = dict(float64=1e-12, float32=1e-5, bfloat16=1e-5)[str(dtype).split(".")[1]]
    got_delta = delta_indicator(d["logp"], d["entropy"])
    got_paper = omega_paper(d["wt"], d["logp"], d["entropy"], d["lr"])
    got_exact = omega_exact(d["wt"], d["logp"], d["entropy"], d["sum_p2"], d["sum_p2_logp"], d["lr"])
    assert got_delta.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    # References use the (possibly rounded) inputs as given, in float64.
    lp = d["logp"].double().tolist()
    h = d["entropy"].double().tolist()
    p2 = d["sum_p2"].double().tolist()
    s2 = d["sum_p2_logp"].double().tolist()
    w = d["wt"].double().tolist()
    for i in range(len(lp)):
        pi = math.exp(lp[i])
        ref_delta = -pi * (1 - pi) ** 2 * (lp[i] + h[i])
        ref_paper = -d["lr"] * w[i] * (1 - pi) ** 2 * (lp[i] + h[i])
        ref_exact = -d["lr"] * w[i] * (pi * (lp[i] + h[i]) - (s2[i] + h[i] * p2[i]))
        for got, ref in ((got_delta[i], ref_delta), (got_paper[i], ref_paper), (got_exact[i], ref_exact)):
            assert abs(float(got) - ref) <= tol * (1 + abs(ref)), (i, float(got), ref)


def test_exact_equals_sum_form():
    """S2 + H P2 = sum_j p_j^2 (log p_j + H): the exact estimator equals the defining vocab sum."""
    probs, ids = _softmax_rows(5, 20, 17, 2.0)
    w, lr = 0.7, 0.05
    for p, o in zip(probs, ids):
        lp, h, p2, s2 = _ref_row(p, o)
        direct = -lr * w * (p[o] * (lp + h) - sum(q * q * (math.log(q) + h) for q in p))
        got = omega_exact(*(torch.tensor([x], dtype=torch.float64) for x in (w, lp, h, p2, s2)), lr)
        assert abs(float(got) - direct) < 1e-13


@pytest.mark.parametrize("seed", [1, 8])
def test_reference_form_and_clamps(seed):
    g = torch.Generator().manual_seed(seed)
    n = 50
    a = torch.randn(n, generator=g, dtype=torch.float64)
    logp = -torch.rand(n, generator=g, dtype=torch.float64) * 6
    old_logp = logp + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    old_logp = old_logp.clamp(max=0)
    h = torch.rand(n, generator=g, dtype=torch.float64) * 3
    # edge cases: pi -> 1 (logp = 0), pi -> 0 (logp very negative), old pi tiny
    logp[0] = 0.0
    logp[1] = -50.0
    old_logp[2] = -40.0
    got = omega_reference(a, logp, old_logp, h, lr=0.3)
    for i in range(n):
        pi = min(max(math.exp(float(logp[i])), 1e-8), 1 - 1e-8)
        po = min(max(math.exp(float(old_logp[i])), 1e-8), 1.0)
        ref = -0.3 * float(a[i]) / po * pi * (1 - pi) * (math.log(pi) + float(h[i]))
        assert abs(float(got[i]) - ref) <= 1e-12 * (1 + abs(ref))
    assert torch.isfinite(got).all()
    # at r = 1 and H_old = H it equals -lr A (1 - pi)(log pi + H)
    r1 = omega_reference(a, logp, logp, h, lr=1.0)
    pi = logp.exp().clamp(1e-8, 1 - 1e-8)
    assert torch.allclose(r1, -a * (1 - pi) * (pi.log() + h), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", [2, 17])
def test_cov_matches_loop_reference_with_mask(seed):
    g = torch.Generator().manual_seed(seed)
    b, t = 4, 9
    logp = -torch.rand(b, t, generator=g) * 5
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous()
    lengths = [9, 3, 0, 6]  # includes an empty response
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    logp_pad = logp.masked_fill(~mask, float("nan"))  # padding garbage must not leak
    got = omega_cov(logp_pad, adv, mask, lr=0.5)
    vals = [(float(logp[i, j]), float(adv[i, j])) for i in range(b) for j in range(t) if mask[i, j]]
    ml = sum(v[0] for v in vals) / len(vals)
    ma = sum(v[1] for v in vals) / len(vals)
    for i in range(b):
        for j in range(t):
            if mask[i, j]:
                ref = -0.5 * (float(logp[i, j]) - ml) * (float(adv[i, j]) - ma)
                assert abs(float(got[i, j]) - ref) < 1e-5
            else:
                assert float(got[i, j]) == 0.0
    # equal rewards in the batch: advantages all equal -> every estimate is 0
    eq = omega_cov(logp, torch.full_like(logp, 0.3), mask)
    assert eq.abs().max() < 1e-12
    # all-masked: zeros; 0/1 float masks work like bool masks
    assert torch.equal(omega_cov(logp, adv, torch.zeros_like(mask)), torch.zeros_like(logp))
    assert torch.allclose(omega_cov(logp_pad, adv, mask.float(), lr=0.5), got)


def test_clip_indicator_and_w():
    r = torch.tensor([0.5, 0.79, 0.81, 1.0, 1.27, 1.29, 2.0, 0.5, 2.0, 1.5])
    a = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 0.0])
    got = clip_indicator(r, a, eps_low=0.2, eps_high=0.28)
    ref = []
    for ri, ai in zip(r.tolist(), a.tolist()):
        ref.append(0.0 if (ai > 0 and ri > 1.28) or (ai < 0 and ri < 0.8) else 1.0)
    assert got.tolist() == ref
    w = token_weight_w(r, a, 0.2, 0.28)
    assert torch.allclose(w, torch.tensor(ref) * r * a)


def test_registry_and_errors():
    assert set(ESTIMATORS) == {"paper", "reference", "exact", "cov"}
    x = torch.tensor([-0.5, -1.0])
    h = torch.tensor([1.0, 2.0])
    assert torch.equal(
        estimate_entropy_change("paper", w=x, logp=x, entropy=h, lr=0.1), omega_paper(x, x, h, 0.1)
    )
    with pytest.raises(ValueError, match="valid: \\['cov', 'exact', 'paper', 'reference'\\]"):
        estimate_entropy_change("nope", w=x)
    with pytest.raises(ValueError, match="mismatched shapes"):
        omega_paper(x, x, torch.ones(3), 0.1)


def test_outputs_are_detached():
    lp = torch.tensor([-0.3, -2.0], requires_grad=True)
    h = torch.tensor([1.0, 2.0], requires_grad=True)
    w = torch.tensor([1.0, -1.0], requires_grad=True)
    for out in (
        delta_indicator(lp, h),
        omega_paper(w, lp, h, 0.1),
        omega_exact(w, lp, h, h * 0.1, h * -0.1, 0.1),
        omega_reference(w, lp, lp, h),
        omega_cov(lp, w, None),
    ):
        assert not out.requires_grad


def test_delta_sign_is_four_quadrant_rule():
    """-(log pi + H) > 0 iff pi < exp(-H): low-probability tokens raise entropy when pushed up."""
    h = torch.full((5,), 1.0)
    lp = torch.tensor([-3.0, -1.5, -0.5, -0.1, -1.0])
    d = delta_indicator(lp, h)
    assert (d[:2] > 0).all() and (d[2:4] < 0).all() and d[4] == 0


# ------------------------------------------------------------------------------------------------
# Pearson / Spearman, checked against loop references


def _pearson_loop(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def _rank_loop(x: list[float]) -> list[float]:
    out = []
    for a in x:
        less = sum(1 for b in x if b < a)
        equal = sum(1 for b in x if b == a)
        out.append(less + (equal + 1) / 2)
    return out


@pytest.mark.parametrize("seed", [0, 9, 42])
def test_pearson_spearman_match_loops(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(60, generator=g, dtype=torch.float64)
    y = x + torch.randn(60, generator=g, dtype=torch.float64) * 0.8
    x = torch.round(x * 4) / 4  # ties
    assert rank(x).tolist() == _rank_loop(x.tolist())
    assert abs(pearson(x, y) - _pearson_loop(x.tolist(), y.tolist())) < 1e-12
    rs = _pearson_loop(_rank_loop(x.tolist()), _rank_loop(y.tolist()))
    assert abs(spearman(x, y) - rs) < 1e-12


def test_correlation_edge_cases():
    x = torch.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -torch.exp(x)) == pytest.approx(-1.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert math.isnan(pearson(x, torch.ones(10)))
    m = agreement(torch.tensor([1.0, -2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert m["mse"] == pytest.approx(16 / 3) and m["sign_agreement"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------------
# Estimators against the measured entropy change of a real logit step (paper Fig. 1-2 style)


def _entropy64(z: torch.Tensor) -> torch.Tensor:
    l = torch.log_softmax(z, -1)
    return -(l.exp() * l).sum(-1)


def tabular_step_experiment(seed: int, n_states: int = 400, lr: float = 1e-3) -> dict:
    """Random softmax states, one real step z' = z + lr w (e_o - pi) per state, measured dH.

    V is log-uniform in [50, 5000]; logits are N(0, s^2) with s log-uniform in [0.3, 10] (from
    nearly uniform to very peaked); o is sampled from pi; w = sign * exp(N(0, 1)). The step is
    exactly a gradient step on w log pi_o in the tabular model (Assumption 1). Returns the
    measured change and every estimator's agreement metrics.
    """
    g = torch.Generator().manual_seed(seed)
    logp, ent, p2, s2, ws, dh = [], [], [], [], [], []
    for _ in range(n_states):
        v = int(math.exp(math.log(50) + (math.log(5000) - math.log(50)) * torch.rand((), generator=g).item()))
        s = math.exp(math.log(0.3) + (math.log(10) - math.log(0.3)) * torch.rand((), generator=g).item())
        z = torch.randn(v, generator=g, dtype=torch.float64) * s
        pi = torch.softmax(z, -1)
        o = int(torch.multinomial(pi, 1, generator=g))
        w = (1.0 if torch.rand((), generator=g).item() < 0.5 else -1.0) * math.exp(
            torch.randn((), generator=g).item()
        )
        st = token_stats_from_logits(z[None], torch.tensor([o]))
        step = -pi.clone()
        step[o] += 1.0
        z2 = z + lr * w * step
        dh.append(float(_entropy64(z2) - _entropy64(z)))
        logp.append(float(st.logp[0]))
        ent.append(float(st.entropy[0]))
        p2.append(float(st.sum_p2[0]))
        s2.append(float(st.sum_p2_logp[0]))
        ws.append(w)
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    logp_t, ent_t, p2_t, s2_t, w_t, dh_t = map(t, (logp, ent, p2, s2, ws, dh))
    est = {
        "exact": omega_exact(w_t, logp_t, ent_t, p2_t, s2_t, lr),
        "paper": omega_paper(w_t, logp_t, ent_t, lr),
        # r = 1 (pi_old = pi, H_old = H) and A = w: the released code's form on the same step
        "reference": omega_reference(w_t, logp_t, logp_t, ent_t, lr),
        "cov": omega_cov(logp_t, w_t, None, lr),
    }
    return {"measured": dh_t, "estimates": est, "metrics": {k: agreement(v, dh_t) for k, v in est.items()}}


@pytest.mark.parametrize("seed", [101, 202])
def test_estimators_against_measured_step(seed):
    res = tabular_step_experiment(seed, n_states=300, lr=1e-3)
    m = res["metrics"]
    for name, vals in m.items():
        print(f"seed={seed} {name:9s} " + " ".join(f"{k}={v:.4g}" for k, v in vals.items()))
    # the first-order value must track the real change for a small step
    assert m["exact"]["pearson"] > 0.999
    assert m["exact"]["spearman"] > 0.99
    assert m["exact"]["mse"] < min(m[k]["mse"] for k in ("paper", "reference", "cov"))
    # the single-token forms share the sign of -w (log pi + H) (spec 13.2), so they agree in sign
    est = res["estimates"]
    same = (torch.sign(est["paper"]) == torch.sign(est["reference"])).double().mean()
    assert same > 0.99
    # and the measured change is finite and not trivially zero
    assert torch.isfinite(res["measured"]).all() and res["measured"].abs().max() > 0


def _print_table() -> None:  # pragma: no cover - used to produce the numbers in docs/core.md
    for lr in (1e-3, 1e-1, 1.0):
        rows: dict[str, list[dict]] = {}
        for seed in (101, 202, 303):
            res = tabular_step_experiment(seed, n_states=2000, lr=lr)
            for k, v in res["metrics"].items():
                rows.setdefault(k, []).append(v)
        print(f"\nlr = {lr}: 3 seeds x 2000 states, V in [50, 5000] (mean over seeds; min..max)")
        print("| estimator | MSE | Pearson | Spearman | sign agreement |")
        print("|---|---|---|---|---|")
        for k, vs in rows.items():
            cells = []
            for key in ("mse", "pearson", "spearman", "sign_agreement"):
                xs = [v[key] for v in vs]
                fmt = ".3g" if key == "mse" else ".5f"
                cells.append(f"{sum(xs) / len(xs):{fmt}} ({min(xs):{fmt}}..{max(xs):{fmt}})")
            print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":  # pragma: no cover
    _print_table()


def test_theorem1_w_is_the_surrogates_gradient_weight_with_the_dual_clip():
    """Theorem 1's w is the per-token policy-gradient weight of Eq. 5, ``w = -dL/d log pi`` of the
    clipped surrogate. With the dual clip (Ye et al.; STEER's recipe c = 10) the loss of a token
    with A < 0 and r > c is the constant ``-c A``: no gradient, so w = 0 there. Decided in float64
    against autograd of an independently written surrogate, on fresh random inputs with padding."""
    g = torch.Generator().manual_seed(11)
    b, t, c = 16, 12, 3.0
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    # log-ratios spread over [-2.5, 2.5]: every clip fires, the dual one included (r > 3)
    old = logp - (torch.rand(b, t, generator=g, dtype=torch.float64) * 5 - 2.5)
    adv = torch.randn(b, t, generator=g, dtype=torch.float64)
    mask = torch.rand(b, t, generator=g) > 0.2
    mask[0] = False  # an empty response

    x = logp.clone().requires_grad_()
    r = torch.exp(x - old)
    clip1 = torch.maximum(-adv * r, -adv * r.clamp(0.8, 1.28))
    loss = torch.where(adv < 0, torch.minimum(clip1, -adv * c), clip1)
    (grad,) = torch.autograd.grad(torch.where(mask, loss, 0.0).sum(), x)
    w_true = -grad

    ratio = torch.exp(logp - old)
    w = token_weight_w(ratio, adv, 0.2, 0.28, c)
    assert torch.allclose(torch.where(mask, w, 0.0), w_true, rtol=0, atol=1e-12)
    dual = mask & (adv < 0) & (ratio > c)
    assert int(dual.sum()) > 0
    # the form without the dual clip gives the dual-clipped tokens a weight the loss never applies
    w_no_dual = token_weight_w(ratio, adv, 0.2, 0.28)
    assert not torch.allclose(torch.where(mask, w_no_dual, 0.0), w_true, rtol=0, atol=1e-12)
    assert torch.equal(w_no_dual[~dual & mask], w[~dual & mask])
    # the surrogate's own weight (what STEER, the cause pass and the quadrant metrics use) is the same
    from steer.core.losses import clipped_surrogate

    s = clipped_surrogate(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, clip_c=c)
    assert torch.allclose(torch.where(mask, s.token_weight(adv), 0.0), w_true, rtol=0, atol=1e-12)
    assert torch.equal(s.clipped_dual, dual)
