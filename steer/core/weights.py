"""STEER token weights from per-token entropy-change estimates (paper Eq. 10 and section 5's ablation).

All mappings use ``|Omega|``, the absolute value of the estimate, as the released code does
(spec methods.md §13.3): the paper's ablation formulas are written with ``Omega`` but its Eq. 10
and the released code both use the magnitude, so a large entropy *decrease* is damped exactly like
a large increase. The statistics (max, min, quantile) are taken over the valid tokens of the tensor
passed in (its "scope"); pass ``omega_max`` to use a max over a wider scope (mini-batch, global,
or the result of a distributed all-reduce, see :func:`scope_max_abs`).

Weights are detached, float32 (float64 when ``omega`` is float64), exactly 1 on masked tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steer.core.errors import NonFiniteError
from steer.core.types import as_bool_mask, check_same_shape

__all__ = ["DIRECTIONAL_MAPPINGS", "MAPPINGS", "directional_weights", "scope_max_abs", "steer_weights"]

MAPPINGS = ("exp", "linear", "binary")


def _valid_mask(omega: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones_like(omega, dtype=torch.bool)
    check_same_shape(omega=omega, mask=mask)
    return as_bool_mask(mask).to(omega.device)


def _abs_omega(omega: Tensor, valid: Tensor) -> Tensor:
    """|Omega| as float32/float64, 0 on masked tokens; ValueError on non-finite valid entries."""
    a = omega.detach()
    a = a if a.dtype == torch.float64 else a.float()
    a = a.abs()
    bad = valid & ~torch.isfinite(a)
    if bool(bad.any()):
        raise NonFiniteError(
            f"omega has {int(bad.sum())} non-finite value(s) on valid (mask=True) tokens; "
            "check the log-probs/entropies that produced it",
            name="omega",
            count=int(bad.sum()),
        )
    return torch.where(valid, a, torch.zeros((), dtype=a.dtype, device=a.device))


def scope_max_abs(omega: Tensor, mask: Tensor | None = None) -> Tensor:
    """max |Omega| over the valid tokens (0-dim tensor; 0 when no token is valid).

    Use it to compute the max over a wider scope first (e.g. a whole mini-batch, or all-reduce it
    with ``op=MAX`` across ranks) and pass the result as ``steer_weights(..., omega_max=...)``.
    Non-finite values on valid tokens raise ValueError.
    """
    valid = _valid_mask(omega, mask)
    a = _abs_omega(omega, valid)
    if a.numel() == 0:
        return torch.zeros((), dtype=a.dtype, device=a.device)
    return a.max()


def _quantile_sorted(values: Tensor, q: float) -> Tensor:
    """Linear-interpolation quantile (numpy's default 'linear' method) of a 1-D tensor."""
    v, _ = torch.sort(values)
    pos = q * (v.numel() - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, v.numel() - 1)
    frac = pos - lo
    return v[lo] + (v[hi] - v[lo]) * frac


def _scope_max(a: Tensor, omega_max: Tensor | float | None) -> Tensor:
    """``omega_max`` (the max over a wider scope, checked) or this tensor's own max of ``a``."""
    if omega_max is None:
        return a.max()
    m_over = torch.as_tensor(omega_max, dtype=a.dtype, device=a.device).detach()
    if m_over.numel() != 1 or not bool(torch.isfinite(m_over).all()) or float(m_over) < 0:
        raise ValueError(f"omega_max must be one finite value >= 0, got {omega_max!r}")
    return m_over.reshape(())


def _check_mapping_args(mapping: str, lambda_min, lambda_max, quantile, max_floor) -> None:
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown STEER weight mapping {mapping!r}; valid: {list(MAPPINGS)}")
    if not (isinstance(lambda_min, (int, float)) and 0.0 < lambda_min <= 1.0):
        raise ValueError(f"lambda_min must lie in (0, 1], got {lambda_min!r}")
    if mapping == "linear" and not lambda_max >= lambda_min:
        raise ValueError(f"lambda_max ({lambda_max}) must be >= lambda_min ({lambda_min})")
    if mapping == "binary" and not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile!r}")
    if not (math.isfinite(max_floor) and max_floor >= 0.0):
        raise ValueError(f"max_floor must be finite and >= 0, got {max_floor!r}")
    if max_floor > 0.0 and mapping != "exp":
        raise ValueError(
            f"max_floor applies to the exp mapping only (the released code's {mapping} mapping has no "
            f"floor); got mapping={mapping!r}, max_floor={max_floor!r}"
        )


