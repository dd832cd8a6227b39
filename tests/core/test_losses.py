"""Policy losses, aggregation and interventions against float64 loop references (spec §0, §1, §7, §10-12)."""

from __future__ import annotations

import math

import pytest
import torch

from steer.core import losses as L
from steer.core.registry import build_method
from steer.core.types import LossBatch, Normalisers


def policy_loss(
    row,
    logp,
    old,
    adv,
    mask,
    entropy=None,
    *,
    generator=None,
    loss_agg_mode="token-mean",
    normalisers=None,
    **params,
):
    """The registered policy loss of method ``row`` (grpo: vanilla, clip_cov, kl_cov, forking_tokens)
    aggregated once, through the one pipeline (``Method.compute_loss``): ``(loss, metrics)``."""
    n = normalisers or Normalisers()
    m = build_method(
        row, loss_agg_mode=loss_agg_mode, loss_scale_factor=n.scale_factor, quadrant_metrics=False, **params
    )
    if generator is not None:
        m.generator = generator
    lb = LossBatch(
        logp=logp,
        old_logp=old,
        advantages=adv,
        response_mask=mask,
        entropy=entropy,
        global_num_tokens=n.num_tokens,
        global_num_seqs=n.num_seqs,
    )
    return m.compute_loss(lb)


