"""``steer probe``: which estimator predicts the entropy change of a real optimiser step?

One probe (paper section 3.1, Fig. 1-2, 10, 15; docs/probe.md):

1. sample rollouts from the policy on a task's prompts (the trainer's ``generate_rollouts``), score
   them (the task's verifier or a ``steer.rewards`` scorer), compute the configured method's
   advantages (``Method.compute_advantages``);
2. at the rollout parameters theta_0 compute the token statistics (``token_stats_from_logits``) and
   the gradient of the batch's total entropy ``grad H_batch`` (one backward);
3. for every optimiser setting (SGD or AdamW at a learning rate): from theta_0, one forward of the
   configured loss (``Method.compute_loss``, on-policy, normalised over the batch's valid tokens as
   the trainer does), one backward, one real ``optimizer.step()`` from a fresh optimiser state, then
   the entropies at exactly the same states (same prompt and response tokens) at theta_1;
4. compare the measured per-token change ``H_t(theta_1) - H_t(theta_0)`` with every core estimator
   (``paper``, ``reference``, ``exact``, ``cov``), the JVP-linearised change of each state's entropy
   along the actual update (:func:`steer.analysis.jvp.linearised_entropy_change`) and the
   contribution of each token's own gradient (:func:`steer.analysis.jvp.per_token_cause`).

Entry point: :func:`run_probe` (a dict of every number; also written to ``out_dir``) and
:func:`run_sweep` (``steer probe --sweep``: the probe over testbed models of several widths, depths
and vocabulary sizes).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from steer.analysis.correlation import agreement, spearman
from steer.analysis.jvp import (
    entropy_gradient,
    linearised_entropy_change,
    per_token_cause,
    require_eager_attention,
    trainable_parameters,
)
from steer.core.estimators import (
    clip_indicator,
    omega_cov,
    omega_exact,
    omega_paper,
    omega_reference,
    token_weight_w,
)
from steer.core.types import LossBatch, RolloutBatch
from steer.core.weights import steer_weights

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "ESTIMATOR_NAMES",
    "PROB_BUCKETS",
    "OptimSetting",
    "markdown_report",
    "parse_optimizers",
    "run_probe",
    "write_outputs",
]

#: What every probe compares with the measured change: the four core estimators, the JVP
#: linearisation of each state's entropy along the update, and each token's own-gradient cause c_t.
ESTIMATOR_NAMES = ("paper", "reference", "exact", "cov", "jvp", "cause")
#: The per-token estimators of the core (Assumption 1 or batch-centred): what a reweighting uses today.
PER_TOKEN_ESTIMATORS = ("paper", "reference", "exact", "cov")
#: Edges of the probability buckets (probability of the sampled token under theta_0).
PROB_BUCKETS = (0.0, 0.5, 0.9, 0.99, 1.0)
#: SGD at two learning rates and AdamW at two (fresh state: the first AdamW step); on the testbed
#: policy the larger of each is near the edge of the linear regime (docs/probe.md).
DEFAULT_OPTIMIZERS = ("sgd:0.01", "sgd:0.1", "adamw:1e-5", "adamw:1e-4")
#: Verdict thresholds on Spearman's rho (docs/probe.md, "Verdicts").
LINEAR_OK = 0.9
TRACKS = 0.6
WEAK = 0.3
#: The paper's Fig. 2 (SRCC of Omega and of Cov against the measured change, 1.5-7B Qwen models).
PAPER_FIG2 = {"omega_spearman": (0.61, 0.72), "cov_spearman": (0.04, 0.08)}


@dataclass(frozen=True)
class OptimSetting:
    """One optimiser setting of the probe: ``name`` 'sgd' or 'adamw', learning rate ``lr``."""

    name: str
    lr: float

    @property
    def tag(self) -> str:
        return f"{self.name}_lr{self.lr:g}"


def parse_optimizers(specs: Sequence[str | tuple | OptimSetting] | str) -> list[OptimSetting]:
    """``["sgd:1", "adamw:1e-4"]`` (or one comma-separated string, or ``(name, lr)`` pairs) ->
    settings. ValueError names a bad entry (unknown optimiser, lr not a finite number > 0)."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    out: list[OptimSetting] = []
    for s in specs:
        if isinstance(s, OptimSetting):
            name, lr = s.name, s.lr
        elif isinstance(s, str):
            if ":" not in s:
                raise ValueError(f"optimiser setting {s!r} must look like 'sgd:1.0' or 'adamw:1e-4'")
            name, lr_s = s.split(":", 1)
            try:
                lr = float(lr_s)
            except ValueError:
                raise ValueError(f"optimiser setting {s!r}: learning rate {lr_s!r} is not a number") from None
        else:
            name, lr = s
        name = str(name).strip().lower()
        if name not in ("sgd", "adamw"):
            raise ValueError(f"optimiser setting {s!r}: unknown optimiser {name!r} (valid: sgd, adamw)")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"optimiser setting {s!r}: learning rate must be a finite number > 0")
        out.append(OptimSetting(name, float(lr)))
    if not out:
        raise ValueError("at least one optimiser setting is needed (e.g. 'sgd:1,adamw:1e-4')")
    return out


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the probe
# ---------------------------------------------------------------------------------------------


