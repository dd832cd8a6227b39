"""Policy losses, token weightings and the building blocks they share (clipped surrogate, token
selections, quadrants, metrics).

Paper Eq. 2 (clipped surrogate), Eq. 5-6 (clip indicator), Eq. 11-13 and Table 3 (token-level
reweighting view), appendix D.2 (quadrant interventions); spec methods.md §0 (loss), §1 (Clip-Cov,
KL-Cov), §7 (forking tokens), §10 (clip-higher, dual clip). The regularisers are in
:mod:`steer.core.regularisers`, the aggregation in :mod:`steer.core.aggregation`.

Shapes: every per-token tensor is ``(B, T)`` (any shape works where a function does not need a
sequence axis) with a boolean ``response_mask`` of the same shape. Per-token loss matrices are
exactly 0 on masked positions, and masked positions never pass a gradient (also when the
log-probs there are NaN or inf). Selection masks and weights are detached.

The registered policy losses (``vanilla``, ``clip_cov``, ``kl_cov``) are
``fn(batch: LossBatch, mask, config, generator) -> (TokenLoss, SurrogateResult)`` and the
weightings (``forking``, ``quadrant``) ``fn(batch, mask, config, surrogate, generator) ->
Weighting``: each body is the method's math, its parameters checked once by its params dataclass
(:mod:`steer.core.parts`); ``Method`` validates the batch before calling them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from steer.core.aggregation import AGG_MODES, aggregate
from steer.core.errors import check_finite as _finite
from steer.core.estimators import delta_indicator, omega_cov, token_weight_w
from steer.core.parts import (
    NoParams,
    Weighting,
    check_choice,
    check_range,
    register_policy_loss,
    register_weighting,
)
from steer.core.regularisers import (
    KL_TYPES,
    AdaptiveEntropyController,
    entropy_bonus_loss,
    kl_penalty,
    kl_penalty_loss,
)
from steer.core.types import TokenLoss, as_bool_mask, check_same_shape, masked_mean_float

__all__ = [
    "AGG_MODES",
    "KL_TYPES",
    "QUADRANTS",
    "AdaptiveEntropyController",
    "SurrogateResult",
    "aggregate",
    "assign_quadrants",
    "clip_cov_select",
    "clipped_surrogate",
    "entropy_bonus_loss",
    "forking_token_mask",
    "kl_cov_select",
    "kl_penalty",
    "kl_penalty_loss",
    "quadrant_metrics",
    "quadrant_weights",
    "standard_metrics",
]

QUADRANTS = ("I", "II", "III", "IV")


# --------------------------------------------------------------------------------------------
# clipped surrogate


@dataclass
class SurrogateResult:
    """Output of :func:`clipped_surrogate`.

    - ``loss_mat``: (B, T) per-token loss (times ``weight`` when given), 0 on padding, with grad.
    - ``ratio``: detached ratio r = exp(clamp(logp - old_logp, -c, c)) (1 on padding).
    - ``clipped_low``: A < 0 and the lower clip blocks the gradient (r < 1 - eps_low).
    - ``clipped_high``: A > 0 and the upper clip blocks the gradient (r > 1 + eps_high).
    - ``clipped_dual``: A < 0 and the dual clip caps the loss at -c A (r > c).
    - ``eps_low`` / ``eps_high`` / ``clip_c``: the clip bounds the loss applied (None: no such clip).
    All masks are bool and False on padding.
    """

    loss_mat: Tensor
    ratio: Tensor
    clipped_low: Tensor
    clipped_high: Tensor
    clipped_dual: Tensor
    eps_low: float | None = None
    eps_high: float | None = None
    clip_c: float | None = None

    def token_weight(self, advantages: Tensor) -> Tensor:
        """Theorem 1's ``w = I_clip r A`` of this loss (detached;
        :func:`steer.core.estimators.token_weight_w` with this loss's clip bounds)."""
        return token_weight_w(self.ratio, advantages, self.eps_low, self.eps_high, self.clip_c)