def steer_weights(
    omega: Tensor,
    mask: Tensor | None = None,
    *,
    lambda_min: float = 0.7,
    mapping: str = "exp",
    lambda_max: float = 1.2,
    quantile: float = 0.8,
    omega_max: Tensor | float | None = None,
    max_floor: float = 0.0,
    omega_min: Tensor | float | None = None,
) -> Tensor:
    """STEER per-token weights lambda from the entropy-change estimates ``omega``.

    Mappings (all on ``a = |Omega|`` over valid tokens, see the module docstring):

    - ``"exp"`` (paper Eq. 10): ``lambda = exp(-k a)``, ``k = -ln(lambda_min) / M`` with
      ``M = max(max a, max_floor)`` (``omega_max`` replaces ``max a`` when given; the released code
      uses ``max_floor = 0.02``). Weights lie in ``[lambda_min, 1]``; the token(s) with ``a >= M``
      get exactly ``lambda_min``.
    - ``"linear"`` (section 5 ablation / released ``linear=True``):
      ``lambda = lambda_max - (lambda_max - lambda_min) (a - min a) / (max a - min a)``, clamped to
      ``[lambda_min, lambda_max]`` (``omega_max`` / ``omega_min`` replace ``max a`` / ``min a`` when
      given: the extremes over a wider scope). As in the released
      code there is no floor, and when ``max a == min a`` no token can be told apart: every valid
      token gets the midpoint ``(lambda_min + lambda_max) / 2``.
    - ``"binary"`` (section 5 ablation): ``lambda_min`` for tokens with ``a`` strictly above the
      ``quantile``-quantile ``Q_xi`` of ``a`` over valid tokens (linear interpolation), else 1.

    Defined results: masked tokens get exactly 1; no valid token gives all ones; ``M == 0`` gives
    all ones for ``exp`` and ``binary``; ``lambda_min == 1`` gives exactly ones for ``exp`` and
    ``binary`` (and for ``linear`` when ``lambda_max == 1`` too), so STEER degenerates to GRPO and
    ``loss * weights`` equals the vanilla loss bit for bit. ``lambda_min`` outside ``(0, 1]``,
    an unknown mapping, ``lambda_max < lambda_min`` (linear), ``quantile`` outside ``[0, 1]``,
    a negative or non-finite ``omega_max``/``max_floor``, ``max_floor > 0`` with a mapping other
    than ``exp``, mismatched shapes, or non-finite ``omega`` on a valid token raise ValueError
    (:class:`steer.core.errors.NonFiniteError` for the last).
    """
    _check_mapping_args(mapping, lambda_min, lambda_max, quantile, max_floor)
    valid = _valid_mask(omega, mask)
    a = _abs_omega(omega, valid)
    dtype = a.dtype
    ones = torch.ones_like(a)
    if not bool(valid.any()):
        return ones
    if lambda_min == 1.0 and (mapping != "linear" or lambda_max == 1.0):
        return ones

    m_max = torch.clamp(_scope_max(a, omega_max), min=max_floor)
    lam_min = torch.tensor(lambda_min, dtype=dtype, device=a.device)

    if mapping == "exp":
        if float(m_max) <= 0.0:
            return ones
        k = -math.log(lambda_min) / m_max
        w = torch.exp(-k * a).clamp(min=lam_min, max=1.0)
        w = torch.where(a >= m_max, lam_min, w)
    elif mapping == "linear":
        if omega_min is not None:
            m_min = torch.as_tensor(omega_min, dtype=dtype, device=a.device).detach().reshape(())
            if not bool(torch.isfinite(m_min)) or float(m_min) < 0:
                raise ValueError(f"omega_min must be one finite value >= 0, got {omega_min!r}")
        else:
            m_min = torch.where(valid, a, torch.full_like(a, float("inf"))).min()
        span = m_max - m_min
        lam_max = torch.tensor(lambda_max, dtype=dtype, device=a.device)
        if float(span) <= 0.0:
            w = torch.full_like(a, (lambda_min + lambda_max) / 2)
        else:
            w = lam_max - (lam_max - lam_min) * (a - m_min) / span
        w = torch.minimum(torch.maximum(w, lam_min), lam_max)
    else:  # binary
        q = _quantile_sorted(a[valid], quantile)
        w = torch.where(a > q, lam_min, ones)
    return torch.where(valid, w, ones).detach()


