"""STEER (paper section 4) as one pure function, and as a token weighting on top of any
surrogate it composes with.

The chain, per token (Theorem 1, Eq. 7 and Eq. 10):

1. the clipped surrogate (Eq. 2) gives the ratio r and the masks of the tokens whose gradient it
   blocks (lower clip, upper clip, dual clip);
2. ``w = I_clip * r * A`` (:meth:`SurrogateResult.token_weight`): 0 where the surrogate
   passes no gradient;
3. ``Omega`` from the estimator table (:data:`steer.core.estimators.ESTIMATORS`, its per-state
   rows: ``paper`` = Eq. 7 with the current entropy, ``exact`` = the first-order softmax value,
   ``reference`` = the released code's form with the old entropy);
4. ``lambda = exp(-k |Omega|)``, ``k = -ln(lambda_min) / max|Omega|`` (Eq. 10; or the ablation's
   linear / binary mappings, :func:`steer.core.weights.steer_weights`), the max taken over the
   scope: the mini-batch by default (Eq. 10), the micro-batch in the released code;
5. the weighted loss matrix ``lambda * L``.

The registered weighting :func:`steer` is steps 2-4 given a policy loss's surrogate (``Method``
composes it with the vanilla clipped loss or Clip-Cov and applies step 5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from steer.core.estimators import ESTIMATORS, PER_STATE_ESTIMATORS
from steer.core.losses import SurrogateResult
from steer.core.parts import NoParams, Weighting, check_choice, check_range, register_weighting
from steer.core.weights import (
    DIRECTIONAL_MAPPINGS,
    MAPPINGS,
    directional_weights,
    scope_max_abs,
    steer_weights,
)

__all__ = [
    "SCOPES",
    "DirectionalMapping",
    "DirectionalParams",
    "SteerFloorWarning",
    "SteerParams",
    "mapped_weights",
    "steer",
    "steer_directional",
]

SCOPES = ("microbatch", "minibatch", "global")


class SteerFloorWarning(UserWarning):
    """The floor ``max_floor`` dominates max|Omega|, so the STEER weights are (nearly) constant."""


def _warn_floor(message: str) -> None:
    warnings.warn(message, SteerFloorWarning, stacklevel=3)


@dataclass(kw_only=True)
class SteerParams(NoParams):
    """STEER's parameters (paper section 4, Eq. 10).

    - ``estimator``: 'paper' (Eq. 7 with w = I_clip r A and the current entropy), 'reference'
      (the released code's form with the old entropy, spec §13.3), 'exact' (first-order softmax
      value, spec §13.1; needs the sums).
    - ``lambda_min`` in (0, 1] (1 = exactly GRPO); ``mapping`` exp / linear / binary with
      ``lambda_max`` (linear) and ``quantile`` (binary).
    - ``scope``: where max|Omega| is taken (and min|Omega| for the linear mapping). 'minibatch'
      (Eq. 10; the default) and 'global': the caller MAX-reduces ``Method.scope_stats`` over the
      mini-batch's micro-batches (and ranks) and passes it back as ``LossBatch.scope_stats``;
      'microbatch': each micro-batch's own (the released code). The binary mapping's quantile
      cannot be combined from per-micro-batch statistics by a MAX, so it needs 'microbatch'.
    - ``max_floor``: M = max(max|Omega|, max_floor), exp mapping only (0.02 in the released code).
    - ``omega_lr``: learning rate used inside Omega; None = ``LossBatch.lr``. It cancels in the
      weights unless ``max_floor`` > 0, where it must be 1 as in the released code: with the
      optimiser's lr (~1e-6) |Omega| is ~1e-6 |w| and a 0.02 floor makes every weight ~1.
    """

    estimator: str = "paper"
    lambda_min: float = 0.7
    mapping: str = "exp"
    lambda_max: float = 1.2
    quantile: float = 0.8
    scope: str = "minibatch"
    max_floor: float = 0.0
    omega_lr: float | None = None

    def validate(self) -> None:
        check_choice("estimator", self.estimator, PER_STATE_ESTIMATORS)
        check_range("lambda_min", self.lambda_min, 0.0, 1.0, lo_open=True)
        check_choice("mapping", self.mapping, MAPPINGS)
        if self.mapping == "linear" and self.lambda_max < self.lambda_min:
            raise ValueError("lambda_max must be >= lambda_min")
        check_range("quantile", self.quantile, 0.0, 1.0)
        check_choice("scope", self.scope, SCOPES)
        if self.mapping == "binary" and self.scope != "microbatch":
            raise ValueError(
                f"scope={self.scope!r} with mapping='binary': the quantile of |Omega| over a mini-batch "
                "cannot be combined from per-micro-batch statistics by a MAX reduction; use "
                "scope='microbatch' (the quantile of each micro-batch)"
            )
        check_range("max_floor", self.max_floor, 0.0)
        if self.max_floor > 0 and self.mapping != "exp":
            raise ValueError(
                f"max_floor applies to the exp mapping only (the released code's linear mapping has no "
                f"floor); got mapping={self.mapping!r}, max_floor={self.max_floor!r}"
            )
        if self.omega_lr is not None:
            check_range("omega_lr", self.omega_lr, 0.0, lo_open=True)
        if self.max_floor > 0 and self.omega_lr is None:
            _warn_floor(
                f"max_floor={self.max_floor} with omega_lr=None: Omega is computed with the optimiser's "
                "learning rate (|Omega| ~ lr |w|, ~1e-6), so the floor dominates max|Omega| and every "
                "STEER weight is ~1 (STEER does nothing). Set omega_lr=1 as the released code does, or "
                "max_floor=0."
            )
        super().validate()


def _omega_of_batch(batch, c, surrogate: SurrogateResult) -> Tensor:
    """Per-token Omega (detached) of the estimator ``c.estimator`` (the estimator table)."""
    lr = float(batch.lr) if c.omega_lr is None else float(c.omega_lr)
    est = ESTIMATORS[c.estimator]
    w = surrogate.token_weight(batch.advantages) if est.needs_w else None
    return est.of_batch(w, batch, None, lr)


def mapped_weights(c: SteerParams, omega: Tensor, mask: Tensor, omega_max=None, omega_min=None) -> Tensor:
    """Eq. 10 (or the ablation mapping) with the mapping settings of ``c`` (``lambda_min``,
    ``mapping``, ``lambda_max``, ``quantile``, ``max_floor``): :func:`steer.core.weights.steer_weights`."""
    return steer_weights(
        omega,
        mask,
        lambda_min=c.lambda_min,
        mapping=c.mapping,
        lambda_max=c.lambda_max,
        quantile=c.quantile,
        omega_max=omega_max,
        max_floor=c.max_floor,
        omega_min=omega_min,
    )


def _lambda(omega: Tensor, mask: Tensor, c, omega_max, omega_min=None) -> tuple[Tensor, dict[str, float]]:
    """Eq. 10 (or the ablation mappings) and STEER's metrics."""
    lam = mapped_weights(c, omega, mask, omega_max, omega_min)
    with torch.no_grad():
        a = torch.where(mask, omega.abs(), torch.zeros((), dtype=omega.dtype))
        used_max = a.max() if omega_max is None else torch.as_tensor(omega_max)
        m_used = float(used_max)
        metrics = {
            "steer/omega_max": float(max(m_used, c.max_floor)),
            "steer/omega_abs_mean": float(a.sum()) / max(int(mask.sum()), 1),
        }
    if c.max_floor > 0 and 0.0 < m_used < 0.01 * c.max_floor:
        _warn_floor(
            f"STEER: max|Omega| = {m_used:.3g} is below 1% of max_floor = {c.max_floor}: the floor makes "
            f"the weights constant (min weight {float(lam[mask].min()):.6f}); check omega_lr "
            f"({c.omega_lr}) against the scale of Omega"
        )
    return lam, metrics