@dataclass
class _Batch:
    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor


def _chunks(n: int, size: int) -> list[slice]:
    size = size if size and size > 0 else max(n, 1)
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _snapshot(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: p.detach().clone() for k, p in params.items()}


def _restore(params: dict[str, Tensor], saved: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(saved[k])


def _stats(model, batch: _Batch, sl: slice, temperature: float, with_sums: bool):
    from steer.train.rollout import response_token_stats

    return response_token_stats(
        model,
        batch.prompt_ids[sl],
        batch.prompt_mask[sl],
        batch.response_ids[sl],
        temperature=temperature,
        with_sums=with_sums,
    )


@torch.no_grad()
def _entropies(
    model, batch: _Batch, temperature: float, mb: int, with_sums: bool = False
) -> dict[str, Tensor]:
    was = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {"logp": [], "entropy": [], "sum_p2": [], "sum_p2_logp": []}
    try:
        for sl in _chunks(batch.response_ids.shape[0], mb):
            st = _stats(model, batch, sl, temperature, with_sums)
            parts["logp"].append(st.logp.cpu())
            parts["entropy"].append(st.entropy.cpu())
            if with_sums:
                parts["sum_p2"].append(st.sum_p2.cpu())
                parts["sum_p2_logp"].append(st.sum_p2_logp.cpu())
    finally:
        model.train(was)
    m = batch.response_mask
    return {k: torch.cat(v).masked_fill(~m, 0.0) for k, v in parts.items() if v}


def _loss_step(
    model,
    method,
    batch: _Batch,
    base: dict[str, Tensor],
    advantages: Tensor,
    lr: float,
    temperature: float,
    mb: int,
    params: dict[str, Tensor],
    max_len: int | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict]:
    """Forward + loss + backward of the configured loss at the current parameters (= theta_0).

    Returns (parameter gradients, u = -dL/dlogp, v = -dL/dH, loss metrics). The loss is normalised
    over the whole batch (``global_num_tokens``), as the trainer does for one mini-batch."""
    mask = batch.response_mask
    n_tok = float(mask.sum())
    n_seq = float((mask.sum(1) > 0).sum())
    names = list(params)
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    u = torch.zeros(mask.shape, dtype=torch.float64)
    v = torch.zeros(mask.shape, dtype=torch.float64)
    metrics: dict = {}
    chunks = _chunks(batch.response_ids.shape[0], mb)
    scope_stats = None
    if len(chunks) > 1:  # a method's batch statistics (STEER's max|Omega|) over the whole batch
        with torch.no_grad():
            for sl in chunks:
                st = _stats(model, batch, sl, temperature, method.needs_sums)
                part = method.scope_stats(
                    _loss_batch(st, batch, base, advantages, sl, lr, n_tok, n_seq, method, max_len)
                )
                if scope_stats is None:
                    scope_stats = dict(part)
                else:
                    scope_stats = {k: torch.maximum(scope_stats[k], v) for k, v in part.items()}
        scope_stats = scope_stats or None
    was = model.training
    model.train()
    try:
        for sl in chunks:
            st = _stats(model, batch, sl, temperature, method.needs_sums)
            lb = _loss_batch(st, batch, base, advantages, sl, lr, n_tok, n_seq, method, max_len)
            lb.scope_stats = scope_stats
            loss, met = method.compute_loss(lb)
            if not bool(torch.isfinite(loss).all()):
                raise ValueError(f"the {method.name} loss is not finite ({float(loss)}); no step was taken")
            out = torch.autograd.grad(
                loss, [st.logp, st.entropy] + [params[k] for k in names], allow_unused=True
            )
            if out[0] is not None:
                u[sl] = -out[0].detach().double().cpu()
            if out[1] is not None:
                v[sl] = -out[1].detach().double().cpu()
            for k, g in zip(names, out[2:]):
                if g is not None:
                    grads[k].add_(g.detach())
            metrics = met if not metrics else metrics
    finally:
        model.train(was)
    bad = [k for k, g in grads.items() if not bool(torch.isfinite(g).all())]
    if bad:
        raise ValueError(f"non-finite loss gradient in parameter(s) {bad[:3]}; no step was taken")
    return grads, u.masked_fill(~mask, 0.0), v.masked_fill(~mask, 0.0), metrics


def _loss_batch(st, batch, base, advantages, sl, lr, n_tok, n_seq, method, max_len) -> LossBatch:
    m = batch.response_mask[sl]
    dev = st.logp.device
    return LossBatch(
        logp=st.logp,
        old_logp=base["logp"][sl].to(dev),
        advantages=advantages[sl].to(dev),
        response_mask=m.to(dev),
        entropy=st.entropy,
        old_entropy=base["entropy"][sl].to(dev) if method.needs_old_entropy else None,
        sum_p2=st.sum_p2 if method.needs_sums else None,
        sum_p2_logp=st.sum_p2_logp if method.needs_sums else None,
        ref_logp=base["logp"][sl].to(dev) if method.needs_ref else None,  # reference = theta_0
        lr=lr,
        global_num_tokens=max(n_tok, 1.0),
        global_num_seqs=max(n_seq, 1.0),
        max_response_length=max_len,
    )


def _make_optimizer(setting: OptimSetting, params: list[Tensor], optim_cfg, adam_state: dict | None = None):
    """SGD without momentum, or AdamW (``optim.*`` betas, eps, weight decay): a fresh state, or
    ``adam_state`` (a trainer checkpoint's ``optimizer.pt``) with the setting's learning rate."""
    if setting.name == "sgd":
        return torch.optim.SGD(params, lr=setting.lr, momentum=0.0, weight_decay=0.0)
    opt = torch.optim.AdamW(
        params,
        lr=setting.lr,
        betas=(optim_cfg.beta1, optim_cfg.beta2),
        eps=optim_cfg.eps,
        weight_decay=optim_cfg.weight_decay,
    )
    if adam_state is not None:
        try:
            opt.load_state_dict(adam_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ValueError(
                f"the checkpoint's optimiser state does not fit this model's parameters: {exc}"
            ) from exc
        for g in opt.param_groups:
            g["lr"] = setting.lr
    return opt


def _preconditioner(setting: OptimSetting, opt, params: dict[str, Tensor], clip_coef: float):
    """The diagonal P with ``Delta theta ~= P * (-grad L)``; the learning rate (and the clipping
    factor) included. SGD: ``lr`` (exact). AdamW: from its state after the step,
    ``lr (1 - beta1) / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps)``: exact for the first step
    of a fresh state without weight decay, an approximation otherwise (momentum, decay)."""
    if setting.name == "sgd":
        return setting.lr * clip_coef
    group = opt.param_groups[0]
    b1, b2 = group["betas"]
    eps = group["eps"]
    out = {}
    for k, p in params.items():
        st = opt.state[p]
        t = float(st["step"])
        bc1 = 1.0 - b1**t
        bc2 = 1.0 - b2**t
        denom = (st["exp_avg_sq"] / bc2).sqrt() + eps
        out[k] = (setting.lr * clip_coef * (1.0 - b1) / bc1) / denom
    return out


def _flat_valid(x: Tensor, mask: Tensor) -> Tensor:
    return x.detach().double().cpu()[mask]


def _agreement(est: Tensor, meas: Tensor) -> dict:
    if est.numel() < 2:
        return {
            "mse": float("nan"),
            "pearson": float("nan"),
            "spearman": float("nan"),
            "sign_agreement": float("nan"),
            "tokens": int(est.numel()),
        }
    out = dict(agreement(est, meas))
    out["tokens"] = int(est.numel())
    return out


def _bucket_name(lo: float, hi: float) -> str:
    return f"[{lo:g},{hi:g}{']' if hi >= 1.0 else ')'}"


def _buckets(p: Tensor) -> list[tuple[str, Tensor]]:
    out = []
    edges = PROB_BUCKETS
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        sel = (p >= lo) & ((p <= hi) if hi >= 1.0 else (p < hi))
        out.append((_bucket_name(lo, hi), sel))
    return out


def _verdict(res: dict) -> str:
    ag = res["agreement"]
    lin = ag["jvp"]["spearman"]
    per_tok = {k: ag[k]["spearman"] for k in PER_TOKEN_ESTIMATORS}
    finite = {k: v for k, v in per_tok.items() if v == v}
    best_name = max(finite, key=finite.get) if finite else None
    best = finite.get(best_name, float("nan")) if best_name else float("nan")
    cause_vs_jvp = res["cause_vs_jvp"]["spearman"]
    parts = []
    if not (lin == lin) or lin < LINEAR_OK:
        parts.append(
            f"the step is not in its linear regime (JVP-linearised vs measured Spearman {lin:.2f} < {LINEAR_OK}): "
            "lower the learning rate before judging the estimators"
        )
    if best_name is None:
        parts.append("no per-token estimator gave a finite correlation (constant estimates)")
    elif best >= TRACKS:
        parts.append(
            f"the per-token estimators track the measured change (best: {best_name}, Spearman {best:.2f})"
        )
    elif best >= WEAK:
        parts.append(
            f"the per-token estimators track the measured change only weakly (best: {best_name}, Spearman {best:.2f})"
        )
    else:
        msg = f"the per-token estimators do not track the measured change (best: {best_name}, Spearman {best:.2f})"
        if lin == lin and lin >= LINEAR_OK:
            msg += f" although the JVP linearisation does ({lin:.2f}): Assumption 1 fails here, cross-token effects dominate"
        parts.append(msg)
    if cause_vs_jvp == cause_vs_jvp:
        parts.append(f"own-gradient cause c_t vs per-state linearised change: Spearman {cause_vs_jvp:.2f}")
    t = res["totals"]
    rel = t.get("sum_cause_rel_error", float("nan"))
    if rel == rel:
        parts.append(
            f"sum of c_t {t['cause']:.4g} vs measured total change {t['measured']:.4g} ({100 * rel:.0f}% off)"
        )
    return "; ".join(parts)


def _binned(x: Tensor, ys: dict[str, Tensor], bins: int, lo_q: float = 0.01, hi_q: float = 0.99) -> dict:
    """Equal-width bins of ``x`` between its ``lo_q`` and ``hi_q`` quantiles: count and mean of
    ``x`` and of every ``ys`` series per bin (tokens outside the range are counted, not binned)."""
    if x.numel() == 0:
        return {"edges": [], "count": [], "x_mean": [], "series": {}, "outside": 0}
    lo, hi = float(torch.quantile(x, lo_q)), float(torch.quantile(x, hi_q))
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max()) + 1e-12
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    inside = (x >= lo) & (x <= hi)
    idx = torch.bucketize(x, edges[1:-1], right=True)
    count, x_mean = [], []
    series: dict[str, list[float]] = {k: [] for k in ys}
    for b in range(bins):
        sel = inside & (idx == b)
        c = int(sel.sum())
        count.append(c)
        x_mean.append(float(x[sel].mean()) if c else float("nan"))
        for k, y in ys.items():
            series[k].append(float(y[sel].mean()) if c else float("nan"))
    return {
        "edges": edges.tolist(),
        "count": count,
        "x_mean": x_mean,
        "series": series,
        "outside": int((~inside).sum()),
    }


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


def _steer_omega(method, base, advantages, mask, lr) -> Tensor:
    """The STEER method's own Omega at theta_0 (``Method.compute_omega``, on-policy)."""
    lb = LossBatch(
        logp=base["logp"],
        old_logp=base["logp"],
        advantages=advantages,
        response_mask=mask,
        entropy=base["entropy"],
        old_entropy=base["entropy"],
        sum_p2=base["sum_p2"],
        sum_p2_logp=base["sum_p2_logp"],
        lr=lr,
    )
    return method.compute_omega(lb)


def _load_checkpoint(path, log):
    """A trainer checkpoint: the directory itself, or the newest valid one under a run folder or
    its ``checkpoints`` folder. ValueError when there is none or it is corrupt."""
    from steer.train import checkpoint as ckpt

    p = Path(path)
    if not (p / "manifest.json").exists():
        root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found, _ = ckpt.find_latest_valid(root, log=log)
        if found is None:
            raise ValueError(f"no valid steer train checkpoint in {path}")
        p = found
    try:
        return ckpt.load_checkpoint(p)
    except ckpt.CheckpointError as exc:
        raise ValueError(str(exc)) from exc


def _load_everything(cfg, model, tokenizer, task, log):
    from steer.train.tasks import build_task
    from steer.train.trainer import load_model_and_tokenizer, resolve_device

    device = resolve_device(cfg.model.device)
    if model is None or tokenizer is None:
        log(f"loading the policy ({cfg.model.source}: {cfg.model.name_or_path or 'testbed warm-start'})")
        model, tokenizer = load_model_and_tokenizer(cfg, log=log)
    model = model.to(device)
    require_eager_attention(model)
    if task is None:
        task = build_task(cfg.task)
    return model, tokenizer, task, device


def run_probe(
    config=None,
    overrides: Sequence[str] = (),
    *,
    model=None,
    tokenizer=None,
    task=None,
    optimizers: Sequence = DEFAULT_OPTIMIZERS,
    num_prompts: int | None = None,
    n: int | None = None,
    grad_clip: float | None = None,
    micro_batch_size: int | None = None,
    seed: int = 0,
    bins: int = 20,
    out_dir: str | Path | None = None,
    plots: bool = True,
    return_details: bool = False,
    checkpoint: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the probe; returns a dict of every number (see docs/probe.md, "Output").

    ``config``: a trainer config (a path, a shipped config name such as ``"testbed"``, or a
    :class:`steer.train.config.Config`; default ``"testbed"``) with dotted ``overrides``: it sets the
    policy (``model.*``: the testbed warm-start, or ``model.source=hf model.name_or_path=PATH``),
    the prompts (``task.*``: countdown, or ``task.name=math task.train_path=FILE.parquet``), the
    sampler (``rollout.*``), the method (``method.name``, ``method.*``), AdamW's betas/eps/weight
    decay (``optim.*``), the device and dtype. ``model``/``tokenizer``/``task`` replace the loaded ones.

    ``optimizers``: settings such as ``["sgd:1", "adamw:1e-4"]`` (:func:`parse_optimizers`); each is
    one step from the same rollout parameters with a fresh optimiser state. ``num_prompts`` (default
    ``trainer.prompts_per_step``) prompts drawn with ``seed`` from the task's training pool, ``n``
    rollouts each (default ``rollout.n``). ``grad_clip``: clip the gradient norm like the trainer
    (None = no clipping). ``micro_batch_size``: rows per forward (default
    ``trainer.micro_batch_size``, 0 = all). Writes ``probe.json``, ``probe.md``, ``tokens.npz`` and
    PNGs into ``out_dir`` when given. The model's parameters are restored to theta_0 at the end
    (a model passed in stays switched to eager attention, which forward-mode AD needs).
    ``checkpoint``: a ``steer train`` checkpoint directory (``.../checkpoints/step_00000040``, or a
    run folder or its ``checkpoints`` folder: the newest valid one): the probe starts from its
    weights, every AdamW setting from its optimiser state (the setting's learning rate replaces the
    run's), and ``config`` defaults to the run's own ``config.yaml`` (``overrides`` still apply).
    ``return_details`` adds ``out["details"]``: the batch, rewards, advantages, the theta_0
    statistics, the per-token arrays of every setting and each setting's parameter update (tensors;
    not written to the JSON; memory-hungry on a large model).
    """
    from steer.train.config import Config, build_method_from_config, load_config, to_dict
    from steer.train.rollout import generate_rollouts
    from steer.train.tasks import format_prompt, score_batch
    from steer.train.trainer import derive_seed, seed_all

    log = log or _log_default
    settings = parse_optimizers(optimizers)
    if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
        raise ValueError(f"grad_clip must be None or a finite number > 0, got {grad_clip!r}")
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    loaded = _load_checkpoint(checkpoint, log) if checkpoint is not None else None
    if isinstance(config, Config):
        cfg = config
        if overrides:
            raise ValueError("overrides need a config path or name, not a Config object")
    elif config is None and loaded is not None:
        cfg = load_config(loaded.path / "config.yaml", list(overrides))
    else:
        cfg = load_config(config or "testbed", list(overrides))
    k = int(num_prompts if num_prompts is not None else cfg.trainer.prompts_per_step)
    n_roll = int(n if n is not None else cfg.rollout.n)
    if k < 1:
        raise ValueError(f"num_prompts must be >= 1, got {k}")
    if n_roll < 2:
        raise ValueError(
            f"n must be >= 2 (group-relative advantages need 2 rollouts per prompt), got {n_roll}"
        )
    mb = int(micro_batch_size if micro_batch_size is not None else cfg.trainer.micro_batch_size)
    threads = cfg.trainer.num_threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    t_start = time.perf_counter()

    method = build_method_from_config(cfg)
    model, tokenizer, task, device = _load_everything(cfg, model, tokenizer, task, log)
    adam_state = None
    if loaded is not None:
        try:
            model.load_state_dict({k: v.to(device) for k, v in loaded.model_state.items()})
        except RuntimeError as exc:
            raise ValueError(
                f"the checkpoint {loaded.path} does not fit the configured model: {exc}"
            ) from exc
        adam_state = loaded.optimizer_state
        log(f"from checkpoint {loaded.path} (step {loaded.state.get('step')})")
    params = trainable_parameters(model)
    n_params = sum(p.numel() for p in params.values())
    theta0 = _snapshot(params)
    try:
        pool = task.train_problems()
        if len(pool) < k:
            raise ValueError(f"the task's training pool has {len(pool)} problems, fewer than num_prompts={k}")
        rng = np.random.default_rng(derive_seed(seed, "probe-prompts"))
        problems = [pool[i] for i in rng.permutation(len(pool))[:k]]
        prompts = [format_prompt(tokenizer, task, p) for p in problems]
        seed_all(derive_seed(seed, "probe-rollouts"))
        log(f"sampling {k} prompts x {n_roll} rollouts (max {cfg.rollout.max_new_tokens} new tokens)")
        t0 = time.perf_counter()
        ro = generate_rollouts(
            model,
            tokenizer,
            prompts,
            n_roll,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            max_new_tokens=cfg.rollout.max_new_tokens,
            max_prompt_tokens=cfg.rollout.max_prompt_tokens,
            generation_batch_size=cfg.rollout.generation_batch_size,
        )
        t_roll = time.perf_counter() - t0
        log(f"scoring {ro.batch_size} responses")
        correct = torch.tensor(
            score_batch(task, [problems[i // n_roll] for i in range(ro.batch_size)], ro.texts),
            dtype=torch.bool,
        )
        rewards = torch.where(
            correct, torch.tensor(cfg.task.reward_correct), torch.tensor(cfg.task.reward_wrong)
        ).float()
        batch = _Batch(ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
        mask = batch.response_mask
        temperature = cfg.rollout.temperature
        log("token statistics and the entropy gradient at the rollout parameters")
        base = _entropies(model, batch, temperature, mb, with_sums=True)
        rb = RolloutBatch(
            rewards=rewards,
            group_ids=ro.group_ids,
            response_mask=mask,
            old_logp=base["logp"],
            old_entropy=base["entropy"] if method.needs_old_entropy else None,
        )
        advantages = method.compute_advantages(rb).detach().float().masked_fill(~mask, 0.0)
        n_tok = int(mask.sum())
        nonzero = int(((advantages != 0) & mask).sum())
        if nonzero == 0:
            raise ValueError(
                "every valid token has advantage 0 (all groups equal-reward): the step would not move "
                "the policy; use more prompts or rollouts, or another seed"
            )
        grad_h = entropy_gradient(model, batch, params=theta0, temperature=temperature, micro_batch_size=mb)
        results: dict[str, dict] = {}
        tokens: dict[str, dict[str, Tensor]] = {}
        updates: dict[str, dict[str, Tensor]] = {}
        log(f"{len(settings)} optimiser setting(s), one real step each from the same parameters")
        method_state = method.state_dict()  # every setting draws the same random tokens (Clip-Cov, ...)
        for s in settings:
            method.load_state_dict(method_state)
            r, tok, upd = _probe_setting(
                s,
                model=model,
                method=method,
                batch=batch,
                base=base,
                advantages=advantages,
                params=params,
                theta0=theta0,
                grad_h=grad_h,
                optim_cfg=cfg.optim,
                grad_clip=grad_clip,
                temperature=temperature,
                mb=mb,
                bins=bins,
                log=log,
                max_len=int(cfg.rollout.max_new_tokens),
                adam_state=adam_state,
            )
            results[s.tag] = r
            tokens[s.tag] = tok
            if return_details:
                updates[s.tag] = upd
    finally:
        _restore(params, theta0)
    groups = correct.view(-1, n_roll).float().mean(1)
    out = {
        "version": 1,
        "model": {
            "source": cfg.model.source,
            "name_or_path": cfg.model.name_or_path,
            "parameters": int(n_params),
            "vocab_size": int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0),
            "hidden_size": int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0),
            "num_hidden_layers": int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "device": str(device),
        },
        "method": {"name": method.name, "config": {k: v for k, v in cfg.method.items()}},
        "data": {
            "task": cfg.task.name,
            "train_path": cfg.task.train_path,
            "prompts": k,
            "rollouts_per_prompt": n_roll,
            "responses": int(ro.batch_size),
            "valid_tokens": n_tok,
            "tokens_with_nonzero_advantage": nonzero,
            "accuracy": float(correct.float().mean()),
            "groups_equal_reward": float(((groups == 0) | (groups == 1)).float().mean()),
            "entropy_mean": float(base["entropy"][mask].double().mean()),
            "temperature": temperature,
        },
        "settings": results,
        "paper_fig2": PAPER_FIG2,
        "time_s": {"rollout": t_roll, "total": time.perf_counter() - t_start},
        "config": to_dict(cfg),
        "seed": seed,
        "grad_clip": grad_clip,
        "checkpoint": None
        if loaded is None
        else {"path": str(loaded.path), "step": loaded.state.get("step")},
        "prob_buckets": list(PROB_BUCKETS),
    }
    if out_dir is not None:
        write_outputs(out, tokens, out_dir, plots=plots, log=log)
    if return_details:
        out["details"] = {
            "batch": batch,
            "rewards": rewards,
            "advantages": advantages,
            "base": base,
            "tokens": tokens,
            "updates": updates,
        }
    return out


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN; None = undefined (e.g. a constant series)
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e4 or (0 < abs(x) < 1e-3)):
        return f"{x:.2e}"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown_report(out: dict) -> str:
    """The probe's tables as Markdown (what ``probe.md`` holds)."""
    m, d = out["model"], out["data"]
    lines = [
        "# steer probe",
        "",
        f"Policy: {m['source']} {m['name_or_path'] or '(testbed warm-start)'}, {m['parameters']:,} parameters "
        f"(hidden {m['hidden_size']}, {m['num_hidden_layers']} layers, vocabulary {m['vocab_size']}), "
        f"{m['dtype']} on {m['device']}"
        + (
            f", weights and AdamW state from checkpoint {out['checkpoint']['path']} (step {out['checkpoint']['step']})"
            if out.get("checkpoint")
            else ""
        )
        + f". Method {out['method']['name']}. "
        f"{d['prompts']} prompts x {d['rollouts_per_prompt']} rollouts = {d['responses']} responses, "
        f"{d['valid_tokens']} tokens ({d['tokens_with_nonzero_advantage']} with a non-zero advantage), "
        f"accuracy {d['accuracy']:.3f}, mean entropy {d['entropy_mean']:.3f} nats/token.",
        "",
        "Paper (Fig. 2, 1.5-7B Qwen): Spearman 0.61-0.72 for Omega, 0.04-0.08 for Cov.",
        "",
    ]
    for tag, r in out["settings"].items():
        u = r["update"]
        lines += [
            f"## {tag}",
            "",
            f"**Verdict:** {r['verdict']}.",
            "",
            f"Update norm {_fmt(u['update_norm'])}, gradient norm {_fmt(u['grad_norm'])}, "
            f"mean |measured dH| {_fmt(r['measured']['abs_mean'])}; preconditioner: {u['preconditioner']}; "
            f"residual |dtheta - P(-grad L)| / |dtheta| = {_fmt(u['residual_vs_preconditioned_gradient'])}.",
            "",
            "| estimator | MSE | Pearson | Spearman | sign agreement |",
            "|---|---|---|---|---|",
        ]
        for k in ESTIMATOR_NAMES:
            a = r["agreement"][k]
            lines.append(
                f"| {k} | {_fmt(a['mse'])} | {_fmt(a['pearson'])} | {_fmt(a['spearman'])} | {_fmt(a['sign_agreement'])} |"
            )
        nzs = r["agreement_nonzero_advantage"]
        lines += [
            "",
            f"Only the {nzs['jvp']['tokens']} tokens with a non-zero advantage (the per-token estimators are 0 on "
            "the others): Spearman "
            + ", ".join(f"{k} {_fmt(nzs[k]['spearman'])}" for k in ESTIMATOR_NAMES)
            + "; sign agreement "
            + ", ".join(f"{k} {_fmt(nzs[k]['sign_agreement'])}" for k in ESTIMATOR_NAMES)
            + ".",
        ]
        c = r["cause_vs_jvp"]
        lines += [
            "",
            f"c_t vs JVP-linearised per-state change: Pearson {_fmt(c['pearson'])}, Spearman "
            f"{_fmt(c['spearman'])}, sign agreement {_fmt(c['sign_agreement'])}.",
            "",
            "Spearman per probability bucket (probability of the sampled token):",
            "",
            "| bucket | tokens | " + " | ".join(ESTIMATOR_NAMES) + " |",
            "|---|---|" + "---|" * len(ESTIMATOR_NAMES),
        ]
        for b, row in r["per_prob_bucket"].items():
            lines.append(
                f"| {b} | {row['jvp']['tokens']} | "
                + " | ".join(_fmt(row[k]["spearman"]) for k in ESTIMATOR_NAMES)
                + " |"
            )
        t = r["totals"]
        lines += [
            "",
            "Total entropy change of the batch (sum over tokens):",
            "",
            "| measured | JVP along the update | sum c_t | " + " | ".join(PER_TOKEN_ESTIMATORS) + " |",
            "|---|---|---|" + "---|" * len(PER_TOKEN_ESTIMATORS),
            f"| {_fmt(t['measured'], 5)} | {_fmt(t['jvp'], 5)} | {_fmt(t['cause'], 5)} | "
            + " | ".join(_fmt(t[k], 5) for k in PER_TOKEN_ESTIMATORS)
            + " |",
            "",
            f"Sum of c_t vs the measured total: relative error {_fmt(t['sum_cause_rel_error'])}.",
            "",
            f"Entropy vs |measured dH| (Fig. 10): Spearman {_fmt(r['fig10_entropy_vs_abs_change']['spearman'])}. "
            f"STEER weight vs |measured dH| (Fig. 15; weights: {r['fig15_weight_vs_abs_change']['weights_from']}): "
            f"Spearman {_fmt(r['fig15_weight_vs_abs_change']['spearman'])}, mean weight "
            f"{_fmt(r['fig15_weight_vs_abs_change']['weight_mean'])}.",
            "",
        ]
    return "\n".join(lines)


def write_outputs(
    out: dict, tokens: dict, out_dir: str | Path, *, plots: bool = True, log=_log_default
) -> Path:
    """Write ``probe.json``, ``probe.md``, ``tokens.npz`` (per-token arrays per setting) and, with
    ``plots``, the PNGs of every setting into ``out_dir`` (each file written atomically)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files = {"json": "probe.json", "markdown": "probe.md", "tokens": "tokens.npz"}
    if plots:
        from steer.analysis.probe.plots import plot_setting

        files["plots"] = {}
        for tag, r in out["settings"].items():
            files["plots"][tag] = plot_setting(r, tokens[tag], d, tag)
    out["files"] = files
    _atomic_text(d / "probe.json", json.dumps(_jsonable(out), indent=1, sort_keys=False))
    _atomic_text(d / "probe.md", markdown_report(out))
    arrays = {f"{tag}/{k}": v.numpy() for tag, tok in tokens.items() for k, v in tok.items()}
    tmp = d / "tokens.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, d / "tokens.npz")
    log(f"wrote {d / 'probe.json'}, {d / 'probe.md'}, {d / 'tokens.npz'}" + (" and PNGs" if plots else ""))
    return d


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
