"""The method registry: names, configs, errors, end-to-end runs, STEER degenerating to GRPO."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from steer.core import registry as R
from steer.core.types import LossBatch, RolloutBatch

EXPECTED = [
    "grpo",
    "dr_grpo",
    "clip_higher",
    "dual_clip",
    "entropy_bonus",
    "adaptive_entropy",
    "kl_penalty",
    "forking_tokens",
    "psr",
    "nsr",
    "w_reinforce",
    "entropy_adv",
    "clip_cov",
    "kl_cov",
    "gtpo",
    "grpo_s",
    "edge_grpo",
    "unlikeliness",
    "opo",
    "ppl_adv",
    "position_adv",
    "quadrant",
    "steer",
    "steer_reference",
    "steer_linear",
    "steer_binary",
    "steer_directional",
    "steer_causal",
    "entropy_band",
]

REQUIRED = {
    "gtpo": {"alpha1": 0.5, "alpha2": 0.5},
    "grpo_s": {"beta1": 0.5, "beta2": 0.5},
    "ppl_adv": {"alpha": 0.1},
    "position_adv": {"gamma": 0.1, "sigma": "linear"},
    "quadrant": {"target": "II", "action": "upweight"},
}


def rollout(seed: int, b: int = 16, t: int = 12, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    lengths[0] = 0
    lengths[1] = t
    mask = torch.arange(t)[None, :] < lengths[:, None]
    rewards = torch.randint(0, 2, (b,), generator=g).float() * 2 - 1
    rewards[4:8] = 1.0  # one group with equal rewards
    gid = torch.arange(b) // 4
    old_logp = -torch.rand(b, t, generator=g) * 3
    old_ent = torch.rand(b, t, generator=g) * 2
    return RolloutBatch(rewards, gid, mask, old_logp, old_ent), g


def loss_batch(rb: RolloutBatch, adv: torch.Tensor, g, dtype=torch.float32, lr=1e-6):
    b, t = rb.response_mask.shape
    logp = (rb.old_logp + 0.3 * torch.randn(b, t, generator=g)).clamp(max=0).to(dtype).requires_grad_()
    ent = (rb.old_entropy + 0.1 * torch.rand(b, t, generator=g)).requires_grad_()
    p2 = torch.rand(b, t, generator=g) * 0.5
    s2 = -torch.rand(b, t, generator=g) * 0.5
    ref = rb.old_logp + 0.05 * torch.randn(b, t, generator=g)
    # the per-token cause direction (steer_causal, entropy_band); any method reports its prediction
    cause = torch.randn(b, t, generator=g, dtype=torch.float64) * 1e-3
    return LossBatch(
        token_cause=torch.where(rb.response_mask, cause, torch.zeros((), dtype=cause.dtype)),
        cause_offset=0.0,
        logp=logp,
        old_logp=rb.old_logp,
        advantages=adv,
        response_mask=rb.response_mask,
        entropy=ent,
        old_entropy=rb.old_entropy,
        sum_p2=p2,
        sum_p2_logp=s2,
        ref_logp=ref,
        lr=lr,
    )


def test_names():
    assert R.list_methods() == EXPECTED
    for name in EXPECTED:
        cls = R.method_config_class(name)
        assert cls.citation, name
        assert dataclasses.is_dataclass(cls)


STANDARD_KEYS = ["pg_loss", "clipfrac_low", "clipfrac_high", "clipfrac_dual", "ratio_mean", "entropy_mean"]
STANDARD_KEYS += ["weight_mean", "weight_min", "tokens"]
STANDARD_KEYS += [f"quadrant/{q}/{k}" for q in ("I", "II", "III", "IV") for k in ("count", "omega_sum")]


@pytest.mark.parametrize("name", EXPECTED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_method_runs_end_to_end(name, dtype):
    m = R.build_method(name, **REQUIRED.get(name, {}))
    rb, g = rollout(1)
    adv = m.compute_advantages(rb)
    assert adv.shape == rb.response_mask.shape
    assert torch.isfinite(adv).all() and (adv[~rb.response_mask] == 0).all()
    lb = loss_batch(rb, adv, g, dtype=dtype)
    loss, metrics = m.compute_loss(lb)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert lb.logp.grad is not None and torch.isfinite(lb.logp.grad).all()
    for key in STANDARD_KEYS:
        assert key in metrics, (name, key)
        assert math.isfinite(metrics[key]), (name, key)
    out = m.on_step_end(metrics)
    assert isinstance(out, dict)


@pytest.mark.parametrize("estimator", ["paper", "reference", "exact"])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lambda_min_one_is_grpo_bit_for_bit(estimator, mode, dtype):
    rb, g = rollout(2)
    steer = R.build_method("steer", lambda_min=1.0, estimator=estimator, loss_agg_mode=mode)
    base = R.build_method("clip_higher", clip_c=10.0, loss_agg_mode=mode)  # same clip 0.2/0.28, c = 10
    adv = base.compute_advantages(rb)
    assert torch.equal(adv, steer.compute_advantages(rb))
    lb = loss_batch(rb, adv, g, dtype=dtype)
    lb2 = dataclasses.replace(lb, logp=lb.logp.detach().clone().requires_grad_())
    l1, m1 = steer.compute_loss(lb)
    l2, _ = base.compute_loss(lb2)
    l1.backward()
    l2.backward()
    assert torch.equal(l1, l2)
    assert torch.equal(lb.logp.grad, lb2.logp.grad)
    assert m1["weight_min"] == 1.0 and m1["weight_mean"] == 1.0


def ref_steer_paper_loss(lb: LossBatch, lambda_min: float, eps_low=0.2, eps_high=0.28, c=10.0):
    """Loop reference: Eq. 7 Omega with w = I_clip r A, Eq. 10 weights, token-mean of weighted loss.

    I_clip is 1 exactly where the loss passes a gradient: Eq. 6 and, for A < 0, r <= c (dual clip).
    """
    mask = lb.response_mask
    cells = [(i, j) for i in range(mask.shape[0]) for j in range(mask.shape[1]) if mask[i, j]]
    om, loss = {}, {}
    for cell in cells:
        lp, olp = float(lb.logp.detach()[cell]), float(lb.old_logp[cell])
        a, h = float(lb.advantages[cell]), float(lb.entropy.detach()[cell])
        r = math.exp(lp - olp)
        clipped = (a > 0 and r > 1 + eps_high) or (a < 0 and r < 1 - eps_low)
        dual_clipped = c is not None and a < 0 and r > c  # the dual clip passes no gradient either
        w = 0.0 if (clipped or dual_clipped) else r * a
        p = math.exp(lp)
        om[cell] = -lb.lr * w * (1 - p) ** 2 * (lp + h)
        l1, l2 = -a * r, -a * min(max(r, 1 - eps_low), 1 + eps_high)
        v = max(l1, l2)
        if a < 0:
            v = min(v, -a * c)
        loss[cell] = v
    mx = max(abs(v) for v in om.values())
    k = -math.log(lambda_min) / mx
    weights = {cell: max(math.exp(-k * abs(om[cell])), lambda_min) for cell in cells}
    return sum(loss[cell] * weights[cell] for cell in cells) / len(cells), min(weights.values())


def test_steer_paper_matches_loop_reference():
    rb, g = rollout(3)
    m = R.build_method("steer")
    assert m.config.lambda_min == 0.7 and m.config.eps_high == 0.28 and m.config.clip_c == 10.0
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    loss, metrics = m.compute_loss(lb)
    ref, wmin = ref_steer_paper_loss(lb, 0.7)
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)
    assert metrics["weight_min"] == pytest.approx(0.7, rel=1e-6)
    assert 0.7 - 1e-6 <= metrics["weight_mean"] <= 1.0


def _dual_clip_batch(seed: int):
    """A loss batch in which some A < 0 tokens have ratio r > c = 10 (dual-clipped: no gradient)."""
    rb, g = rollout(seed)
    m = R.build_method("steer")
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    logp = lb.logp.detach().clone()
    neg = (lb.advantages < 0) & lb.response_mask
    cells = neg.nonzero()[:3]
    assert len(cells) == 3
    for i, j in cells.tolist():
        logp[i, j] = lb.old_logp[i, j] + 3.0  # r = e^3 ~ 20 > c = 10
    return m, dataclasses.replace(lb, logp=logp.requires_grad_()), cells


def test_steer_dual_clipped_tokens_get_zero_w():
    """A dual-clipped token passes no gradient, so its w (and Omega) is 0 and it cannot set max|Omega|."""
    m, lb, cells = _dual_clip_batch(11)
    omega = m.compute_omega(lb)
    for i, j in cells.tolist():
        assert omega[i, j] == 0
    loss, metrics = m.compute_loss(lb)
    assert metrics["clipfrac_dual"] > 0
    ref, wmin = ref_steer_paper_loss(lb, 0.7)
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)
    assert metrics["weight_min"] == pytest.approx(wmin, rel=1e-6)
    loss.backward()
    for i, j in cells.tolist():
        assert lb.logp.grad[i, j] == 0
    # the max used by the weights is compute_omega's max, set by a token that passes a gradient
    assert float(omega.abs().max()) == pytest.approx(metrics["steer/omega_max"], rel=1e-6)


def test_unlikeliness_method_pm1_and_01_rewards_agree():
    rb, _ = rollout(12)
    m = R.build_method("unlikeliness")
    assert m.config.success_threshold == 0.0
    a_pm = m.compute_advantages(rb)
    a_01 = m.compute_advantages(dataclasses.replace(rb, rewards=(rb.rewards > 0).float()))
    assert torch.equal(a_pm, a_01)
    assert a_pm.abs().sum() > 0


def test_steer_reference_preset():
    m = R.build_method("steer_reference")
    c = m.config
    assert (c.estimator, c.lambda_min, c.max_floor, c.scope, c.omega_lr) == (
        "reference",
        0.8,
        0.02,
        "microbatch",
        1.0,
    )
    assert m.needs_old_entropy and not m.needs_sums
    rb, g = rollout(4)
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    loss, metrics = m.compute_loss(lb)
    # loop reference of the released code's metric and weights
    mask = lb.response_mask
    cells = [(i, j) for i in range(mask.shape[0]) for j in range(mask.shape[1]) if mask[i, j]]
    om = {}
    for cell in cells:
        p = min(max(math.exp(float(lb.logp.detach()[cell])), 1e-8), 1 - 1e-8)
        po = min(max(math.exp(float(lb.old_logp[cell])), 1e-8), 1.0)
        a = float(lb.advantages[cell])
        om[cell] = abs((a / po) * p * (1 - p) * (math.log(p) + float(lb.old_entropy[cell])))
    mx = max(max(om.values()), 0.02)
    k = -math.log(0.8) / mx
    wmin = min(max(math.exp(-k * v), 0.8) for v in om.values())
    assert metrics["weight_min"] == pytest.approx(wmin, rel=1e-5)
    assert metrics["steer/omega_max"] == pytest.approx(mx, rel=1e-5)


def test_omega_max_override_and_compute_omega():
    rb, g = rollout(5)
    m = R.build_method("steer", scope="minibatch")
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    omega = m.compute_omega(lb)
    local_max = float(omega.abs().max())
    assert local_max > 0
    _, met_local = m.compute_loss(lb)
    lb_wide = dataclasses.replace(lb, scope_stats={"omega_max": torch.tensor(local_max * 100)})
    _, met_wide = m.compute_loss(lb_wide)
    assert met_local["weight_min"] == pytest.approx(0.7, rel=1e-6)
    assert met_wide["weight_min"] > 0.99  # a wider-scope max softens every weight
    with pytest.raises(ValueError, match="steer"):
        R.build_method("grpo").compute_omega(lb)


def test_build_errors_list_valid_options():
    with pytest.raises(ValueError, match="valid: .*'steer'"):
        R.build_method("stear")
    with pytest.raises(ValueError, match="valid: .*lambda_min"):
        R.build_method("steer", lambda_mn=0.5)
    with pytest.raises(ValueError, match=r"needs parameter\(s\) \['alpha1', 'alpha2'\]"):
        R.build_method("gtpo")
    with pytest.raises(ValueError, match="lambda_min"):
        R.build_method("steer", lambda_min=0.0)
    with pytest.raises(ValueError, match="lambda_min"):
        R.build_method("steer", lambda_min=1.5)
    with pytest.raises(ValueError, match="eps_low"):
        R.build_method("grpo", eps_low=-0.1)
    with pytest.raises(ValueError, match="estimator"):
        R.build_method("steer", estimator="magic")
    with pytest.raises(ValueError, match="loss_agg_mode"):
        R.build_method("grpo", loss_agg_mode="mean")
    with pytest.raises(ValueError, match="type float"):
        R.build_method("grpo", eps_high="0.28")
    with pytest.raises(ValueError, match="scope"):
        R.build_method("steer", scope="rank")
    with pytest.raises(ValueError, match="target"):
        R.build_method("quadrant", target="V")
    with pytest.raises(ValueError, match="valid"):
        R.method_config_class("nope")


def test_bad_loss_inputs():
    m = R.build_method("steer")
    rb, g = rollout(6)
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    mask = lb.response_mask
    # NaN log-prob on a valid token -> ValueError
    bad = lb.logp.detach().clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="logp"):
        m.compute_loss(dataclasses.replace(lb, logp=bad.requires_grad_()))
    # NaN on padding -> finite loss and gradient
    pad = lb.logp.detach().clone()
    pad[~mask] = float("nan")
    x = pad.requires_grad_()
    loss, _ = m.compute_loss(dataclasses.replace(lb, logp=x))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # all-masked batch -> 0 loss and zero gradient
    x = lb.logp.detach().clone().requires_grad_()
    empty = dataclasses.replace(lb, logp=x, response_mask=torch.zeros_like(mask))
    for name in EXPECTED:
        meth = R.build_method(name, **REQUIRED.get(name, {}))
        x.grad = None
        loss, met = meth.compute_loss(empty)
        loss.backward()
        assert float(loss.detach()) == 0.0, name
        assert (x.grad == 0).all(), name
        assert met["tokens"] == 0
    # mismatched shapes and missing statistics
    with pytest.raises(ValueError, match="mismatched"):
        m.compute_loss(dataclasses.replace(lb, old_logp=lb.old_logp[:, :-1]))
    with pytest.raises(ValueError, match="entropy"):
        m.compute_loss(dataclasses.replace(lb, entropy=None))
    with pytest.raises(ValueError, match="ref_logp"):
        R.build_method("kl_penalty").compute_loss(dataclasses.replace(lb, ref_logp=None))
    with pytest.raises(ValueError, match="old_entropy"):
        R.build_method("entropy_adv").compute_advantages(dataclasses.replace(rb, old_entropy=None))


def test_requirements_flags():
    assert R.build_method("steer").needs_entropy
    assert R.build_method("steer", estimator="exact").needs_sums
    assert not R.build_method("grpo").needs_entropy
    assert R.build_method("kl_penalty").needs_ref
    assert R.build_method("edge_grpo").needs_old_entropy
    assert R.build_method("unlikeliness").needs_old_logp
    assert R.build_method("grpo", entropy_coef=0.001).needs_entropy  # composition with a regulariser


def test_adaptive_entropy_and_state_dict():
    m = R.build_method("adaptive_entropy", entropy_coef_max=2e-4)
    rb, g = rollout(7)
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    _, met = m.compute_loss(lb)
    assert met["entropy_coef"] == 0.0
    out = m.on_step_end({"old_nll_mean": 0.1})
    assert out["entropy_coef"] == pytest.approx(1e-4)
    m.on_step_end({"old_nll_mean": 0.1})
    m.on_step_end({"old_nll_mean": 0.1})
    assert m.controller.coef == pytest.approx(2e-4)  # clipped at coef_max
    _, met = m.compute_loss(lb)
    assert met["entropy_coef"] == pytest.approx(2e-4)
    assert m.on_step_end({"old_nll_mean": 0.5})["entropy_coef"] == 0.0  # gated off above target
    state = m.state_dict()
    m2 = R.build_method("adaptive_entropy", entropy_coef_max=2e-4)
    m2.load_state_dict(state)
    assert m2.controller.coef == m.controller.coef and m2.controller.gate == m.controller.gate
    with pytest.raises(ValueError, match="old_nll_mean"):
        m.on_step_end({})


def test_random_selection_reproducible_via_state_dict():
    m = R.build_method("quadrant", target="I", action="mask", fraction=0.5, by="delta")
    rb, g = rollout(8)
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    state = m.state_dict()
    l1, _ = m.compute_loss(lb)
    m.load_state_dict(state)
    l2, _ = m.compute_loss(lb)
    assert torch.equal(l1, l2)
    m3 = R.build_method("quadrant", target="I", action="mask", fraction=0.5, by="delta")
    l3, _ = m3.compute_loss(lb)
    assert torch.equal(l1, l3)  # same seed -> same selection


def test_clip_cov_defaults_and_kl_cov_no_clip():
    c = R.build_method("clip_cov").config
    assert (c.clip_cov_ratio, c.clip_cov_lb, c.clip_cov_ub, c.eps_low, c.eps_high) == (
        2e-4,
        1.0,
        5.0,
        1.0,
        1.0,
    )
    k = R.build_method("kl_cov").config
    assert (k.kl_cov_ratio, k.kl_cov_coef) == (2e-3, 1.0)
    assert R.build_method("dr_grpo").config.loss_agg_mode == "seq-mean-token-sum-norm"
    assert R.build_method("w_reinforce").config.positive_weight == 0.1
    assert R.build_method("unlikeliness").config.beta_rank == 0.25
    e = R.build_method("entropy_adv").config
    assert (e.alpha, e.kappa) == (0.4, 2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compute_omega_matches_the_loss_scope(dtype):
    """compute_omega gives the Omega that compute_loss uses: passing its max as omega_max changes nothing."""
    rb, g = rollout(9)
    m = R.build_method("steer", estimator="exact")
    lb = loss_batch(rb, m.compute_advantages(rb), g)
    lb = dataclasses.replace(lb, logp=lb.logp.detach().to(dtype).requires_grad_())
    omega = m.compute_omega(lb)
    assert (omega[~lb.response_mask] == 0).all()
    l1, _ = m.compute_loss(lb)
    l2, _ = m.compute_loss(dataclasses.replace(lb, scope_stats={"omega_max": omega.abs().max()}))
    assert torch.equal(l1, l2)


def test_quadrant_metrics_use_sign_of_delta():
    from steer.core.losses import assign_quadrants

    rb, g = rollout(10)
    for name, kw in [("grpo", {}), ("steer", {}), ("quadrant", {"target": "IV", "by": "prob"})]:
        m = R.build_method(name, **kw)
        lb = loss_batch(rb, m.compute_advantages(rb), g)
        _, met = m.compute_loss(lb)
        q = assign_quadrants(lb.advantages, lb.response_mask, logp=lb.logp, entropy=lb.entropy, by="delta")
        for k, qn in enumerate(("I", "II", "III", "IV"), start=1):
            assert met[f"quadrant/{qn}/count"] == float((q == k).sum()), (name, qn)
        if name == "quadrant":
            qp = assign_quadrants(lb.advantages, lb.response_mask, logp=lb.logp, by="prob")
            assert met["intervention/IV/count"] == float((qp == 4).sum())
            assert met["quadrant/selected"] == float(int(0.1 * int((qp == 4).sum())))
