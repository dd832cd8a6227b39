"""Token weightings on each token's *cause* of the mini-batch's entropy change: ``steer_causal``
and the closed-loop ``entropy_band``. Both are this project's own methods, not from a paper.

STEER's Omega (Eq. 7) counts only a token's effect on the entropy of its own state. Through the
shared parameters a token's update moves the entropy of every state of the batch. The cause of
token t is its first-order contribution to the change of the mini-batch's total entropy
``H_mb = sum_s H_s`` under the optimiser step:

    c_t = u_t * g_t,   u_t = coef_t * w_t,   g_t = <grad log pi_t, P grad H_mb>

with ``w_t = I_clip r_t A_t`` (Theorem 1, from the surrogate's own masks), ``coef_t`` the token's
coefficient in the aggregated loss (:func:`steer.core.aggregation.token_coefficients`) and ``P``
the optimiser's linearised step (learning rate included). The caller supplies ``g_t`` as
``LossBatch.token_cause`` (a model is needed: one backward for ``grad H_mb`` and one forward-mode
pass, ``steer.train.jvp``) and, for the band, ``LossBatch.cause_offset``: the first-order
change from the part of the step that no weight controls (Adam's momentum, weight decay). The
predicted change of ``H_mb`` under token weights ``lambda`` is then linear in them:

    pred(lambda) = offset + sum_t lambda_t c_t.

- ``steer_causal``: ``steer_directional``'s mappings on ``c_t``: only tokens with ``c_t < 0``
  (their update lowers the batch's entropy) are damped, exp in ``|c_t|`` with ``lambda_min`` at the
  most negative over the mini-batch, or the ``rho`` share most negative get ``lambda_min``.
- ``entropy_band``: per mini-batch, weights 1 (exactly the surrogate's loss) when the predicted
  change lies in ``[-b H_mb, +b H_mb]``; otherwise the tokens pushing the prediction out of the
  band (``c_t < 0`` below it, ``c_t > 0`` above it) are damped with the smallest strength that
  brings the prediction to the band's edge (a 1-D search), down to ``lambda_floor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from steer.core.aggregation import token_coefficients
from steer.core.parts import NoParams, Weighting, check_choice, check_range, register_weighting
from steer.core.steer import DirectionalMapping, directional_weighting, neg_max
from steer.core.types import Normalisers

__all__ = [
    "BAND_MAPPINGS",
    "BandParams",
    "BandSolution",
    "CausalParams",
    "band_solve",
    "band_weights",
    "cause_coefficients",
    "entropy_band",
    "steer_causal",
    "token_cause",
]

BAND_MAPPINGS = ("exp", "quantile")


def _requires(c) -> frozenset:
    return frozenset({"entropy", "cause"})


def _weight_dtype(lam: Tensor, batch) -> Tensor:
    """The float64 weights in the loss's dtype: float64 for a float64 batch, else float32."""
    return lam.to(batch.logp.dtype if batch.logp.dtype == torch.float64 else torch.float32)


def cause_coefficients(batch, mask: Tensor, config, surrogate) -> Tensor:
    """(B, T) float64 ``u_t = coef_t * w_t = -d L / d log pi_t`` of the unweighted surrogate's
    aggregated loss L (``w = I_clip r A``, ``coef`` the aggregation's), 0 on padding: the policy
    gradient is ``-sum_t u_t grad log pi_t``."""
    w = surrogate.token_weight(batch.advantages).double()
    coef = token_coefficients(mask, config.loss_agg_mode, Normalisers.of(batch, config.loss_scale_factor)).to(
        w.device
    )
    u = coef * w
    return torch.where(mask.to(u.device), u, torch.zeros((), dtype=u.dtype, device=u.device))


def token_cause(batch, mask: Tensor, config, surrogate) -> Tensor:
    """(B, T) float64 ``c_t = u_t * g_t`` (module docstring; :func:`cause_coefficients`), 0 on
    padding: the first-order contribution of token t's own gradient to the change of the
    mini-batch's total entropy, with ``g_t = batch.token_cause``."""
    u = cause_coefficients(batch, mask, config, surrogate)
    g = batch.token_cause.detach().to(device=u.device, dtype=torch.float64)
    return torch.where(mask.to(u.device), u * g, torch.zeros((), dtype=u.dtype, device=u.device))


