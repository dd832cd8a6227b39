"""One optimiser setting of the probe: the step, the measured change and every estimate of it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from steer.analysis.correlation import spearman
from steer.analysis.probe.compare import _agreement, _binned, _buckets, _flat_valid, _verdict
from steer.analysis.probe.settings import ESTIMATOR_NAMES, OptimSetting
from steer.analysis.probe.step import (
    _Batch,
    _entropies,
    _loss_step,
    _make_optimizer,
    _preconditioner,
    _restore,
    _steer_omega,
)
from steer.core.estimators import (
    clip_indicator,
    omega_cov,
    omega_exact,
    omega_paper,
    omega_reference,
    token_weight_w,
)
from steer.core.steer import mapped_weights
from steer.core.weights import steer_weights
from steer.train.jvp import linearised_entropy_change, per_token_cause


def _take_step(
    setting: OptimSetting, grads: dict[str, Tensor], params, theta0, optim_cfg, grad_clip, adam_state
) -> dict:
    """One real optimiser step from theta_0 along the loss gradient ``grads`` (the parameters stay
    at theta_1): the clipping, the update, the preconditioner P and how much of the update
    P * (-grad L) explains."""
    gnorm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())))
    clip_coef = 1.0
    if grad_clip is not None and gnorm > grad_clip:
        clip_coef = grad_clip / (gnorm + 1e-6)  # torch.nn.utils.clip_grad_norm_'s factor
    opt = _make_optimizer(setting, list(params.values()), optim_cfg, adam_state)
    P = _preconditioner(setting, opt, params, grads, clip_coef)
    for k, p in params.items():
        p.grad = grads[k] * clip_coef
    opt.step()
    for p in params.values():
        p.grad = None
    update = {k: (params[k].detach() - theta0[k]) for k in params}
    upd_norm = float(torch.sqrt(sum((d.double() ** 2).sum() for d in update.values())))
    if not math.isfinite(upd_norm):
        raise ValueError(f"{setting.tag}: the update is not finite")
    # how much of the real update is P * (-grad L) (0 for SGD; momentum / weight decay otherwise)
    res_sq = 0.0
    for k in params:
        pk = P if isinstance(P, float) else P[k]
        res_sq += float(((update[k] + pk * grads[k]).double() ** 2).sum())
    update_residual = math.sqrt(res_sq) / upd_norm if upd_norm > 0 else float("nan")
    del opt
    return {
        "gnorm": gnorm,
        "clip_coef": clip_coef,
        "update": update,
        "upd_norm": upd_norm,
        "P": P,
        "update_residual": update_residual,
    }


def _measure(
    setting: OptimSetting,
    step: dict,
    model,
    batch: _Batch,
    base,
    params,
    theta0,
    grad_h,
    temperature,
    mb,
    log,
) -> tuple[Tensor, Tensor, Tensor, float]:
    """With the parameters at theta_1: the measured per-token entropy change at exactly the same
    states; then back at theta_0: the JVP-linearised change of each state's entropy along the
    update and each token's own-gradient cause c_t. Returns (measured, lin, cause, JVP seconds)."""
    mask = batch.response_mask
    after = _entropies(model, batch, temperature, mb)
    measured = (after["entropy"].double() - base["entropy"].double()).masked_fill(~mask, 0.0)
    _restore(params, theta0)
    log(f"  {setting.tag}: forward-mode JVPs (linearised change and c_t)")
    t1 = time.perf_counter()
    v = step["v"]
    lin = (
        linearised_entropy_change(
            model, batch, step["update"], params=theta0, temperature=temperature, micro_batch_size=mb
        )
        .double()
        .cpu()
    )
    cause = (
        per_token_cause(
            model,
            batch,
            step["u"],
            v if bool((v != 0).any()) else None,
            preconditioner=step["P"],
            params=theta0,
            grad_entropy=grad_h,
            temperature=temperature,
            micro_batch_size=mb,
        )
        .double()
        .cpu()
    )
    return measured, lin, cause, time.perf_counter() - t1


def _estimates(setting: OptimSetting, u: Tensor, base, mask: Tensor, lin: Tensor, cause: Tensor) -> dict:
    """Every estimate of the per-token change: the core estimators, fed with the loss's own
    per-token coefficient u (= I_clip r A lambda / N on-policy), the JVP and c_t."""
    lp = base["logp"].double()
    h = base["entropy"].double()
    return {
        "paper": omega_paper(u, lp, h, setting.lr),
        "reference": omega_reference(u, lp, lp, h, lr=setting.lr),
        "exact": omega_exact(u, lp, h, base["sum_p2"].double(), base["sum_p2_logp"].double(), setting.lr),
        "cov": omega_cov(lp, u, mask, lr=setting.lr),
        "jvp": lin,
        "cause": cause,
    }