def _check_clip(eps_low: float, eps_high: float, clip_c: float | None) -> None:
    for name, v in (("eps_low", eps_low), ("eps_high", eps_high)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if clip_c is not None and not (math.isfinite(clip_c) and clip_c > 1.0):
        raise ValueError(f"clip_c (dual clip) must be > 1 or None, got {clip_c!r}")


def log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor, clamp: float = 20.0) -> Tensor:
    """``clamp(logp - old_logp, -clamp, clamp)`` on valid tokens, 0 (and no gradient) on padding."""
    diff = logp - old_logp.detach()
    zero = torch.zeros((), dtype=diff.dtype, device=diff.device)
    return torch.where(mask, diff, zero).clamp(-clamp, clamp)


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    clip_c: float | None = None,
    log_ratio_clamp: float = 20.0,
    check_finite: bool = True,
) -> SurrogateResult:
    """Per-token PPO/GRPO clipped surrogate (paper Eq. 2; spec methods.md §0 and §10).

    ``L = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))`` (decoupled clip, DAPO's clip-higher
    when eps_high > eps_low); for A < 0 and ``clip_c`` set, ``L = min(L, -clip_c A)`` (dual clip,
    Ye et al.). The log-ratio is clamped to [-log_ratio_clamp, log_ratio_clamp] (20) before exp.
    Token weights (STEER's lambda, quadrant/Clip-Cov masks, ...) multiply ``loss_mat`` afterwards
    (:func:`apply_weighting`). Computation runs in the dtype of ``logp`` promoted to at least
    float32 (bfloat16/float16 log-probs are upcast).
    NaN/inf on valid tokens raise ValueError (``check_finite=False`` skips the check for callers
    that validated already, e.g. ``Method.compute_loss``); on padding they are ignored.
    """
    _check_clip(eps_low, eps_high, clip_c)
    check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, response_mask=response_mask)
    m = as_bool_mask(response_mask)
    if check_finite:
        _finite(m, logp=logp, old_logp=old_logp, advantages=advantages)
    dt = torch.promote_types(logp.dtype, torch.float32)
    lp = logp.to(dt)
    adv = advantages.detach().to(dt)
    zero = torch.zeros((), dtype=dt, device=lp.device)
    adv = torch.where(m, adv, zero)
    ratio = torch.exp(log_ratio(lp, old_logp.to(dt), m, log_ratio_clamp))
    loss1 = -adv * ratio
    loss2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    clip1 = torch.maximum(loss1, loss2)
    with torch.no_grad():
        clipped = (loss2 > loss1) & m
        clipped_low = clipped & (adv < 0)
        clipped_high = clipped & (adv > 0)
    if clip_c is not None:
        loss3 = -adv * clip_c
        neg = adv < 0
        out = torch.where(neg, torch.minimum(clip1, loss3), clip1)
        with torch.no_grad():
            clipped_dual = neg & (clip1 > loss3) & m
    else:
        out = clip1
        clipped_dual = torch.zeros_like(m)
    out = torch.where(m, out, zero)
    return SurrogateResult(
        out, ratio.detach(), clipped_low, clipped_high, clipped_dual, eps_low, eps_high, clip_c
    )


# --------------------------------------------------------------------------------------------
# metrics


def standard_metrics(
    response_mask: Tensor,
    *,
    loss: Tensor | None = None,
    surrogate: SurrogateResult | None = None,
    entropy: Tensor | None = None,
    weight: Tensor | None = None,
) -> dict[str, float]:
    """The standard metric keys of every loss (docs/methods.md "Metrics").

    ``pg_loss``; ``clipfrac_low`` / ``clipfrac_high`` / ``clipfrac_dual`` (fractions of valid
    tokens); ``ratio_mean``; ``entropy_mean`` (only when ``entropy`` is given); ``weight_mean`` /
    ``weight_min`` over valid tokens (1.0 without weights); ``tokens`` (valid tokens). An empty
    batch gives fractions 0, ratio and weights 1.
    """
    m = as_bool_mask(response_mask)
    n = int(m.sum())
    out: dict[str, float] = {"tokens": float(n)}
    if loss is not None:
        out["pg_loss"] = float(loss.detach())
    if surrogate is not None:
        denom = max(n, 1)
        out["clipfrac_low"] = float(surrogate.clipped_low.sum()) / denom
        out["clipfrac_high"] = float(surrogate.clipped_high.sum()) / denom
        out["clipfrac_dual"] = float(surrogate.clipped_dual.sum()) / denom
        out["ratio_mean"] = masked_mean_float(surrogate.ratio, m, 1.0)
    if entropy is not None:
        out["entropy_mean"] = masked_mean_float(entropy.detach(), m, 0.0)
    out.update(weight_metrics(m, weight, n))
    return out