def _scope_omega_max(batch, mask: Tensor, c, surrogate: SurrogateResult) -> dict[str, Tensor]:
    """``{"omega_max": max|Omega|}`` (and, for the linear mapping, ``"omega_neg_min": -min|Omega|``,
    negated so that a MAX reduction gives the scope's min; -inf when no token is valid)."""
    if c.scope == "microbatch":
        return {}
    with torch.no_grad():
        omega = _omega_of_batch(batch, c, surrogate)
        out = {"omega_max": scope_max_abs(omega, mask)}
        if c.mapping == "linear":
            a = omega.detach().abs()
            a = a if a.dtype == torch.float64 else a.float()
            inf = torch.full((), float("inf"), dtype=a.dtype, device=a.device)
            out["omega_neg_min"] = -torch.where(mask, a, inf).min() if a.numel() else -inf
        return out


def _steer_requires(c) -> frozenset:
    return ESTIMATORS[c.estimator].requires


def _scope_value(batch) -> tuple:
    """(omega_max, omega_min) of the wider scope, or None where the batch is its own scope."""
    stats = getattr(batch, "scope_stats", None)
    if stats is not None and "omega_max" in stats:
        neg_min = stats.get("omega_neg_min")
        omega_min = None
        if neg_min is not None and bool(torch.isfinite(torch.as_tensor(neg_min))):
            omega_min = -torch.as_tensor(neg_min)
        return stats["omega_max"], omega_min
    return None, None


@register_weighting(
    "steer",
    params=SteerParams,
    requires=_steer_requires,
    surrogates=("vanilla", "clip_cov"),
    scope_stats=_scope_omega_max,
    omega=_omega_of_batch,
    metrics={"steer/omega_max": "max", "steer/omega_abs_mean": "token_mean"},
)
def steer(batch, mask, c, surrogate, generator) -> Weighting:
    """STEER: lambda = exp(-k |Omega|) (Eq. 10) from the surrogate's w = I_clip r A."""
    omega = _omega_of_batch(batch, c, surrogate)
    omega_max, omega_min = _scope_value(batch)
    lam, metrics = _lambda(omega, mask, c, omega_max, omega_min)
    return Weighting(lam, metrics, omega=omega)


