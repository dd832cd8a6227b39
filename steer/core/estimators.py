"""Per-token entropy-change estimators (paper section 3.1, spec methods.md §1.1 and §13).

Every function here is elementwise over any shape ``(...)`` (except :func:`omega_cov`, which
centres over the valid tokens of the batch it is given). Inputs are expected detached; the
functions detach them anyway, so an estimate can never carry a gradient into the policy.
Outputs are floating tensors: float64 when an input is float64, otherwise float32.

Sign convention: every ``omega_*`` is an estimate of the entropy change
``Delta H = H(pi^{k+1}) - H(pi^k)`` of the token's next-token distribution caused by one update
step (Omega > 0: entropy rises).

Notation: ``pi = exp(logp)`` is the probability of the sampled token o under the current policy,
``H`` the full-vocabulary entropy, ``w`` the per-token policy-gradient weight of Theorem 1,
``w = I_clip * r * A`` (:func:`token_weight_w`), ``lr`` the learning rate eta,
``P2 = sum_v pi_v^2`` and ``S2 = sum_v pi_v^2 log pi_v`` (from :mod:`steer.core.stats`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from steer.core.types import as_bool_mask, check_same_shape

__all__ = [
    "ESTIMATORS",
    "PER_STATE_ESTIMATORS",
    "Estimator",
    "clip_indicator",
    "delta_indicator",
    "estimate_entropy_change",
    "estimator",
    "omega_cov",
    "omega_exact",
    "omega_paper",
    "omega_reference",
    "token_weight_w",
]

#: Clamp bounds of the released STEER code (spec §13.3): pi in [1e-8, 1 - 1e-8], pi_old in [1e-8, 1].
_REF_PI_MIN = 1e-8
_REF_PI_MAX = 1.0 - 1e-8


def _f(x: Tensor | float) -> Tensor:
    """Detached floating copy: float64 stays float64, every other dtype becomes float32."""
    if not isinstance(x, Tensor):
        return torch.as_tensor(x, dtype=torch.float32)
    x = x.detach()
    if x.dtype == torch.float64:
        return x
    return x.float()


def _lr(lr: Tensor | float, like: Tensor) -> Tensor | float:
    if isinstance(lr, Tensor):
        return lr.detach().to(like.dtype)
    return float(lr)


def delta_indicator(logp: Tensor, entropy: Tensor) -> Tensor:
    """Token-level entropy-change indicator delta(a|s) of the paper's Eq. 8.

    ``delta = -pi * (1 - pi)^2 * (log pi + H)``; with Eq. 9 the paper writes
    ``Omega = eta * E_a[w * delta / pi]``. The sign of ``-(log pi + H)`` is the "four-quadrant"
    rule: a step that raises a token more probable than ``exp(-H)`` lowers the entropy.
    """
    check_same_shape(logp=logp, entropy=entropy)
    lp, h = _f(logp), _f(entropy)
    p = lp.exp()
    return -p * (1.0 - p).square() * (lp + h)


def omega_paper(w: Tensor, logp: Tensor, entropy: Tensor, lr: Tensor | float) -> Tensor:
    """Omega of Theorem 1 / Eq. 7 (appendix C, Eq. 14), evaluated at the sampled token.

    ``Omega = -lr * w * (1 - pi)^2 * (log pi + H)``, no clamping (the paper's printed form).
    Note (spec §13.2): this is *not* the first-order expansion of a logit-space step on
    ``w * log pi_o``; it equals the single-token form ``-lr w pi (1 - pi)(log pi + H)`` times
    ``(1 - pi) / pi``. See :func:`omega_exact` for the first-order value.
    """
    check_same_shape(w=w, logp=logp, entropy=entropy)
    ww, lp, h = _f(w), _f(logp), _f(entropy)
    p = lp.exp()
    return -_lr(lr, lp) * ww * (1.0 - p).square() * (lp + h)


def omega_reference(
    advantages: Tensor,
    logp: Tensor,
    old_logp: Tensor,
    old_entropy: Tensor,
    lr: Tensor | float = 1.0,
) -> Tensor:
    """The entropy-change metric of the authors' released code (spec methods.md §13.3).

    ``Omega = -lr * (A / pi_old) * pi * (1 - pi) * (log pi + H_old)``, with ``pi`` clamped to
    ``[1e-8, 1 - 1e-8]`` and ``pi_old`` to ``[1e-8, 1]`` exactly as the released code does; ``H_old``
    is the rollout (old) policy's entropy. The released code has no clip indicator and uses the
    absolute value only; the leading minus sign here makes the signed value an estimate of
    ``Delta H`` (at ``r = pi / pi_old`` this is ``-lr * r * A * (1 - pi) * (log pi + H_old)``).
    """
    check_same_shape(advantages=advantages, logp=logp, old_logp=old_logp, old_entropy=old_entropy)
    a, lp, olp, h = _f(advantages), _f(logp), _f(old_logp), _f(old_entropy)
    p = lp.exp().clamp(min=_REF_PI_MIN, max=_REF_PI_MAX)
    p_old = olp.exp().clamp(min=_REF_PI_MIN, max=1.0)
    return -_lr(lr, lp) * (a / p_old) * p * (1.0 - p) * (p.log() + h)


def omega_exact(
    w: Tensor,
    logp: Tensor,
    entropy: Tensor,
    sum_p2: Tensor,
    sum_p2_logp: Tensor,
    lr: Tensor | float,
) -> Tensor:
    """First-order entropy change of a softmax under a logit step on ``w * log pi_o`` (spec §13.1).

    With ``Delta z = lr * w * (e_o - pi)`` and ``dH/dz_k = -pi_k (log pi_k + H)``:
    ``Omega = -lr * w * [pi (log pi + H) - (S2 + H * P2)]``, where
    ``S2 + H P2 = sum_j pi_j^2 (log pi_j + H)``. Error O(lr^2) in the tabular model (Assumption 1).
    """
    check_same_shape(w=w, logp=logp, entropy=entropy, sum_p2=sum_p2, sum_p2_logp=sum_p2_logp)
    ww, lp, h, p2, s2 = _f(w), _f(logp), _f(entropy), _f(sum_p2), _f(sum_p2_logp)
    p = lp.exp()
    return -_lr(lr, lp) * ww * (p * (lp + h) - (s2 + h * p2))


def omega_cov(
    logp: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    lr: Tensor | float = 1.0,
) -> Tensor:
    """Batch-centred covariance proxy of Cui et al. (spec methods.md §1.1), as Clip-Cov/KL-Cov use it.

    ``Omega_i = -lr * (l_i - mean_j l_j) * (A_i - mean_j A_j)``, the means taken over the valid
    tokens (``mask`` True; ``None`` means all tokens). Masked tokens get 0; an all-masked batch
    gives all zeros. Unlike the other estimators this is not a per-state quantity.
    """
    check_same_shape(logp=logp, advantages=advantages, mask=mask)
    lp, a = _f(logp), _f(advantages)
    m = torch.ones_like(lp, dtype=torch.bool) if mask is None else as_bool_mask(mask)
    n = m.sum()
    if int(n) == 0:
        return torch.zeros_like(lp)
    # Centre in float64 so that equal advantages give a centred value of (almost exactly) 0.
    zero = torch.zeros((), dtype=torch.float64, device=lp.device)
    lp_v = torch.where(m, lp.double(), zero)
    a_v = torch.where(m, a.double(), zero)
    mean_l = lp_v.sum() / n
    mean_a = a_v.sum() / n
    cov = (lp_v - mean_l) * (a_v - mean_a)
    return torch.where(m, -_lr(lr, lp_v) * cov, zero).to(lp.dtype)


def clip_indicator(
    ratio: Tensor,
    advantages: Tensor,
    eps_low: float | None,
    eps_high: float | None,
    clip_c: float | None = None,
) -> Tensor:
    """I_clip of Eq. 6, with the dual clip: 0 where the clipped surrogate passes no gradient, 1 where
    it does.

    0 when ``A > 0 and r > 1 + eps_high``, ``A < 0 and r < 1 - eps_low``, or (dual clip, ``clip_c``
    set) ``A < 0 and r > clip_c``, where the loss is capped at the constant ``-clip_c A``; 1
    otherwise. ``None`` for a bound means the loss has no such clip (KL-Cov has none at all).
    """
    check_same_shape(ratio=ratio, advantages=advantages)
    r, a = _f(ratio), _f(advantages)
    below = None if eps_low is None else r < 1.0 - eps_low
    capped = None if clip_c is None else r > clip_c
    neg = _either(below, capped)  # the ratios at which a token with A < 0 passes no gradient
    blocked = _either(
        None if eps_high is None else (a > 0) & (r > 1.0 + eps_high),
        None if neg is None else (a < 0) & neg,
    )
    return torch.ones_like(r) if blocked is None else (~blocked).to(r.dtype)


def _either(x: Tensor | None, y: Tensor | None) -> Tensor | None:
    """``x | y`` of two bool masks, either of which may be absent (None)."""
    if x is None or y is None:
        return y if x is None else x
    return x | y


def token_weight_w(
    ratio: Tensor,
    advantages: Tensor,
    eps_low: float | None,
    eps_high: float | None,
    clip_c: float | None = None,
) -> Tensor:
    """Theorem 1's per-token policy-gradient weight ``w = I_clip * r * A`` (Eq. 5-7), the one place
    it is written: ``w = -dL/d log pi`` of the clipped surrogate, so the dual clip (``clip_c``)
    blocks it too (:func:`clip_indicator`)."""
    r, a = _f(ratio), _f(advantages)
    return clip_indicator(r, a, eps_low, eps_high, clip_c) * r * a


@dataclass(frozen=True)
class Estimator:
    """One row of the estimator table.

    - ``fn``: the estimator (keyword arguments as its signature);
    - ``of_batch``: ``(w, batch, mask, lr) -> Omega`` from a :class:`steer.core.types.LossBatch`
      (``w`` = Theorem 1's weight, None when ``needs_w`` is False);
    - ``requires``: what it reads from the batch beyond logp / old_logp / advantages (names of
      :data:`steer.core.parts.REQUIREMENTS`);
    - ``needs_w``: it is fed ``w = I_clip r A``;
    - ``per_state``: a per-state (per-token) estimate; ``cov`` is centred over the batch, so no
      token weighting offers it.
    """

    fn: Callable[..., Tensor]
    of_batch: Callable[..., Tensor]
    requires: frozenset[str]
    needs_w: bool = True
    per_state: bool = True


#: The estimator table: ``paper`` (Eq. 7), ``reference`` (released code, spec §13.3), ``exact``
#: (first-order, spec §13.1), ``cov`` (Cui et al., spec §1.1). Every dispatch reads it.
ESTIMATORS: dict[str, Estimator] = {
    "paper": Estimator(
        omega_paper, lambda w, b, m, lr: omega_paper(w, b.logp, b.entropy, lr), frozenset({"entropy"})
    ),
    "reference": Estimator(
        omega_reference,
        lambda w, b, m, lr: omega_reference(b.advantages, b.logp, b.old_logp, b.old_entropy, lr=lr),
        frozenset({"old_entropy"}),
        needs_w=False,
    ),
    "exact": Estimator(
        omega_exact,
        lambda w, b, m, lr: omega_exact(w, b.logp, b.entropy, b.sum_p2, b.sum_p2_logp, lr),
        frozenset({"entropy", "sums"}),
    ),
    "cov": Estimator(
        omega_cov,
        lambda w, b, m, lr: omega_cov(b.logp, b.advantages, m, lr=lr),
        frozenset(),
        needs_w=False,
        per_state=False,
    ),
}

#: The per-state estimators (what a token weighting may choose).
PER_STATE_ESTIMATORS = tuple(n for n, e in ESTIMATORS.items() if e.per_state)


def estimator(name: str, valid=None) -> Estimator:
    """The table row ``name``; an unknown name raises ValueError listing the valid ones."""
    valid = sorted(ESTIMATORS) if valid is None else list(valid)
    if name not in valid:
        raise ValueError(f"unknown entropy-change estimator {name!r}; valid: {valid}")
    return ESTIMATORS[name]


def estimate_entropy_change(name: str, **kwargs) -> Tensor:
    """Dispatch to ``ESTIMATORS[name].fn(**kwargs)``; an unknown name raises ValueError listing the valid ones."""
    return estimator(name).fn(**kwargs)