def _totals(meas_v: Tensor, flat: dict[str, Tensor], grad_h, update, params) -> dict:
    """The batch's total change: measured, every estimate's sum, the JVP along the update and how
    far the sum of c_t is from the measured total."""
    out = {
        "measured": float(meas_v.sum()),
        **{k: float(flat[k].sum()) for k in ESTIMATOR_NAMES},
        "jvp_total_along_update": float(sum((grad_h[k].double() * update[k].double()).sum() for k in params)),
    }
    tm = out["measured"]
    out["sum_cause_rel_error"] = abs(out["cause"] - tm) / abs(tm) if tm != 0 else float("nan")
    return out


def _weights(method, setting: OptimSetting, base, advantages: Tensor, mask: Tensor):
    """STEER weights (Fig. 15): the method's own when it is a STEER method, else Eq. 10 with
    lambda_min 0.7. Returns the weights, where they come from, Theorem 1's w and the clip
    indicator (on-policy: ratio 1)."""
    cfg = method.config
    lp = base["logp"].double()
    h = base["entropy"].double()
    ratio = torch.ones_like(lp)
    w_theorem = token_weight_w(ratio, advantages.double(), cfg.eps_low, cfg.eps_high)
    if getattr(cfg, "weighting", None) == "steer":
        lam = mapped_weights(cfg, _steer_omega(method, base, advantages, mask, setting.lr), mask)
        lam_src = f"{method.name} (its own Omega and mapping)"
    else:
        lam = steer_weights(omega_paper(w_theorem, lp, h, setting.lr), mask, lambda_min=0.7)
        lam_src = "Eq. 10 with the paper's Omega, lambda_min 0.7 (what STEER would weight)"
    return lam, lam_src, w_theorem, clip_indicator(ratio, advantages.double(), cfg.eps_low, cfg.eps_high)


def _agreements(meas_v: Tensor, flat: dict[str, Tensor], p_v: Tensor, adv_v: Tensor) -> dict:
    """Every estimator against the measured change: over all tokens, over the tokens with a
    non-zero advantage and per probability bucket."""
    ag = {k: _agreement(flat[k], meas_v) for k in ESTIMATOR_NAMES}
    nz = adv_v != 0  # tokens whose own gradient is in the update
    ag_nz = {k: _agreement(flat[k][nz], meas_v[nz]) for k in ESTIMATOR_NAMES}
    per_bucket = {}
    for name, sel in _buckets(p_v):
        per_bucket[name] = {k: _agreement(flat[k][sel], meas_v[sel]) for k in ESTIMATOR_NAMES}
        per_bucket[name]["measured_abs_mean"] = (
            float(meas_v[sel].abs().mean()) if bool(sel.any()) else float("nan")
        )
    return {"agreement": ag, "agreement_nonzero_advantage": ag_nz, "per_prob_bucket": per_bucket}


def _update_info(setting: OptimSetting, step: dict, adam_state: dict | None) -> dict:
    """The update's norms, clipping, preconditioner (in words) and residual."""
    return {
        "grad_norm": step["gnorm"],
        "clip_coef": step["clip_coef"],
        "update_norm": step["upd_norm"],
        "preconditioner": "lr * identity (exact)"
        if setting.name == "sgd"
        else (
            "AdamW diagonal lr (1-b1)/(1-b1^t) / (sqrt(v_hat)+eps) from its state after the step "
            + (
                "(the checkpoint's state: an approximation, the update also holds the momentum of "
                "earlier steps and any weight decay)"
                if adam_state is not None
                else "(fresh state: exact for the first step without weight decay; an approximation otherwise)"
            )
        ),
        "optimizer_state": "checkpoint" if (adam_state is not None and setting.name == "adamw") else "fresh",
        "residual_vs_preconditioned_gradient": step["update_residual"],
    }


def _figures(meas_v, flat, h_v, lam_v, lam_src: str, bins: int) -> dict:
    """The binned curves of Fig. 1 (every estimator, scaled to the measured change's spread),
    Fig. 10 (entropy vs |change|) and Fig. 15 (STEER weight vs |change|)."""
    std_m = float(meas_v.std()) if meas_v.numel() > 1 else float("nan")

    def _scaled(x: Tensor) -> Tensor:
        s = float(x.std()) if x.numel() > 1 else 0.0
        return x * (std_m / s) if s > 0 and math.isfinite(std_m) else x * 0.0

    absm = meas_v.abs()
    return {
        "fig1_binned": _binned(meas_v, {k: _scaled(flat[k]) for k in ESTIMATOR_NAMES}, bins),
        "fig10_entropy_vs_abs_change": {
            **_binned(h_v, {"abs_measured": absm}, bins, 0.0, 1.0),
            "spearman": spearman(h_v, absm) if h_v.numel() > 1 else float("nan"),
        },
        "fig15_weight_vs_abs_change": {
            **_binned(absm, {"steer_weight": lam_v}, bins, 0.0, 0.99),
            "spearman": spearman(lam_v, absm) if absm.numel() > 1 else float("nan"),
            "weights_from": lam_src,
            "weight_mean": float(lam_v.mean()) if lam_v.numel() else float("nan"),
            "weight_min": float(lam_v.min()) if lam_v.numel() else float("nan"),
            "weight_share_below_0_9": float((lam_v < 0.9).double().mean()) if lam_v.numel() else float("nan"),
        },
    }