# --------------------------------------------------------------------------------------------
# steer_directional: the project's own variant (not from a paper)


@dataclass(kw_only=True)
class DirectionalMapping(NoParams):
    """The directional mappings' parameters (``steer_directional`` on Omega, ``steer_causal`` on the
    per-token cause c_t): only tokens with a negative score are damped.

    - ``lambda_min`` in (0, 1]: the weight of the most negative token (``exp``) or of the selected
      ones (``quantile``).
    - ``mapping``: 'exp' (lambda = exp(-k |score|) over the negative tokens, lambda_min at the most
      negative) or 'quantile' (the ``rho`` share of the negative tokens that are most negative get
      lambda_min).
    - ``scope``: 'minibatch' (default) / 'global' take the most negative score over the scope
      (``Method.scope_stats``, MAX-reduced); 'microbatch' per micro-batch. The quantile rule needs
      'microbatch' (a quantile is not MAX-reducible).
    """

    lambda_min: float = 0.7
    mapping: str = "exp"
    rho: float = 0.2
    scope: str = "minibatch"

    def validate(self) -> None:
        check_range("lambda_min", self.lambda_min, 0.0, 1.0, lo_open=True)
        check_choice("mapping", self.mapping, DIRECTIONAL_MAPPINGS)
        check_range("rho", self.rho, 0.0, 1.0, lo_open=True)
        check_choice("scope", self.scope, SCOPES)
        if self.mapping == "quantile" and self.scope != "microbatch":
            raise ValueError(
                f"scope={self.scope!r} with mapping='quantile': a quantile over a mini-batch cannot be "
                "combined from per-micro-batch statistics by a MAX reduction; use scope='microbatch'"
            )
        super().validate()


@dataclass(kw_only=True)
class DirectionalParams(DirectionalMapping):
    """``steer_directional``: damp only the tokens whose Omega predicts an entropy decrease
    (:class:`DirectionalMapping` on Omega, scope statistic ``{"omega_neg_max"}``).

    - ``estimator``, ``omega_lr``: as STEER's (:class:`SteerParams`).
    """

    estimator: str = "paper"
    omega_lr: float | None = None

    def validate(self) -> None:
        check_choice("estimator", self.estimator, PER_STATE_ESTIMATORS)
        if self.omega_lr is not None:
            check_range("omega_lr", self.omega_lr, 0.0, lo_open=True)
        super().validate()


def neg_max(omega: Tensor, mask: Tensor) -> Tensor:
    """The largest ``-score`` over the valid tokens with a negative score (0 when none), detached."""
    o = omega.detach()
    o = o if o.dtype == torch.float64 else o.float()
    d = torch.where(mask & (o < 0), -o, torch.zeros((), dtype=o.dtype, device=o.device))
    return d.max() if d.numel() else torch.zeros((), dtype=o.dtype, device=o.device)


def directional_weighting(
    score: Tensor, batch, mask: Tensor, c: DirectionalMapping, name: str, key: str
) -> tuple[Tensor, dict[str, float]]:
    """:class:`DirectionalMapping` ``c`` (:func:`directional_weights`) on a per-token ``score``
    (Omega for ``steer_directional``, the cause c_t for ``steer_causal``), with the scope's largest
    ``-score`` from ``batch.scope_stats[key]`` (this batch's own when absent), and the weighting
    ``name``'s metrics ``{name}/neg_frac`` and ``{name}/{key}``."""
    wide = (getattr(batch, "scope_stats", None) or {}).get(key)
    lam = directional_weights(
        score, mask, lambda_min=c.lambda_min, mapping=c.mapping, rho=c.rho, omega_neg_max=wide
    )
    with torch.no_grad():
        n = max(int(mask.sum()), 1)
        used = neg_max(score, mask) if wide is None else torch.as_tensor(wide)
        metrics = {
            f"{name}/neg_frac": float((mask & (score.detach() < 0)).sum()) / n,
            f"{name}/{key}": float(used),
        }
    return lam, metrics


def _directional_scope(batch, mask: Tensor, c, surrogate: SurrogateResult) -> dict[str, Tensor]:
    if c.scope == "microbatch":
        return {}
    with torch.no_grad():
        return {"omega_neg_max": neg_max(_omega_of_batch(batch, c, surrogate), mask)}


@register_weighting(
    "steer_directional",
    params=DirectionalParams,
    requires=_steer_requires,
    surrogates=("vanilla", "clip_cov"),
    scope_stats=_directional_scope,
    omega=_omega_of_batch,
    metrics={"steer_directional/neg_frac": "token_mean", "steer_directional/omega_neg_max": "max"},
)
def steer_directional(batch, mask, c, surrogate, generator) -> Weighting:
    """Damp only the entropy-decreasing tokens (Omega < 0); the others keep weight 1."""
    omega = _omega_of_batch(batch, c, surrogate)
    lam, metrics = directional_weighting(omega, batch, mask, c, "steer_directional", "omega_neg_max")
    return Weighting(lam, metrics, omega=omega)