# --------------------------------------------------------------------------------------------
# steer_causal


@dataclass(kw_only=True)
class CausalParams(DirectionalMapping):
    """``steer_causal``: ``steer_directional``'s mappings (:class:`steer.core.steer.DirectionalMapping`:
    ``lambda_min``, ``mapping``, ``rho``, ``scope``) on the per-token cause ``c_t``; the scope
    statistic is ``{"cause_neg_max"}``."""


def _causal_scope(batch, mask: Tensor, c, surrogate) -> dict[str, Tensor]:
    if c.scope == "microbatch":
        return {}
    with torch.no_grad():
        return {"cause_neg_max": neg_max(token_cause(batch, mask, c, surrogate), mask)}


@register_weighting(
    "steer_causal",
    params=CausalParams,
    requires=_requires,
    surrogates=("vanilla", "clip_cov"),
    scope_stats=_causal_scope,
    metrics={"steer_causal/neg_frac": "token_mean", "steer_causal/cause_neg_max": "max"},
)
def steer_causal(batch, mask, c, surrogate, generator) -> Weighting:
    """Damp only the tokens whose own gradient lowers the mini-batch's entropy (c_t < 0)."""
    cause = token_cause(batch, mask, c, surrogate)
    lam, metrics = directional_weighting(cause, batch, mask, c, "steer_causal", "cause_neg_max")
    return Weighting(_weight_dtype(lam, batch), metrics)


# --------------------------------------------------------------------------------------------
# entropy_band


@dataclass(kw_only=True)
class BandParams(NoParams):
    """``entropy_band``: keep the predicted entropy change of every optimiser step in a band.

    - ``band`` b > 0: the band is ``|pred| <= b * H_mb`` (``H_mb`` the mini-batch's total
      current-policy entropy), i.e. the mean entropy may move by at most the fraction b of itself
      per optimiser step (first order).
    - ``mapping``: 'exp' (``lambda_t = s^(d_t / D)`` on the damped side, d = |c_t|, D its max: the
      most extreme token gets the strength s, searched in [``lambda_floor``, 1]) or 'quantile'
      (the k most extreme tokens of the damped side get ``lambda_floor``, k searched).
    - ``lambda_floor`` in (0, 1): the controller's authority (the smallest weight it may give).
    - ``scope``: 'minibatch' only (the prediction is a sum over the whole mini-batch).
    """

    band: float = 0.001
    mapping: str = "exp"
    lambda_floor: float = 0.1
    scope: str = "minibatch"

    def validate(self) -> None:
        check_range("band", self.band, 0.0, lo_open=True)
        check_choice("mapping", self.mapping, BAND_MAPPINGS)
        check_range("lambda_floor", self.lambda_floor, 0.0, 1.0, lo_open=True, hi_open=True)
        check_choice("scope", self.scope, ("minibatch",))
        super().validate()


@dataclass(frozen=True)
class BandSolution:
    """The band controller's choice for one mini-batch.

    - ``side``: 0 (prediction inside the band or unknown: weights 1), -1 (below: damp c < 0),
      +1 (above: damp c > 0).
    - ``strength``: exp: the weight s of the most extreme token; quantile: ``lambda_floor``
      (1.0 when ``side == 0``).
    - ``dmax``: exp: the largest |c| of the damped side (D); ``threshold``: quantile: tokens of
      the damped side with |c| >= it get ``lambda_floor``.
    - ``pred_unweighted`` / ``pred``: the predicted change before and after the weights (offset
      included); ``saturated``: the floor was reached and the prediction is still outside;
      ``known``: False when the offset was unknown (no prediction, weights 1).
    """

    side: int
    strength: float
    dmax: float
    threshold: float
    pred_unweighted: float
    pred: float
    saturated: bool
    known: bool = True

    def as_stats(self) -> dict[str, Tensor]:
        t = lambda v: torch.tensor(float(v), dtype=torch.float64)  # noqa: E731
        return {
            "band_side": t(self.side),
            "band_strength": t(self.strength),
            "band_dmax": t(self.dmax),
            "band_threshold": t(self.threshold),
            "band_pred_unweighted": t(self.pred_unweighted),
            "band_pred": t(self.pred),
            "band_saturated": t(self.saturated),
            "band_known": t(self.known),
        }

    @classmethod
    def from_stats(cls, s: dict[str, Tensor]) -> BandSolution:
        f = lambda k: float(s[k])  # noqa: E731
        return cls(
            side=int(f("band_side")),
            strength=f("band_strength"),
            dmax=f("band_dmax"),
            threshold=f("band_threshold"),
            pred_unweighted=f("band_pred_unweighted"),
            pred=f("band_pred"),
            saturated=bool(f("band_saturated")),
            known=bool(f("band_known")),
        )


