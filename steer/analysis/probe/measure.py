"""One optimiser setting of the probe: the step, the measured change and every estimate of it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from steer.analysis.correlation import spearman
from steer.analysis.jvp import linearised_entropy_change, per_token_cause
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
from steer.core.weights import steer_weights


def _probe_setting(
    setting: OptimSetting,
    *,
    model,
    method,
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
    max_len: int | None = None,
    adam_state: dict | None = None,
) -> tuple[dict, dict[str, Tensor], dict[str, Tensor]]:
    t0 = time.perf_counter()
    log(f"  {setting.tag}: loss, backward and one {setting.name} step")
    _restore(params, theta0)
    mask = batch.response_mask
    grads, u, v, loss_metrics = _loss_step(
        model, method, batch, base, advantages, setting.lr, temperature, mb, params, max_len
    )
    gnorm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())))
    clip_coef = 1.0
    if grad_clip is not None and gnorm > grad_clip:
        clip_coef = grad_clip / (gnorm + 1e-6)  # torch.nn.utils.clip_grad_norm_'s factor
    opt = _make_optimizer(setting, list(params.values()), optim_cfg, adam_state)
    for k, p in params.items():
        p.grad = grads[k] * clip_coef
    opt.step()
    for p in params.values():
        p.grad = None
    update = {k: (params[k].detach() - theta0[k]) for k in params}
    upd_norm = float(torch.sqrt(sum((d.double() ** 2).sum() for d in update.values())))
    if not math.isfinite(upd_norm):
        raise ValueError(f"{setting.tag}: the update is not finite")
    P = _preconditioner(setting, opt, params, clip_coef)
    # how much of the real update is P * (-grad L) (0 for SGD; momentum / weight decay otherwise)
    res_sq = 0.0
    for k in params:
        pk = P if isinstance(P, float) else P[k]
        res_sq += float(((update[k] + pk * grads[k]).double() ** 2).sum())
    update_residual = math.sqrt(res_sq) / upd_norm if upd_norm > 0 else float("nan")
    del opt
    t_step = time.perf_counter() - t0

    # measured change at exactly the same states
    after = _entropies(model, batch, temperature, mb)
    measured = (after["entropy"].double() - base["entropy"].double()).masked_fill(~mask, 0.0)
    _restore(params, theta0)
    log(f"  {setting.tag}: forward-mode JVPs (linearised change and c_t)")
    t1 = time.perf_counter()
    lin = (
        linearised_entropy_change(
            model, batch, update, params=theta0, temperature=temperature, micro_batch_size=mb
        )
        .double()
        .cpu()
    )
    cause = (
        per_token_cause(
            model,
            batch,
            u,
            v if bool((v != 0).any()) else None,
            preconditioner=P,
            params=theta0,
            grad_entropy=grad_h,
            temperature=temperature,
            micro_batch_size=mb,
        )
        .double()
        .cpu()
    )
    t_jvp = time.perf_counter() - t1

    # core estimators, fed with the loss's own per-token coefficient u (= I_clip r A lambda / N on-policy)
    lp = base["logp"].double()
    h = base["entropy"].double()
    est = {
        "paper": omega_paper(u, lp, h, setting.lr),
        "reference": omega_reference(u, lp, lp, h, lr=setting.lr),
        "exact": omega_exact(u, lp, h, base["sum_p2"].double(), base["sum_p2_logp"].double(), setting.lr),
        "cov": omega_cov(lp, u, mask, lr=setting.lr),
        "jvp": lin,
        "cause": cause,
    }
    # STEER weights (Fig. 15): the method's own when it is a STEER method, else Eq. 10 with lambda_min 0.7
    cfg = method.config
    ratio = torch.ones_like(lp)
    w_theorem = token_weight_w(ratio, advantages.double(), cfg.eps_low, cfg.eps_high)
    if getattr(cfg, "weighting", None) == "steer":
        lam = steer_weights(
            _steer_omega(method, base, advantages, mask, setting.lr),
            mask,
            lambda_min=cfg.lambda_min,
            mapping=cfg.mapping,
            lambda_max=cfg.lambda_max,
            quantile=cfg.quantile,
            max_floor=cfg.max_floor,
        )
        lam_src = f"{method.name} (its own Omega and mapping)"
    else:
        lam = steer_weights(omega_paper(w_theorem, lp, h, setting.lr), mask, lambda_min=0.7)
        lam_src = "Eq. 10 with the paper's Omega, lambda_min 0.7 (what STEER would weight)"

    meas_v = _flat_valid(measured, mask)
    flat = {k: _flat_valid(e, mask) for k, e in est.items()}
    p_v = _flat_valid(lp.exp(), mask)
    h_v = _flat_valid(h, mask)
    lam_v = _flat_valid(lam, mask)
    ag = {k: _agreement(flat[k], meas_v) for k in ESTIMATOR_NAMES}
    nz = _flat_valid(advantages, mask) != 0  # tokens whose own gradient is in the update
    ag_nz = {k: _agreement(flat[k][nz], meas_v[nz]) for k in ESTIMATOR_NAMES}
    per_bucket = {}
    for name, sel in _buckets(p_v):
        per_bucket[name] = {k: _agreement(flat[k][sel], meas_v[sel]) for k in ESTIMATOR_NAMES}
        per_bucket[name]["measured_abs_mean"] = (
            float(meas_v[sel].abs().mean()) if bool(sel.any()) else float("nan")
        )
    std_m = float(meas_v.std()) if meas_v.numel() > 1 else float("nan")

    def _scaled(x: Tensor) -> Tensor:
        s = float(x.std()) if x.numel() > 1 else 0.0
        return x * (std_m / s) if s > 0 and math.isfinite(std_m) else x * 0.0

    absm = meas_v.abs()
    res = {
        "setting": {"optimizer": setting.name, "lr": setting.lr, "tag": setting.tag},
        "agreement": ag,
        "agreement_nonzero_advantage": ag_nz,
        "per_prob_bucket": per_bucket,
        "cause_vs_jvp": _agreement(flat["cause"], flat["jvp"]),
        "totals": {
            "measured": float(meas_v.sum()),
            **{k: float(flat[k].sum()) for k in ESTIMATOR_NAMES},
            "jvp_total_along_update": float(
                sum((grad_h[k].double() * update[k].double()).sum() for k in params)
            ),
        },
        "measured": {
            "abs_mean": float(absm.mean()) if absm.numel() else float("nan"),
            "std": std_m,
            "mean": float(meas_v.mean()) if meas_v.numel() else float("nan"),
            "positive_fraction": float((meas_v > 0).double().mean()) if meas_v.numel() else float("nan"),
        },
        "update": {
            "grad_norm": gnorm,
            "clip_coef": clip_coef,
            "update_norm": upd_norm,
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
            "optimizer_state": "checkpoint"
            if (adam_state is not None and setting.name == "adamw")
            else "fresh",
            "residual_vs_preconditioned_gradient": update_residual,
        },
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
        },
        "loss_metrics": {k: float(x) for k, x in loss_metrics.items() if isinstance(x, (int, float))},
        "time_s": {"step_and_measure": t_step, "jvp": t_jvp, "total": time.perf_counter() - t0},
    }
    tm = res["totals"]["measured"]
    res["totals"]["sum_cause_rel_error"] = (
        abs(res["totals"]["cause"] - tm) / abs(tm) if tm != 0 else float("nan")
    )
    res["verdict"] = _verdict(res)
    tokens = {
        "measured": meas_v,
        **{f"est_{k}": flat[k] for k in ESTIMATOR_NAMES},
        "prob": p_v,
        "entropy": h_v,
        "steer_weight": lam_v,
        "coef_u": _flat_valid(u, mask),
        "w_theorem1": _flat_valid(w_theorem, mask),
        "clip_indicator": _flat_valid(
            clip_indicator(ratio, advantages.double(), cfg.eps_low, cfg.eps_high), mask
        ),
        "coef_v": _flat_valid(v, mask),
        "advantage": _flat_valid(advantages, mask),
    }
    log(
        f"  {setting.tag}: |dH| mean {res['measured']['abs_mean']:.3g}; Spearman vs measured: "
        + ", ".join(f"{k} {ag[k]['spearman']:.3f}" for k in ESTIMATOR_NAMES)
        + f" ({res['time_s']['total']:.1f} s)"
    )
    return res, tokens, update
