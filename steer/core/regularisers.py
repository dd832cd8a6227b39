"""The regularisers every method carries: the entropy bonus (fixed coefficient, or Skywork-OR1's
adaptive controller) and the KL penalty against a reference policy (spec methods.md §11-12; paper
appendix B Table 3). Each term is aggregated by :func:`steer.core.aggregation.aggregate` with the
policy loss's mode and normalisers."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steer.core.aggregation import aggregate
from steer.core.types import Normalisers, as_bool_mask, check_same_shape, masked_mean_float

__all__ = [
    "KL_TYPES",
    "AdaptiveEntropyController",
    "entropy_bonus_loss",
    "kl_penalty",
    "kl_penalty_loss",
]

KL_TYPES = ("k1", "abs", "k2", "k3", "k1+", "abs+", "k3+")


# --------------------------------------------------------------------------------------------
# entropy regularisation (fixed and Skywork-OR1 adaptive)


def entropy_bonus_loss(
    entropy: Tensor,
    response_mask: Tensor,
    coef: float,
    loss_agg_mode: str = "token-mean",
    normalisers: Normalisers | None = None,
) -> Tensor:
    """Entropy regulariser term ``-coef * agg(H)`` to add to the policy loss (spec §11).

    ``entropy`` keeps its graph (full-vocabulary entropy of the training forward pass).
    Paper appendix B Table 3 "Entropy Regularization". ``coef = 0`` returns an exact 0.
    """
    if not math.isfinite(coef):
        raise ValueError(f"entropy coefficient must be finite, got {coef!r}")
    return -coef * aggregate(entropy, response_mask, loss_agg_mode, normalisers)


class AdaptiveEntropyController:
    """Skywork-OR1 adaptive entropy coefficient (spec methods.md §11, ``EntController``).

    Once per training step, with ``H^_k = -mean(old_logp)`` over the step's response tokens (a
    Monte-Carlo entropy estimate from the sampled-token NLL): ``c <- c + delta`` if
    ``H^_k < target`` else ``c - delta``, clipped to ``[coef_min, coef_max]``. The loss uses
    ``c_realised = c * 1[H^_k < target]``: the bonus is off whenever entropy is above target.
    Here :meth:`update` is called after step k's actor update (``Method.on_step_end``), so the
    coefficient and gate used in step k+1's loss come from the estimate of step k.
    Defaults are the released scripts' (target 0.2, delta 1e-4, c in [0, 0.005], initial 0).
    """

    def __init__(
        self,
        target: float = 0.2,
        delta: float = 1e-4,
        coef_init: float = 0.0,
        coef_min: float = 0.0,
        coef_max: float = 0.005,
    ) -> None:
        if not (coef_min <= coef_max) or delta < 0:
            raise ValueError(f"need coef_min <= coef_max and delta >= 0, got {coef_min}, {coef_max}, {delta}")
        self.target = float(target)
        self.delta = float(delta)
        self.coef_min = float(coef_min)
        self.coef_max = float(coef_max)
        self.coef = float(min(max(coef_init, coef_min), coef_max))
        self.last_estimate: float | None = None

    @property
    def gate(self) -> bool:
        """1[H^ < target] for the last estimate (True before the first update)."""
        return self.last_estimate is None or self.last_estimate < self.target

    @property
    def realised_coef(self) -> float:
        return self.coef if self.gate else 0.0

    def update(self, entropy_estimate: float) -> float:
        """Apply the +-delta rule for one step's estimate; returns the new realised coefficient."""
        e = float(entropy_estimate)
        if not math.isfinite(e):
            raise ValueError(f"entropy estimate must be finite, got {entropy_estimate!r}")
        self.last_estimate = e
        self.coef = self.coef + self.delta if e < self.target else self.coef - self.delta
        self.coef = min(max(self.coef, self.coef_min), self.coef_max)
        return self.realised_coef

    @staticmethod
    def estimate(old_logp: Tensor, response_mask: Tensor) -> float:
        """``-mean(old_logp)`` over valid tokens (0.0 when none)."""
        m = as_bool_mask(response_mask)
        return -masked_mean_float(old_logp.detach(), m, 0.0)

    def state_dict(self) -> dict:
        return {"coef": self.coef, "last_estimate": self.last_estimate}

    def load_state_dict(self, state: dict) -> None:
        self.coef = float(state["coef"])
        self.last_estimate = None if state.get("last_estimate") is None else float(state["last_estimate"])


# --------------------------------------------------------------------------------------------
# KL penalty


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-token KL estimators against a reference policy (spec methods.md §12), d = logp - ref_logp.

    ``k1``: d; ``abs``: |d|; ``k2``: d^2 / 2; ``k3`` (low-variance): exp(-d) + d - 1 with -d clamped
    to [-20, 20] and the result to [-10, 10]. ``"<name>+"``: forward value of <name>, gradient of
    k2 (straight-through), k2 being the estimator whose gradient is unbiased.
    """
    if kind not in KL_TYPES:
        raise ValueError(f"unknown KL type {kind!r}; valid: {list(KL_TYPES)}")
    check_same_shape(logp=logp, ref_logp=ref_logp)
    dt = torch.promote_types(logp.dtype, torch.float32)
    d = logp.to(dt) - ref_logp.detach().to(dt)
    base = kind.rstrip("+")
    if base == "k1":
        v = d
    elif base == "abs":
        v = d.abs()
    elif base == "k2":
        v = 0.5 * d.square()
    else:
        nd = (-d).clamp(-20.0, 20.0)
        v = (torch.exp(nd) - nd - 1.0).clamp(-10.0, 10.0)
    if kind.endswith("+"):
        k2 = 0.5 * d.square()
        v = k2 + (v - k2).detach()
    return v


def kl_penalty_loss(
    logp: Tensor,
    ref_logp: Tensor,
    response_mask: Tensor,
    coef: float,
    kind: str = "k3",
    loss_agg_mode: str = "token-mean",
    normalisers: Normalisers | None = None,
) -> tuple[Tensor, float]:
    """``coef * agg(kl)`` (KL as loss, verl ``use_kl_loss``); returns (term, mean kl over valid tokens).

    NaN/inf on padded positions never reach the gradient.
    """
    m = as_bool_mask(response_mask)
    zero_lp = torch.zeros((), dtype=logp.dtype, device=logp.device)
    lp = torch.where(m, logp, zero_lp)
    ref = torch.where(m, ref_logp.detach(), torch.zeros((), dtype=ref_logp.dtype, device=ref_logp.device))
    kl = kl_penalty(lp, ref, kind)
    term = coef * aggregate(kl, m, loss_agg_mode, normalisers)
    return term, masked_mean_float(kl.detach(), m, 0.0)