def _exp_pred(s: float, fixed: float, d: Tensor, sign: float, dmax: float) -> float:
    lam = torch.pow(torch.tensor(s, dtype=torch.float64), d / dmax)
    return fixed + sign * float((lam * d).sum())


def band_solve(
    cause: Tensor,
    offset: float | None,
    entropy_sum: float,
    *,
    band: float,
    mapping: str = "exp",
    lambda_floor: float = 0.1,
    iterations: int = 60,
) -> BandSolution:
    """The band controller's strength for one mini-batch.

    ``cause``: 1-D float64 ``c_t`` of every valid token of the mini-batch; ``offset``: the
    uncontrolled part of the prediction (None: unknown, the controller abstains); ``entropy_sum``:
    ``H_mb``. The band is ``[-band * H_mb, band * H_mb]``; inside it (or with ``offset`` None)
    weights stay 1. Outside, the side pushing it out is damped with the weakest strength whose
    prediction reaches the band's edge: exp by bisection on s in [lambda_floor, 1]
    (``iterations`` halvings; the prediction is monotone in s), quantile exactly (the smallest k).
    """
    check_choice("mapping", mapping, BAND_MAPPINGS)
    c = cause.detach().double().reshape(-1)
    if not bool(torch.isfinite(c).all()):
        raise ValueError("cause has non-finite values")
    total = float(c.sum())
    if offset is None:
        return BandSolution(0, 1.0, 0.0, math.inf, math.nan, math.nan, False, known=False)
    pred0 = float(offset) + total
    hi = band * float(entropy_sum)
    lo = -hi
    if lo <= pred0 <= hi:
        return BandSolution(0, 1.0, 0.0, math.inf, pred0, pred0, False)
    side = -1 if pred0 < lo else 1
    target = lo if side < 0 else hi
    sel = (c < 0) if side < 0 else (c > 0)
    d = c[sel].abs()
    sign = -1.0 if side < 0 else 1.0  # the damped tokens' contribution is sign * sum(lambda d)
    fixed = float(offset) + float(c[~sel].sum())
    if d.numel() == 0:
        return BandSolution(side, 1.0, 0.0, math.inf, pred0, pred0, True)
    dmax = float(d.max())

    def outside(p: float) -> bool:
        return p < target if side < 0 else p > target

    if mapping == "exp":
        p_floor = _exp_pred(lambda_floor, fixed, d, sign, dmax)
        if outside(p_floor):
            return BandSolution(side, lambda_floor, dmax, math.inf, pred0, p_floor, True)
        lo_s, hi_s = lambda_floor, 1.0  # pred(lo_s) inside, pred(hi_s) outside
        for _ in range(iterations):
            mid = 0.5 * (lo_s + hi_s)
            if outside(_exp_pred(mid, fixed, d, sign, dmax)):
                hi_s = mid
            else:
                lo_s = mid
        return BandSolution(side, lo_s, dmax, math.inf, pred0, _exp_pred(lo_s, fixed, d, sign, dmax), False)
    # quantile: damp the k largest |c| of the side by lambda_floor; each adds (1 - floor) * d * (-sign)
    ds, _ = torch.sort(d, descending=True)
    gain = torch.cumsum(ds, 0) * (1.0 - lambda_floor)
    preds = pred0 - sign * gain
    ok = ~(preds < target) if side < 0 else ~(preds > target)
    if not bool(ok.any()):
        return BandSolution(side, lambda_floor, dmax, float(ds[-1]), pred0, float(preds[-1]), True)
    k = int(torch.nonzero(ok)[0]) + 1
    thr = float(ds[k - 1])
    # ties at the threshold are damped too: the prediction uses every token at or above it
    n_sel = int((d >= thr).sum())
    p = pred0 - sign * float(gain[n_sel - 1])
    return BandSolution(side, lambda_floor, dmax, thr, pred0, p, False)