def make(seed: int, b: int = 6, t: int = 11, dtype=torch.float64, spread: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    lengths[0] = 0  # empty response
    lengths[1] = t
    mask = torch.arange(t)[None, :] < lengths[:, None]
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    logp = (old + spread * torch.randn(b, t, generator=g, dtype=torch.float64)).clamp(max=0)
    adv = torch.randn(b, 1, generator=g, dtype=torch.float64).expand(b, t).clone()
    adv[2] = 0.0
    ent = torch.rand(b, t, generator=g, dtype=torch.float64) * 2
    return logp.to(dtype), old, adv, mask, ent


def ref_token_loss(lp, olp, a, el, eh, c):
    r = math.exp(max(min(lp - olp, 20.0), -20.0))
    l1 = -a * r
    l2 = -a * min(max(r, 1 - el), 1 + eh)
    loss = max(l1, l2)
    grad_flows = not (l2 > l1)
    dual = False
    if c is not None and a < 0:
        l3 = -a * c
        if loss > l3:
            dual = True
            grad_flows = False
        loss = min(loss, l3)
    grad = -a * r if grad_flows else 0.0
    return loss, grad, (l2 > l1) and a < 0, (l2 > l1) and a > 0, dual


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("clip", [(0.2, 0.2, None), (0.2, 0.28, 10.0), (0.1, 0.3, 1.5)])
def test_clipped_surrogate_matches_reference(dtype, clip):
    el, eh, c = clip
    logp, old, adv, mask, _ = make(1, dtype=dtype, spread=0.6)
    weight = torch.rand(mask.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = logp.clone().requires_grad_()
    s = L.clipped_surrogate(x, old, adv, mask, eps_low=el, eps_high=eh, clip_c=c)
    # token weights multiply the loss matrix afterwards (as Method applies a weighting)
    weighted = s.loss_mat * weight.to(s.loss_mat.dtype)
    weighted.sum().backward()
    lpd = logp.double()
    b, t = mask.shape
    for i in range(b):
        for j in range(t):
            if not mask[i, j]:
                assert s.loss_mat[i, j] == 0 and weighted[i, j] == 0 and x.grad[i, j] == 0
                assert not (s.clipped_low[i, j] or s.clipped_high[i, j] or s.clipped_dual[i, j])
                continue
            loss, grad, lo, hi, du = ref_token_loss(
                float(lpd[i, j]), float(old[i, j]), float(adv[i, j]), el, eh, c
            )
            w = float(weight[i, j])
            assert float(weighted.detach()[i, j]) == pytest.approx(loss * w, rel=1e-5, abs=1e-6)
            tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
            assert float(x.grad[i, j]) == pytest.approx(grad * w, rel=tol, abs=1e-6)
            assert bool(s.clipped_low[i, j]) == lo
            assert bool(s.clipped_high[i, j]) == hi
            assert bool(s.clipped_dual[i, j]) == du
    assert x.grad.dtype == dtype


def test_gradient_exact_in_float64():
    logp, old, adv, mask, _ = make(2, spread=0.4)
    x = logp.clone().requires_grad_()
    s = L.clipped_surrogate(x, old, adv, mask, eps_low=0.2, eps_high=0.28, clip_c=3.0)
    s.loss_mat.sum().backward()
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if mask[i, j]:
                _, grad, *_ = ref_token_loss(
                    float(logp[i, j]), float(old[i, j]), float(adv[i, j]), 0.2, 0.28, 3.0
                )
                # d(-A r)/d logp = -A r
                assert float(x.grad[i, j]) == pytest.approx(grad, rel=1e-12, abs=1e-14)


def test_log_ratio_clamp_and_nan_on_padding():
    mask = torch.tensor([[True, True, False]])
    old = torch.zeros(1, 3)
    logp = torch.tensor([[50.0, -50.0, float("nan")]], requires_grad=True)
    adv = torch.tensor([[-1.0, 1.0, 1.0]])
    s = L.clipped_surrogate(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    assert s.ratio[0, 0] == pytest.approx(math.exp(20.0), rel=1e-6)
    assert s.ratio[0, 1] == pytest.approx(math.exp(-20.0), rel=1e-6)
    loss = L.aggregate(s.loss_mat, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert logp.grad[0, 2] == 0


def ref_aggregate(lm, mask, mode, gnt=None, gns=None, scale=None):
    b, t = mask.shape
    seqs = []
    total = 0.0
    n = 0
    for i in range(b):
        vals = [float(lm[i, j]) for j in range(t) if mask[i, j]]
        total += sum(vals)
        n += len(vals)
        if vals:
            seqs.append(sum(vals) / len(vals) if mode == "seq-mean-token-mean" else sum(vals))
    if mode == "token-mean":
        d = gnt if gnt is not None else n
        return total / d if d else 0.0
    if mode == "token-sum":
        return total
    d = gns if gns is not None else len(seqs)
    out = sum(seqs) / d if d else 0.0
    if mode == "seq-mean-token-sum-norm":
        out /= scale if scale is not None else t
    return out


@pytest.mark.parametrize("mode", L.AGG_MODES)
@pytest.mark.parametrize("glob", [False, True])
def test_aggregate_matches_reference(mode, glob):
    logp, old, adv, mask, _ = make(4)
    lm = torch.randn(mask.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lm = torch.where(mask, lm, torch.full_like(lm, float("nan")))  # garbage on padding
    kw = {}
    if glob:
        kw = {"global_num_tokens": 123.0, "global_num_seqs": 17, "loss_scale_factor": 64.0}
    out = L.aggregate(
        lm,
        mask,
        mode,
        Normalisers(kw.get("global_num_tokens"), kw.get("global_num_seqs"), kw.get("loss_scale_factor")),
    )
    ref = ref_aggregate(
        lm, mask, mode, kw.get("global_num_tokens"), kw.get("global_num_seqs"), kw.get("loss_scale_factor")
    )
    assert float(out.detach()) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("mode", L.AGG_MODES)
def test_aggregate_all_masked_is_zero_with_zero_grad(mode):
    x = torch.randn(3, 4, requires_grad=True)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    out = L.aggregate(x * 2, mask, mode)
    out.backward()
    assert float(out.detach()) == 0.0
    assert (x.grad == 0).all()


def test_aggregate_bad_args():
    x = torch.zeros(2, 3)
    m = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="valid"):
        L.aggregate(x, m, "mean")
    with pytest.raises(ValueError, match="mismatched"):
        L.aggregate(x, m[:, :2])
    with pytest.raises(ValueError, match="global_num_tokens"):
        L.aggregate(x, m, normalisers=Normalisers(num_tokens=float("nan")))
    with pytest.raises(ValueError, match="loss_scale_factor"):
        L.aggregate(x, m, "seq-mean-token-sum-norm", Normalisers(scale_factor=0.0))


@pytest.mark.parametrize("mode", L.AGG_MODES)
def test_aggregate_rejects_impossible_global_normalisers(mode):
    """A global count smaller than this batch's own count (or <= 0 with valid tokens) is a caller bug."""
    x = torch.randn(3, 4, dtype=torch.float64)
    m = torch.ones(3, 4, dtype=torch.bool)
    m[1, 2:] = False
    m[2] = False  # 6 valid tokens, 2 non-empty sequences
    for bad in (5.0, 0.0, -1.0, torch.tensor(5.0)):
        with pytest.raises(ValueError, match="global_num_tokens"):
            L.aggregate(x, m, mode, Normalisers(num_tokens=bad))
    for bad in (1, 0, -2.0):
        with pytest.raises(ValueError, match="global_num_seqs"):
            L.aggregate(x, m, mode, Normalisers(num_seqs=bad))
    # equal to or above the local count is fine; an all-masked micro-batch accepts 0
    L.aggregate(x, m, mode, Normalisers(6, 2))
    L.aggregate(x, m, mode, Normalisers(torch.tensor(600.0), 20))
    none = torch.zeros_like(m)
    assert float(L.aggregate(x, none, mode, Normalisers(0.0, 0))) == 0.0
    # the same check reaches the policy losses and the forking loss (checked against all valid tokens)
    lp = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="global_num_tokens"):
        policy_loss("grpo", lp, lp, x, m, loss_agg_mode=mode, normalisers=Normalisers(num_tokens=5.0))
    with pytest.raises(ValueError, match="global_num_tokens"):
        policy_loss(
            "forking_tokens",
            lp,
            lp,
            x,
            m,
            x.abs(),
            rho=0.2,
            loss_agg_mode=mode,
            normalisers=Normalisers(num_tokens=5.0),
        )
    # forking: global_num_tokens == local count is valid although ceil(rho N) > rho N selected tokens
    loss, _ = policy_loss(
        "forking_tokens",
        lp,
        lp,
        x,
        m,
        x.abs(),
        rho=0.2,
        loss_agg_mode=mode,
        normalisers=Normalisers(num_tokens=6.0),
    )
    assert torch.isfinite(loss)


def ref_cov(logp, adv, mask):
    cells = [(i, j) for i in range(mask.shape[0]) for j in range(mask.shape[1]) if mask[i, j]]
    ml = sum(float(logp[c]) for c in cells) / len(cells)
    ma = sum(float(adv[c]) for c in cells) / len(cells)
    return {c: (float(logp[c]) - ml) * (float(adv[c]) - ma) for c in cells}


def test_clip_cov_selection_and_loss():
    logp, old, adv, mask, _ = make(5, b=8, t=40, spread=0.05)
    adv = adv * 4
    lb, ub, ratio = 0.05, 5.0, 0.05
    s = L.clipped_surrogate(logp, old, adv, mask, eps_low=1.0, eps_high=1.0)
    cov = ref_cov(logp, adv, mask)
    cand = {c for c, v in cov.items() if lb < v < ub and not (s.clipped_low[c] or s.clipped_high[c])}
    n = int(mask.sum())
    assert len(cand) > 3
    sel = L.clip_cov_select(
        logp,
        adv,
        mask,
        already_clipped=s.clipped_low | s.clipped_high,
        clip_cov_ratio=ratio,
        clip_cov_lb=lb,
        clip_cov_ub=ub,
        generator=torch.Generator().manual_seed(0),
    )
    picked = {tuple(ix) for ix in sel.nonzero().tolist()}
    assert picked <= cand
    assert len(picked) == min(max(int(ratio * n), 1), len(cand))
    sel2 = L.clip_cov_select(
        logp,
        adv,
        mask,
        already_clipped=s.clipped_low | s.clipped_high,
        clip_cov_ratio=ratio,
        clip_cov_lb=lb,
        clip_cov_ub=ub,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(sel, sel2)  # reproducible
    x = logp.clone().requires_grad_()
    loss, met = policy_loss(
        "clip_cov",
        x,
        old,
        adv,
        mask,
        clip_cov_ratio=ratio,
        clip_cov_lb=lb,
        clip_cov_ub=ub,
        generator=torch.Generator().manual_seed(0),
    )
    loss.backward()
    ref = ref_aggregate(torch.where(sel, 0.0, s.loss_mat), mask, "token-mean")
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-10)
    assert (x.grad[sel] == 0).all()
    assert met["clip_cov/selected_frac"] == pytest.approx(len(picked) / n)


def test_kl_cov_matches_reference():
    logp, old, adv, mask, _ = make(6, b=8, t=30)
    k, beta = 0.05, 1.0
    cov = ref_cov(logp, adv, mask)
    n = len(cov)
    nk = max(int(k * n), 1)
    top = sorted(cov, key=lambda c: -cov[c])[:nk]
    x = logp.clone().requires_grad_()
    loss, met = policy_loss("kl_cov", x, old, adv, mask, kl_cov_ratio=k, kl_cov_coef=beta)
    total = 0.0
    for c in cov:
        d = float(logp[c]) - float(old[c])
        v = -float(adv[c]) * math.exp(d)
        if c in top:
            v += beta * abs(d)
        total += v
    assert float(loss.detach()) == pytest.approx(total / n, rel=1e-10)
    assert met["kl_cov/selected_frac"] == pytest.approx(nk / n)
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("rho", [0.2, 0.5, 1.0])
def test_forking_tokens(rho):
    logp, old, adv, mask, ent = make(7, b=6, t=20)
    top = L.forking_token_mask(ent, mask, rho=rho)
    cells = [(i, j) for i in range(6) for j in range(20) if mask[i, j]]
    k = max(math.ceil(rho * len(cells)), 1)
    want = set(sorted(cells, key=lambda c: -float(ent[c]))[:k])
    assert {tuple(c) for c in top.nonzero().tolist()} == want
    loss, _ = policy_loss(
        "forking_tokens", logp, old, adv, mask, ent, rho=rho, eps_low=0.2, eps_high=0.28, clip_c=10.0
    )
    s = L.clipped_surrogate(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, clip_c=10.0)
    # token-mean over the selected tokens
    assert float(loss.detach()) == pytest.approx(sum(float(s.loss_mat[c]) for c in want) / k, rel=1e-10)
    empty = L.forking_token_mask(ent, torch.zeros_like(mask), rho=rho)
    assert not empty.any()


def test_entropy_bonus_and_adaptive_controller():
    _, _, _, mask, ent = make(8)
    h = ent.clone().requires_grad_()
    term = L.entropy_bonus_loss(h, mask, 0.01)
    assert float(term.detach()) == pytest.approx(-0.01 * ref_aggregate(ent, mask, "token-mean"), rel=1e-12)
    term.backward()
    assert float(h.grad[mask][0]) == pytest.approx(-0.01 / int(mask.sum()))

    ctl = L.AdaptiveEntropyController(target=0.2, delta=1e-4, coef_init=0.0, coef_min=0.0, coef_max=3e-4)
    c, seq = 0.0, []
    for est in [0.1, 0.1, 0.3, 0.05, 0.05, 0.05, 0.05, 0.5]:
        c = c + 1e-4 if est < 0.2 else c - 1e-4
        c = min(max(c, 0.0), 3e-4)
        seq.append(c if est < 0.2 else 0.0)
        assert ctl.update(est) == pytest.approx(seq[-1])
    st = ctl.state_dict()
    ctl2 = L.AdaptiveEntropyController(target=0.2, delta=1e-4, coef_max=3e-4)
    ctl2.load_state_dict(st)
    assert ctl2.coef == ctl.coef and ctl2.gate == ctl.gate
    assert (
        L.AdaptiveEntropyController.estimate(torch.tensor([[-1.0, -3.0]]), torch.tensor([[True, False]]))
        == 1.0
    )


@pytest.mark.parametrize("kind", L.KL_TYPES)
def test_kl_estimators(kind):
    g = torch.Generator().manual_seed(9)
    logp = (-torch.rand(40, generator=g, dtype=torch.float64) * 3).requires_grad_()
    ref = -torch.rand(40, generator=g, dtype=torch.float64) * 3
    v = L.kl_penalty(logp, ref, kind)
    v.sum().backward()
    for i in range(40):
        d = float(logp.detach()[i]) - float(ref[i])
        base = kind.rstrip("+")
        want = {"k1": d, "abs": abs(d), "k2": 0.5 * d * d, "k3": math.exp(-d) + d - 1}[base]
        assert float(v.detach()[i]) == pytest.approx(want, rel=1e-12, abs=1e-12)
        if kind.endswith("+"):
            want_grad = d  # gradient of k2
        else:
            want_grad = {"k1": 1.0, "abs": math.copysign(1.0, d), "k2": d, "k3": 1 - math.exp(-d)}[base]
        assert float(logp.grad[i]) == pytest.approx(want_grad, rel=1e-12, abs=1e-12)
    assert (L.kl_penalty(torch.zeros(3), torch.zeros(3), "k3") == 0).all()
    with pytest.raises(ValueError, match="valid"):
        L.kl_penalty(logp, ref, "k4")


def test_kl_penalty_loss_nan_on_padding():
    mask = torch.tensor([[True, False]])
    logp = torch.tensor([[-1.0, float("nan")]], requires_grad=True)
    ref = torch.tensor([[-2.0, float("nan")]])
    term, mean = L.kl_penalty_loss(logp, ref, mask, 0.1, "k3")
    term.backward()
    assert float(term.detach()) == pytest.approx(0.1 * (math.exp(-1) + 1 - 1))
    assert torch.isfinite(logp.grad).all()


def test_quadrant_assignment_and_weights():
    g = torch.Generator().manual_seed(10)
    b, t = 8, 50
    mask = torch.rand(b, t, generator=g) > 0.1
    logp = torch.log(torch.rand(b, t, generator=g, dtype=torch.float64).clamp(min=1e-4))
    ent = torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    adv = torch.randn(b, 1, generator=g, dtype=torch.float64).expand(b, t).clone()
    adv[0] = 0
    qd = L.assign_quadrants(adv, mask, logp=logp, entropy=ent, by="delta")
    qp = L.assign_quadrants(adv, mask, logp=logp, by="prob")
    for i in range(b):
        for j in range(t):
            a, p = float(adv[i, j]), math.exp(float(logp[i, j]))
            delta = -p * (1 - p) ** 2 * (math.log(p) + float(ent[i, j]))
            want_d = want_p = 0
            if mask[i, j] and a != 0:
                if a > 0:
                    want_d = 1 if delta < 0 else (2 if delta > 0 else 0)
                    want_p = 1 if p > 0.8 else (2 if p < 0.2 else 0)
                else:
                    want_d = 4 if delta < 0 else (3 if delta > 0 else 0)
                    want_p = 4 if p > 0.8 else (3 if p < 0.2 else 0)
            assert int(qd[i, j]) == want_d
            assert int(qp[i, j]) == want_p
    n2 = int((qd == 2).sum())
    w, sel = L.quadrant_weights(
        qd, target="II", action="upweight", fraction=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert int(sel.sum()) == math.floor(0.1 * n2)
    assert (qd[sel] == 2).all() and (w[sel] == 2.0).all() and (w[~sel] == 1.0).all()
    w2, sel2 = L.quadrant_weights(
        qd, target="II", action="upweight", fraction=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(sel, sel2)
    wm, selm = L.quadrant_weights(
        qd, target="IV", action="mask", fraction=0.5, generator=torch.Generator().manual_seed(1)
    )
    assert (wm[selm] == 0).all() and int(selm.sum()) == math.floor(0.5 * int((qd == 4).sum()))
    met = L.quadrant_metrics(qd, torch.ones_like(ent))
    for k, name in enumerate(L.QUADRANTS, start=1):
        assert met[f"quadrant/{name}/count"] == float((qd == k).sum())
        assert met[f"quadrant/{name}/omega_sum"] == float((qd == k).sum())
    with pytest.raises(ValueError, match="valid"):
        L.quadrant_weights(qd, target="V")


def test_standard_metrics_values():
    logp, old, adv, mask, ent = make(11, spread=0.8)
    loss, met = policy_loss("grpo", logp, old, adv, mask, eps_low=0.2, eps_high=0.28, clip_c=1.5, entropy=ent)
    n = int(mask.sum())
    lo = hi = du = 0
    rs = []
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if mask[i, j]:
                _, _, a, b_, c = ref_token_loss(
                    float(logp[i, j]), float(old[i, j]), float(adv[i, j]), 0.2, 0.28, 1.5
                )
                lo, hi, du = lo + a, hi + b_, du + c
                rs.append(math.exp(float(logp[i, j]) - float(old[i, j])))
    assert met["tokens"] == n
    assert lo > 0 and hi > 0 and du > 0  # every clip branch is exercised
    assert met["clipfrac_low"] == pytest.approx(lo / n)
    assert met["clipfrac_high"] == pytest.approx(hi / n)
    assert met["clipfrac_dual"] == pytest.approx(du / n)
    assert met["ratio_mean"] == pytest.approx(sum(rs) / n)
    assert met["entropy_mean"] == pytest.approx(float(ent[mask].mean()))
    assert met["weight_mean"] == 1.0 and met["weight_min"] == 1.0
    assert met["pg_loss"] == pytest.approx(float(loss.detach()))
    empty = L.standard_metrics(torch.zeros(2, 2, dtype=torch.bool), weight=torch.ones(2, 2))
    assert empty["tokens"] == 0 and empty["weight_mean"] == 1.0 and empty["weight_min"] == 1.0


def test_bad_clip_args():
    logp, old, adv, mask, _ = make(0)
    with pytest.raises(ValueError, match="eps_low"):
        L.clipped_surrogate(logp, old, adv, mask, eps_low=-0.1)
    with pytest.raises(ValueError, match="clip_c"):
        L.clipped_surrogate(logp, old, adv, mask, clip_c=0.5)
    with pytest.raises(ValueError, match="mismatched"):
        L.clipped_surrogate(logp, old[:, :-1], adv, mask)


def test_selections_accept_non_contiguous_masks():
    logp, old, adv, mask, ent = make(12, b=6, t=30)
    mt, lt, at, et = (x.t().contiguous().t() for x in (mask, logp, adv, ent))  # same values, column-major
    assert not mt.is_contiguous()
    assert torch.equal(L.forking_token_mask(et, mt, rho=0.3), L.forking_token_mask(ent, mask, rho=0.3))
    assert torch.equal(
        L.kl_cov_select(lt, at, mt, kl_cov_ratio=0.1), L.kl_cov_select(logp, adv, mask, kl_cov_ratio=0.1)
    )
    kw = {"clip_cov_ratio": 0.1, "clip_cov_lb": -10.0, "clip_cov_ub": 10.0}
    a = L.clip_cov_select(lt, at, mt, generator=torch.Generator().manual_seed(0), **kw)
    b = L.clip_cov_select(logp, adv, mask, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)


def test_nan_on_valid_tokens_raises():
    logp, old, adv, mask, ent = make(13)
    bad = logp.clone()
    i, j = mask.nonzero()[0].tolist()
    bad[i, j] = float("nan")
    with pytest.raises(ValueError, match="logp"):
        L.clipped_surrogate(bad, old, adv, mask)
    with pytest.raises(ValueError, match="logp"):
        policy_loss("grpo", bad, old, adv, mask)
    with pytest.raises(ValueError, match="logp"):
        policy_loss("kl_cov", bad, old, adv, mask)
    with pytest.raises(ValueError, match="logp"):
        policy_loss("clip_cov", bad, old, adv, mask)
    bad_adv = adv.clone()
    bad_adv[i, j] = float("inf")
    with pytest.raises(ValueError, match="advantages"):
        L.clipped_surrogate(logp, old, bad_adv, mask)


# ------------------------------------------------------------------------------------------
# Parity with verl's own functions (only where verl is installed, e.g. `.venv-bench`).


class _VerlCfg:
    """The attributes verl's policy losses read from its actor config."""

    def __init__(self, low, high, c=3.0, **policy_loss):
        self.clip_ratio = low
        self.clip_ratio_low = low
        self.clip_ratio_high = high
        self.clip_ratio_c = c
        self.global_batch_info = {}
        self.policy_loss = type("PL", (), policy_loss)()

    def get(self, key, default=None):
        return getattr(self, key, default)


def _core_algos():
    pytest.importorskip("verl")
    from verl.trainer.ppo import core_algos

    return core_algos


@pytest.mark.parametrize("mode", L.AGG_MODES)
def test_aggregate_matches_verl(mode):
    ca = _core_algos()
    _, _, _, mask, _ = make(14, b=7, t=13)
    lm = torch.randn(mask.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    # verl divides seq-mean-token-mean's per-sequence sums by (count + 1e-8): ~1e-9 relative difference
    tol = 1e-7 if mode == "seq-mean-token-mean" else 1e-12
    ours = L.aggregate(lm, mask, mode)
    theirs = ca.agg_loss(lm, mask.double(), mode)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=tol, atol=1e-12)
    ours = L.aggregate(lm, mask, mode, Normalisers(91, 11, 40.0))
    theirs = ca.agg_loss(
        lm, mask.double(), mode, batch_num_tokens=91, global_batch_size=11, loss_scale_factor=40.0
    )
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=tol, atol=1e-12)


@pytest.mark.parametrize("clip", [(0.2, 0.2, 3.0), (0.2, 0.28, 10.0)])
def test_vanilla_loss_matches_verl(clip):
    ca = _core_algos()
    low, high, c = clip
    logp, old, adv, mask, _ = make(15, b=8, t=20, dtype=torch.float32, spread=0.6)
    x1 = logp.clone().requires_grad_()
    x2 = logp.clone().requires_grad_()
    ours, _ = policy_loss("grpo", x1, old.float(), adv.float(), mask, eps_low=low, eps_high=high, clip_c=c)
    theirs, _ = ca.compute_policy_loss_vanilla(
        old.float(), x2, adv.float(), mask, "token-mean", config=_VerlCfg(low, high, c)
    )
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-6, atol=1e-8)


def test_clip_cov_matches_verl():
    ca = _core_algos()
    logp, old, adv, mask, _ = make(16, b=8, t=40, dtype=torch.float32, spread=0.05)
    adv = adv.float() * 4
    kw = {"clip_cov_ratio": 0.05, "clip_cov_lb": 0.05, "clip_cov_ub": 5.0}
    x1 = logp.clone().requires_grad_()
    x2 = logp.clone().requires_grad_()
    ours, met = policy_loss(
        "clip_cov", x1, old.float(), adv, mask, generator=torch.Generator().manual_seed(123), **kw
    )
    torch.manual_seed(123)  # verl draws with the global generator; same seed -> same permutation
    theirs, _ = ca.compute_policy_loss_clip_cov(
        old.float(), x2, adv, mask, "token-mean", config=_VerlCfg(1.0, 1.0, **kw)
    )
    assert met["clip_cov/selected_frac"] > 0
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-6, atol=1e-8)


def test_kl_cov_matches_verl():
    ca = _core_algos()
    logp, old, adv, mask, _ = make(17, b=8, t=40, dtype=torch.float32, spread=0.3)
    x1 = logp.clone().requires_grad_()
    x2 = logp.clone().requires_grad_()
    ours, _ = policy_loss("kl_cov", x1, old.float(), adv.float(), mask, kl_cov_ratio=0.02, kl_cov_coef=1.0)
    cfg = _VerlCfg(0.2, 0.2, kl_cov_ratio=0.02, ppo_kl_coef=1.0)
    theirs, _ = ca.compute_policy_loss_kl_cov(old.float(), x2, adv.float(), mask, "token-mean", config=cfg)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("ours", "theirs"), [("k1", "kl"), ("abs", "abs"), ("k2", "mse"), ("k3", "low_var_kl")]
)
def test_kl_penalty_matches_verl(ours, theirs):
    ca = _core_algos()
    g = torch.Generator().manual_seed(18)
    logp = -torch.rand(50, generator=g) * 5
    ref = -torch.rand(50, generator=g) * 5
    torch.testing.assert_close(
        L.kl_penalty(logp, ref, ours), ca.kl_penalty(logp, ref, theirs), rtol=1e-6, atol=1e-7
    )