def weight_metrics(response_mask: Tensor, weight: Tensor | None, n: int | None = None) -> dict[str, float]:
    """``weight_mean`` / ``weight_min`` of the (detached) token weights over valid tokens; 1.0
    without weights or valid tokens."""
    m = as_bool_mask(response_mask)
    n = int(m.sum()) if n is None else n
    if weight is None:
        return {"weight_mean": 1.0, "weight_min": 1.0}
    w = weight.detach()
    return {
        "weight_mean": masked_mean_float(w, m, 1.0),
        "weight_min": (
            float(torch.where(m, w.double(), torch.full((), math.inf, dtype=torch.float64)).min())
            if n
            else 1.0
        ),
    }


# --------------------------------------------------------------------------------------------
# Clip-Cov and KL-Cov (Cui et al.)


def _covariance(logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Cov_i = (l_i - mean l)(A_i - mean A) over valid tokens (spec §1.1); = -omega_cov(lr=1)."""
    return -omega_cov(logp.detach(), advantages.detach(), mask, lr=1.0)


def clip_cov_select(
    logp: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    already_clipped: Tensor | None = None,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Clip-Cov's token selection (spec methods.md §1.2); returns a bool mask of the selected tokens.

    Candidates: valid tokens not already clipped by the PPO clip with ``lb < Cov_i < ub``. Up to
    ``max(floor(ratio * N), 1)`` of them (N = valid tokens) are drawn uniformly at random without
    ranking (``torch.randperm`` with ``generator`` for reproducibility). None when no token is valid.
    """
    if not (0.0 <= clip_cov_ratio <= 1.0):
        raise ValueError(f"clip_cov_ratio must lie in [0, 1], got {clip_cov_ratio!r}")
    m = as_bool_mask(response_mask)
    cov = _covariance(logp, advantages, m)
    cand = m & (cov > clip_cov_lb) & (cov < clip_cov_ub)
    if already_clipped is not None:
        cand = cand & ~already_clipped
    selected = torch.zeros(m.shape, dtype=torch.bool, device=m.device)  # contiguous: filled via view(-1)
    n_valid = int(m.sum())
    idx = cand.reshape(-1).nonzero().squeeze(-1)
    if n_valid == 0 or idx.numel() == 0:
        return selected
    n_sel = min(max(int(clip_cov_ratio * n_valid), 1), idx.numel())
    perm = torch.randperm(idx.numel(), generator=generator, device="cpu").to(idx.device)
    selected.view(-1)[idx[perm[:n_sel]]] = True
    return selected


def kl_cov_select(
    logp: Tensor, advantages: Tensor, response_mask: Tensor, *, kl_cov_ratio: float = 2e-3
) -> Tensor:
    """KL-Cov's selection (spec §1.3): the top ``max(floor(ratio * N), 1)`` valid tokens by Cov_i."""
    if not (0.0 <= kl_cov_ratio <= 1.0):
        raise ValueError(f"kl_cov_ratio must lie in [0, 1], got {kl_cov_ratio!r}")
    m = as_bool_mask(response_mask)
    selected = torch.zeros(m.shape, dtype=torch.bool, device=m.device)
    n_valid = int(m.sum())
    if n_valid == 0:
        return selected
    cov = _covariance(logp, advantages, m).double()
    cov = torch.where(m, cov, torch.full((), -math.inf, dtype=cov.dtype, device=cov.device))
    k = min(max(int(kl_cov_ratio * n_valid), 1), n_valid)
    top = torch.topk(cov.reshape(-1), k).indices
    selected.view(-1)[top] = True
    return selected & m


# --------------------------------------------------------------------------------------------
# forking tokens (80/20 rule)


def forking_token_mask(entropy: Tensor, response_mask: Tensor, *, rho: float = 0.2) -> Tensor:
    """Top ``max(ceil(rho * N), 1)`` valid tokens by (detached) entropy (spec methods.md §7).

    An exact top-k over the flattened valid tokens (ties broken by ``torch.topk``); bool mask,
    False on padding; all False when no token is valid.
    """
    if not (0.0 < rho <= 1.0):
        raise ValueError(f"rho must lie in (0, 1], got {rho!r}")
    check_same_shape(entropy=entropy, response_mask=response_mask)
    m = as_bool_mask(response_mask)
    out = torch.zeros(m.shape, dtype=torch.bool, device=m.device)
    n = int(m.sum())
    if n == 0:
        return out
    h = entropy.detach().double()
    h = torch.where(m, h, torch.full((), -math.inf, dtype=h.dtype, device=h.device))
    k = min(max(math.ceil(rho * n), 1), n)
    out.view(-1)[torch.topk(h.reshape(-1), k).indices] = True
    return out & m


def apply_weighting(token_loss: TokenLoss, weighting: Weighting, response_mask: Tensor) -> TokenLoss:
    """A token weighting on top of a policy loss: ``loss_mat * weight``; the reported weight is
    the product of both (``weight_mean`` / ``weight_min`` recomputed), the weighting's metrics
    and token selection added."""
    lm = token_loss.loss_mat
    w = weighting.weight.detach()
    total = w if token_loss.weight is None else token_loss.weight * w.to(token_loss.weight.dtype)
    metrics = dict(token_loss.metrics)
    metrics.update(weight_metrics(response_mask, total))
    metrics.update(weighting.metrics)
    return TokenLoss(lm * w.to(lm.dtype), total, metrics, weighting.loss_mask, weighting.num_tokens_scale)


# --------------------------------------------------------------------------------------------
# quadrants (paper section 3.2.1, Figure 4, appendix D.2)


def assign_quadrants(
    advantages: Tensor,
    response_mask: Tensor,
    *,
    logp: Tensor | None = None,
    entropy: Tensor | None = None,
    by: str = "delta",
    high_prob: float = 0.8,
    low_prob: float = 0.2,
) -> Tensor:
    """Quadrant index per token (int64: 1..4 for I..IV, 0 for none) (paper section 3.2.1).

    ``by="delta"``: from sign(A) and sign(delta) (Eq. 8, needs ``logp`` and ``entropy``):
    I = (A > 0, delta < 0) exploitation, II = (A > 0, delta > 0) exploration,
    III = (A < 0, delta > 0) suppression, IV = (A < 0, delta < 0) error correction.
    ``by="prob"`` (appendix D.2's selection): I = (A > 0, pi > high_prob), II = (A > 0, pi < low_prob),
    III = (A < 0, pi < low_prob), IV = (A < 0, pi > high_prob), pi = exp(logp) of the sampled token.
    Tokens with A = 0, delta = 0, a probability between the thresholds, or padding get 0.
    """
    m = as_bool_mask(response_mask)
    a = advantages.detach()
    if logp is None:
        raise ValueError("assign_quadrants needs logp")
    if by == "delta":
        if entropy is None:
            raise ValueError("assign_quadrants(by='delta') needs entropy")
        d = delta_indicator(logp.detach(), entropy.detach())
        up, down = d > 0, d < 0
    elif by == "prob":
        p = logp.detach().float().exp()
        up, down = p < low_prob, p > high_prob
    else:
        raise ValueError(f"unknown quadrant criterion {by!r}; valid: ['delta', 'prob']")
    pos, neg = a > 0, a < 0
    q = torch.zeros(a.shape, dtype=torch.long, device=a.device)
    q = torch.where(pos & down, 1, q)
    q = torch.where(pos & up, 2, q)
    q = torch.where(neg & up, 3, q)
    q = torch.where(neg & down, 4, q)
    return torch.where(m, q, torch.zeros_like(q))


def quadrant_metrics(quadrants: Tensor, omega: Tensor | None = None) -> dict[str, float]:
    """``quadrant/{q}/count`` and (with ``omega``) ``quadrant/{q}/omega_sum`` for q in I..IV."""
    out: dict[str, float] = {}
    for i, name in enumerate(QUADRANTS, start=1):
        sel = quadrants == i
        out[f"quadrant/{name}/count"] = float(sel.sum())
        if omega is not None:
            out[f"quadrant/{name}/omega_sum"] = float(torch.where(sel, omega.detach().double(), 0.0).sum())
    return out


def quadrant_weights(
    quadrants: Tensor,
    *,
    target: str,
    action: str = "mask",
    fraction: float = 0.1,
    factor: float = 2.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Appendix D.2 intervention: pick ``floor(fraction * n_q)`` of the ``n_q`` tokens of quadrant
    ``target`` uniformly at random (``torch.randperm`` with ``generator``) and give them weight 0
    (``action="mask"``) or ``factor`` (``"upweight"``, 2 in the paper); every other token gets 1.
    Returns (weights float32, selected bool).
    """
    if target not in QUADRANTS:
        raise ValueError(f"unknown quadrant {target!r}; valid: {list(QUADRANTS)}")
    if action not in ("mask", "upweight"):
        raise ValueError(f"unknown quadrant action {action!r}; valid: ['mask', 'upweight']")
    if not (0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    if not (math.isfinite(factor) and factor >= 0):
        raise ValueError(f"factor must be finite and >= 0, got {factor!r}")
    qi = QUADRANTS.index(target) + 1
    idx = (quadrants.reshape(-1) == qi).nonzero().squeeze(-1)
    selected = torch.zeros(quadrants.shape, dtype=torch.bool, device=quadrants.device)
    n_sel = int(math.floor(fraction * idx.numel()))
    if n_sel > 0:
        perm = torch.randperm(idx.numel(), generator=generator, device="cpu").to(idx.device)
        selected.view(-1)[idx[perm[:n_sel]]] = True
    value = 0.0 if action == "mask" else float(factor)
    w = torch.where(selected, torch.tensor(value), torch.tensor(1.0)).to(quadrants.device)
    return w, selected


def clip_by_prob_metrics(
    surrogate: SurrogateResult, old_logp: Tensor, response_mask: Tensor
) -> dict[str, float]:
    """How often each clip fires per probability decile of the rollout policy (paper Fig. 9).

    Bucket ``p{k}`` holds the valid tokens with ``pi_old(o|s) = exp(old_logp)`` in
    ``[k/10, (k+1)/10)`` (p9 includes 1). Keys ``clip_by_prob/p{k}/tokens`` and
    ``clip_by_prob/p{k}/{low,high,dual}``: counts (reduced by sum; the fractions
    ``.../{low,high,dual}_frac`` are derived after the reduction, :mod:`steer.core.metrics`).
    """
    m = as_bool_mask(response_mask)
    with torch.no_grad():
        # one integer code per token: bucket + 10 * kind (kind 0 none, 1 low, 2 high, 3 dual; the three
        # clips are mutually exclusive: low and dual need A < 0 with r < 1 - eps_low resp. r > c > 1,
        # high needs A > 0), 40 for padding; a single bincount gives every count
        u8 = torch.uint8  # every code fits in 0..40; uint8 keeps these passes cheap
        bucket = (old_logp.detach().float().exp() * 10).floor_().clamp_(0, 9).to(u8)
        kind = (
            surrogate.clipped_low.to(u8)
            + surrogate.clipped_high.to(u8) * 2
            + surrogate.clipped_dual.to(u8) * 3
        )
        code = (bucket + kind * 10).masked_fill_(~m, 40)
        counts = torch.bincount(code.reshape(-1), minlength=41)[:40].reshape(4, 10)
    vals = counts.tolist()
    out: dict[str, float] = {}
    for k in range(10):
        b = f"clip_by_prob/p{k}"
        out[f"{b}/tokens"] = float(vals[0][k] + vals[1][k] + vals[2][k] + vals[3][k])
        out[f"{b}/low"] = float(vals[1][k])
        out[f"{b}/high"] = float(vals[2][k])
        out[f"{b}/dual"] = float(vals[3][k])
    return out


# --------------------------------------------------------------------------------------------
# the policy-loss and weighting tables: ``fn(batch, mask, config, generator) -> (TokenLoss,
# SurrogateResult)`` and ``fn(batch, mask, config, surrogate, generator) -> Weighting``.


@dataclass(kw_only=True)
class ClipCovParams(NoParams):
    clip_cov_ratio: float = 2e-4
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0

    def validate(self) -> None:
        check_range("clip_cov_ratio", self.clip_cov_ratio, 0.0, 1.0)
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ValueError("clip_cov_lb must be < clip_cov_ub")
        if getattr(self, "clip_c", None) is not None:
            raise ValueError("clip_cov applies no dual clip; clip_c must be None")
        super().validate()


@dataclass(kw_only=True)
class KLCovParams(NoParams):
    kl_cov_ratio: float = 2e-3
    kl_cov_coef: float = 1.0

    def validate(self) -> None:
        check_range("kl_cov_ratio", self.kl_cov_ratio, 0.0, 1.0)
        check_range("kl_cov_coef", self.kl_cov_coef, 0.0)
        super().validate()


@dataclass(kw_only=True)
class ForkingParams(NoParams):
    rho: float = 0.2

    def validate(self) -> None:
        check_range("rho", self.rho, 0.0, 1.0, lo_open=True)
        super().validate()


@dataclass(kw_only=True)
class QuadrantParams(NoParams):
    """``target`` quadrant (required), ``action`` mask / upweight (``factor``) of ``fraction`` of
    its tokens, selected ``by`` prob (pi > ``high_prob`` / < ``low_prob``) or delta (Eq. 8)."""

    target: str = dataclasses.MISSING  # type: ignore[assignment]
    action: str = "mask"
    fraction: float = 0.1
    factor: float = 2.0
    by: str = "prob"
    high_prob: float = 0.8
    low_prob: float = 0.2

    def validate(self) -> None:
        check_choice("target", self.target, QUADRANTS)
        check_choice("action", self.action, ("mask", "upweight"))
        check_choice("by", self.by, ("prob", "delta"))
        check_range("fraction", self.fraction, 0.0, 1.0)
        check_range("factor", self.factor, 0.0)
        if not 0.0 <= self.low_prob <= self.high_prob <= 1.0:
            raise ValueError("need 0 <= low_prob <= high_prob <= 1")
        super().validate()


def _vanilla_surrogate(batch, mask, c) -> SurrogateResult:
    return clipped_surrogate(
        batch.logp,
        batch.old_logp,
        batch.advantages,
        mask,
        eps_low=c.eps_low,
        eps_high=c.eps_high,
        clip_c=c.clip_c,  # None for Clip-Cov (ClipCovParams: no dual clip)
        log_ratio_clamp=c.log_ratio_clamp,
        check_finite=False,
    )


def _kl_cov_surrogate(batch, mask, c) -> SurrogateResult:
    dt = torch.promote_types(batch.logp.dtype, torch.float32)
    ratio = torch.exp(log_ratio(batch.logp.detach().to(dt), batch.old_logp.to(dt), mask, c.log_ratio_clamp))
    none = torch.zeros_like(mask)
    return SurrogateResult(torch.zeros_like(ratio), ratio, none, none, none)


@register_policy_loss("vanilla", surrogate=_vanilla_surrogate)
def vanilla(batch, mask, c, generator):
    """Clipped surrogate (Eq. 2): decoupled clip eps_low/eps_high, optional dual clip c.

    :func:`clipped_surrogate` as the method's per-token loss, no weights, the standard metrics.
    """
    s = _vanilla_surrogate(batch, mask, c)
    return TokenLoss(s.loss_mat, None, standard_metrics(mask, surrogate=s, entropy=batch.entropy)), s


@register_policy_loss(
    "clip_cov",
    surrogate=_vanilla_surrogate,
    params=ClipCovParams,
    requires=frozenset({"generator"}),
    metrics={"clip_cov/selected_frac": "token_mean"},
)
def clip_cov(batch, mask, c, generator):
    """Clip-Cov: PPO clip, a random share of the high-covariance tokens gets no gradient.

    Clip-Cov (Cui et al. 2025; spec methods.md §1.2; paper Table 1 baseline "Clip-Cov"): the
    PPO-clipped loss ``max(-A r, -A clip(r))`` (no dual clip) with the selected tokens' loss
    multiplied by 0 (:func:`clip_cov_select`, drawn with the method's ``generator``). Defaults:
    ratio 2e-4, bounds (1, 5), PPO clip 1/1 (the reference scripts). The token weight reported is
    the 0/1 keep mask. Extra metric: ``clip_cov/selected_frac``.
    """
    s = _vanilla_surrogate(batch, mask, c)  # clip_c is None (ClipCovParams)
    sel = clip_cov_select(
        batch.logp,
        batch.advantages,
        mask,
        already_clipped=s.clipped_low | s.clipped_high,
        clip_cov_ratio=c.clip_cov_ratio,
        clip_cov_lb=c.clip_cov_lb,
        clip_cov_ub=c.clip_cov_ub,
        generator=generator,
    )
    keep = (~sel).to(s.loss_mat.dtype)
    metrics = standard_metrics(mask, surrogate=s, entropy=batch.entropy, weight=keep)
    metrics["clip_cov/selected_frac"] = float(sel.sum()) / max(int(mask.sum()), 1)
    return TokenLoss(s.loss_mat * keep, keep, metrics), s


@register_policy_loss(
    "kl_cov", surrogate=_kl_cov_surrogate, params=KLCovParams, metrics={"kl_cov/selected_frac": "token_mean"}
)
def kl_cov(batch, mask, c, generator):
    """KL-Cov: no clip, |log r| penalty on the top-covariance tokens.

    KL-Cov (Cui et al. 2025; spec methods.md §1.3; paper Table 1 baseline "KL-Cov"): every token's
    loss is ``-A r``; the selected top-Cov tokens (:func:`kl_cov_select`) get
    ``-A r + kl_cov_coef * |logp - old_logp|``. Defaults k = 2e-3 (Qwen2.5-7B; 2e-4 for 32B),
    beta = 1. Extra metric ``kl_cov/selected_frac``. The surrogate has no clip (nothing is clipped).
    """
    dt = torch.promote_types(batch.logp.dtype, torch.float32)
    zero = torch.zeros((), dtype=dt, device=batch.logp.device)
    adv = torch.where(mask, batch.advantages.detach().to(dt), zero)
    lr_ = log_ratio(batch.logp.to(dt), batch.old_logp.to(dt), mask, c.log_ratio_clamp)
    ratio = torch.exp(lr_)
    sel = kl_cov_select(batch.logp, batch.advantages, mask, kl_cov_ratio=c.kl_cov_ratio)
    loss_mat = -adv * ratio + torch.where(sel, c.kl_cov_coef * lr_.abs(), zero)
    loss_mat = torch.where(mask, loss_mat, zero)
    none = torch.zeros_like(mask)
    s = SurrogateResult(loss_mat, ratio.detach(), none, none, none)
    metrics = standard_metrics(mask, surrogate=s, entropy=batch.entropy)
    metrics["kl_cov/selected_frac"] = float(sel.sum()) / max(int(mask.sum()), 1)
    return TokenLoss(loss_mat, None, metrics), s


@register_weighting(
    "forking",
    params=ForkingParams,
    requires=frozenset({"entropy"}),
    metrics={"forking/selected_frac": "token_mean"},
)
def forking(batch, mask, c, surrogate, generator) -> Weighting:
    """Forking tokens: only the top-rho entropy tokens are trained.

    Forking tokens / 80-20 rule (Wang et al. 2025; spec §7; paper Table 3 "Forking Tokens"): weight
    1 on the top-``rho`` entropy tokens (:func:`forking_token_mask`, the current policy's entropy),
    0 elsewhere. The aggregation counts the *selected* tokens only (``loss_mask``): token-mean
    divides by their number, and a global ``num_tokens`` is scaled by ``rho``
    (``num_tokens_scale``; exact up to the ceil rounding of each micro-batch's selection). Extra
    metric ``forking/selected_frac``.
    """
    top = forking_token_mask(batch.entropy, mask, rho=c.rho)
    frac = float(top.sum()) / max(int(mask.sum()), 1)
    return Weighting(
        top.to(surrogate.loss_mat.dtype),
        {"forking/selected_frac": frac},
        loss_mask=top,
        num_tokens_scale=float(c.rho),
    )


def _quadrant_requires(c) -> frozenset:
    return frozenset({"generator", "entropy"}) if c.by == "delta" else frozenset({"generator"})


@register_weighting(
    "quadrant",
    params=QuadrantParams,
    requires=_quadrant_requires,
    metrics={"quadrant/selected": "sum", "intervention/*/count": "sum"},
)
def quadrant(batch, mask, c, surrogate, generator) -> Weighting:
    """Quadrant intervention: mask or up-weight a share of one quadrant's tokens.

    Paper Figure 6 and appendix D.2: :func:`quadrant_weights` on :func:`assign_quadrants` (the
    probability used for ``by="prob"`` is the current policy's, detached). Extra metrics
    ``quadrant/selected`` (a count) and ``intervention/{q}/count``: the per-quadrant token counts
    under the intervention's own criterion ``by`` (the standard ``quadrant/{q}/count`` keys always
    use sign(A) and sign(delta); ``Method`` adds them when an entropy is available).
    """
    q = assign_quadrants(
        batch.advantages,
        mask,
        logp=batch.logp,
        entropy=batch.entropy,
        by=c.by,
        high_prob=c.high_prob,
        low_prob=c.low_prob,
    )
    w, sel = quadrant_weights(
        q, target=c.target, action=c.action, fraction=c.fraction, factor=c.factor, generator=generator
    )
    metrics = {"quadrant/selected": float(sel.sum())}
    metrics.update({k.replace("quadrant/", "intervention/", 1): v for k, v in quadrant_metrics(q).items()})
    return Weighting(w, metrics)