def _measured_summary(meas_v: Tensor) -> dict:
    absm = meas_v.abs()
    return {
        "abs_mean": float(absm.mean()) if absm.numel() else float("nan"),
        "std": float(meas_v.std()) if meas_v.numel() > 1 else float("nan"),
        "mean": float(meas_v.mean()) if meas_v.numel() else float("nan"),
        "positive_fraction": float((meas_v > 0).double().mean()) if meas_v.numel() else float("nan"),
    }


def _setting_result(
    setting: OptimSetting, step: dict, tokens: dict[str, Tensor], *, grad_h, params, adam_state, lam_src, bins
) -> dict:
    """One setting's numbers from its per-token arrays (valid tokens only): agreement, totals,
    the measured change, the update and the figures' binned curves."""
    meas_v = tokens["measured"]
    flat = {k: tokens[f"est_{k}"] for k in ESTIMATOR_NAMES}
    return {
        "setting": {"optimizer": setting.name, "lr": setting.lr, "tag": setting.tag},
        **_agreements(meas_v, flat, tokens["prob"], tokens["advantage"]),
        "cause_vs_jvp": _agreement(flat["cause"], flat["jvp"]),
        "totals": _totals(meas_v, flat, grad_h, step["update"], params),
        "measured": _measured_summary(meas_v),
        "update": _update_info(setting, step, adam_state),
        **_figures(meas_v, flat, tokens["entropy"], tokens["steer_weight"], lam_src, bins),
        "loss_metrics": {k: float(x) for k, x in step["loss_metrics"].items() if isinstance(x, (int, float))},
    }


def _probe_setting(
    setting: OptimSetting,
    *,
    model,
    method,
    trainer,
    step_data,
    batch: _Batch,
    base: dict[str, Tensor],
    advantages: Tensor,
    params: dict[str, Tensor],
    theta0: dict[str, Tensor],
    grad_h: dict[str, Tensor],
    optim_cfg,
    grad_clip: float | None,
    temperature: float,
    mb: int,
    bins: int,
    log: Callable[[str], None],
    adam_state: dict | None = None,
) -> tuple[dict, dict[str, Tensor], dict[str, Tensor]]:
    """One optimiser setting: one real step from theta_0, the measured per-token change and every
    estimate of it. Returns (the setting's numbers, its per-token arrays, its parameter update)."""
    t0 = time.perf_counter()
    log(f"  {setting.tag}: loss, backward and one {setting.name} step")
    mask = batch.response_mask
    _restore(params, theta0)
    grads, u, v, loss_metrics = _loss_step(trainer, step_data, setting.lr, params)
    step = _take_step(setting, grads, params, theta0, optim_cfg, grad_clip, adam_state)
    step.update(u=u, v=v, loss_metrics=loss_metrics)
    update = step["update"]
    t_step = time.perf_counter() - t0

    measured, lin, cause, t_jvp = _measure(
        setting, step, model, batch, base, params, theta0, grad_h, temperature, mb, log
    )
    est = _estimates(setting, u, base, mask, lin, cause)
    lam, lam_src, w_theorem, clip = _weights(method, setting, base, advantages, mask)
    per_token = {
        "measured": measured,
        **{f"est_{k}": est[k] for k in ESTIMATOR_NAMES},
        "prob": base["logp"].double().exp(),
        "entropy": base["entropy"].double(),
        "steer_weight": lam,
        "coef_u": u,
        "w_theorem1": w_theorem,
        "clip_indicator": clip,
        "coef_v": v,
        "advantage": advantages,
    }
    tokens = {k: _flat_valid(x, mask) for k, x in per_token.items()}
    res = _setting_result(
        setting, step, tokens, grad_h=grad_h, params=params, adam_state=adam_state, lam_src=lam_src, bins=bins
    )
    res["time_s"] = {"step_and_measure": t_step, "jvp": t_jvp, "total": time.perf_counter() - t0}
    res["verdict"] = _verdict(res)
    ag = res["agreement"]
    spearmans = ", ".join(f"{k} {ag[k]['spearman']:.3f}" for k in ESTIMATOR_NAMES)
    log(
        f"  {setting.tag}: |dH| mean {res['measured']['abs_mean']:.3g}; Spearman vs measured: "
        f"{spearmans} ({res['time_s']['total']:.1f} s)"
    )
    return res, tokens, update