def band_weights(
    cause: Tensor, mask: Tensor, sol: BandSolution, *, mapping: str, lambda_floor: float
) -> Tensor:
    """(B, T) float64 weights of :class:`BandSolution` ``sol`` for ``cause`` (1 off the damped side,
    on padding, and when ``sol.side == 0``)."""
    c = cause.detach().double()
    ones = torch.ones_like(c)
    if sol.side == 0:
        return ones
    sel = mask.to(c.device) & ((c < 0) if sol.side < 0 else (c > 0))
    d = c.abs()
    if mapping == "exp":
        if sol.dmax <= 0:
            return ones
        s = torch.tensor(sol.strength, dtype=torch.float64)
        w = torch.pow(s, d / sol.dmax).clamp(min=sol.strength, max=1.0)
    else:
        w = torch.where(d >= sol.threshold, torch.full_like(c, lambda_floor), ones)
    return torch.where(sel, w, ones)


def _band_scope(batch, mask: Tensor, c, surrogate) -> dict[str, Tensor]:
    with torch.no_grad():
        cause = token_cause(batch, mask, c, surrogate)
        ent = batch.entropy.detach().double().to(cause.device)
        return {
            "cause": cause[mask.to(cause.device)].reshape(-1),
            "entropy_sum": ent[mask.to(cause.device)].sum(),
            "offset": torch.tensor(
                math.nan if batch.cause_offset is None else float(batch.cause_offset), dtype=torch.float64
            ),
        }


def _band_reduce(c, stats: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    if "band_side" in stats[0]:  # already solved (e.g. passed through twice)
        return dict(stats[0])
    cause = torch.cat([s["cause"].reshape(-1) for s in stats])
    ent = float(sum(float(s["entropy_sum"]) for s in stats))
    off = float(stats[0]["offset"])
    sol = band_solve(
        cause,
        None if math.isnan(off) else off,
        ent,
        band=c.band,
        mapping=c.mapping,
        lambda_floor=c.lambda_floor,
    )
    return sol.as_stats()


@register_weighting(
    "entropy_band",
    params=BandParams,
    requires=_requires,
    surrogates=("vanilla", "clip_cov"),
    scope_stats=_band_scope,
    scope_reduce=_band_reduce,
    metrics={
        f"band/{k}": "token_mean" for k in ("active", "below", "above", "saturated", "unknown", "strength")
    },
)
def entropy_band(batch, mask, c, surrogate, generator) -> Weighting:
    """Weights 1 while the predicted entropy change lies in the band; else damp the tokens pushing it out."""
    stats = getattr(batch, "scope_stats", None)
    if not stats or "band_side" not in stats:
        stats = _band_reduce(c, [_band_scope(batch, mask, c, surrogate)])
    sol = BandSolution.from_stats(stats)
    cause = token_cause(batch, mask, c, surrogate)
    lam = band_weights(cause, mask, sol, mapping=c.mapping, lambda_floor=c.lambda_floor)
    with torch.no_grad():
        metrics = {
            "band/active": float(sol.side != 0),
            "band/below": float(sol.side < 0),
            "band/above": float(sol.side > 0),
            "band/saturated": float(sol.saturated),
            "band/unknown": float(not sol.known),
            "band/strength": float(sol.strength),
        }
    return Weighting(_weight_dtype(lam, batch), metrics)