DIRECTIONAL_MAPPINGS = ("exp", "quantile")


def directional_weights(
    omega: Tensor,
    mask: Tensor | None = None,
    *,
    lambda_min: float = 0.7,
    mapping: str = "exp",
    rho: float = 0.2,
    omega_neg_max: Tensor | float | None = None,
) -> Tensor:
    """Weights that damp only the tokens whose estimate is entropy-decreasing (Omega < 0).

    The project's own variant of STEER (``steer_directional``; not from a paper). Tokens with
    ``Omega >= 0`` (predicted entropy increase, or none) and masked tokens keep weight 1. Over the
    valid tokens with ``Omega < 0``, with ``d = -Omega > 0``:

    - ``"exp"``: ``lambda = exp(-k d)``, ``k = -ln(lambda_min) / D``, ``D = max d`` over the negative
      tokens (``omega_neg_max`` replaces it: the max over a wider scope). The most negative token
      gets exactly ``lambda_min``; weights lie in ``[lambda_min, 1]``.
    - ``"quantile"``: the ``ceil(rho * n_neg)`` most negative tokens (exact top-k of ``d``) get
      ``lambda_min``, the other negative tokens 1.

    No negative token, or ``lambda_min == 1``, gives all ones. Detached, float32 (float64 for
    float64 ``omega``). Bad arguments raise ValueError; non-finite ``omega`` on a valid token
    :class:`steer.core.errors.NonFiniteError`.
    """
    if mapping not in DIRECTIONAL_MAPPINGS:
        raise ValueError(f"unknown directional mapping {mapping!r}; valid: {list(DIRECTIONAL_MAPPINGS)}")
    if not (isinstance(lambda_min, (int, float)) and 0.0 < lambda_min <= 1.0):
        raise ValueError(f"lambda_min must lie in (0, 1], got {lambda_min!r}")
    if mapping == "quantile" and not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must lie in (0, 1], got {rho!r}")
    valid = _valid_mask(omega, mask)
    a = _abs_omega(omega, valid)  # checks finiteness; |Omega|, 0 on masked tokens
    o = omega.detach().to(a.dtype)
    neg = valid & (o < 0)
    ones = torch.ones_like(a)
    if lambda_min == 1.0 or not bool(neg.any()):
        return ones
    lam_min = torch.tensor(lambda_min, dtype=a.dtype, device=a.device)
    d = torch.where(neg, a, torch.zeros((), dtype=a.dtype, device=a.device))
    if mapping == "exp":
        if omega_neg_max is not None:
            dmax = torch.as_tensor(omega_neg_max, dtype=a.dtype, device=a.device).detach().reshape(())
            if not bool(torch.isfinite(dmax)) or float(dmax) < 0:
                raise ValueError(f"omega_neg_max must be one finite value >= 0, got {omega_neg_max!r}")
        else:
            dmax = d.max()
        if float(dmax) <= 0.0:
            return ones
        k = -math.log(lambda_min) / dmax
        w = torch.exp(-k * d).clamp(min=lam_min, max=1.0)
        w = torch.where(d >= dmax, lam_min, w)
    else:
        n_neg = int(neg.sum())
        kk = min(max(math.ceil(rho * n_neg), 1), n_neg)
        score = torch.where(neg, d, torch.full((), -math.inf, dtype=a.dtype, device=a.device))
        sel = torch.zeros(a.shape, dtype=torch.bool, device=a.device)
        sel.view(-1)[torch.topk(score.reshape(-1), kk).indices] = True
        w = torch.where(sel & neg, lam_min, ones)
    return torch.where(neg, w, ones).detach()
