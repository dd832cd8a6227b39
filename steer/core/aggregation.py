"""Loss aggregation: the one place where a per-token loss becomes a scalar, :func:`aggregate`.

verl's ``agg_loss`` modes (spec methods.md §0). The denominators come as one
:class:`steer.core.types.Normalisers` object (mini-batch token and sequence counts over every
micro-batch and rank, and the Dr. GRPO constant; :meth:`~steer.core.types.Normalisers.of` builds a
batch's); :func:`aggregate` takes a loss matrix or a method's :class:`steer.core.types.TokenLoss`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steer.core.types import Normalisers, TokenLoss, as_bool_mask, check_same_shape

__all__ = ["AGG_MODES", "aggregate", "token_coefficients"]

AGG_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    "token-sum",
)


def _denominator(value: float | Tensor | None, fallback: Tensor, name: str) -> Tensor:
    if value is None:
        d = fallback
    else:
        d = torch.as_tensor(value, dtype=fallback.dtype, device=fallback.device)
        if d.numel() != 1 or not bool(torch.isfinite(d).all()) or float(d) < 0:
            raise ValueError(f"{name} must be one finite number >= 0, got {value!r}")
        d = d.reshape(())
    # 0 valid tokens/sequences: the numerator is 0 too; divide by 1 to give a defined 0.
    return torch.where(d > 0, d, torch.ones_like(d))


def _check_global_count(value: float | Tensor | None, local: int, name: str, what: str) -> None:
    """A global normaliser counts this batch's own ``local`` items too, so it cannot be smaller."""
    if value is None:
        return
    v = torch.as_tensor(value).detach()
    if v.numel() != 1 or not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be one finite number >= 0, got {value!r}")
    v = float(v)
    if v < 0 or (local > 0 and v <= 0):
        raise ValueError(f"{name} must be > 0 when the batch has {what} ({local}), got {value!r}")
    if v < local:
        raise ValueError(
            f"{name} = {value!r} is smaller than this batch's own number of {what} ({local}); "
            "it must count every (micro-)batch of the mini-batch, this one included"
        )


def _check_global_normalisers(
    m: Tensor, global_num_tokens: float | Tensor | None, global_num_seqs: float | Tensor | None
) -> None:
    _check_global_count(global_num_tokens, int(m.sum()), "global_num_tokens", "valid tokens")
    n_seqs = int((m.sum(-1) > 0).sum()) if m.dim() >= 2 else int(bool(m.any()))
    _check_global_count(global_num_seqs, n_seqs, "global_num_seqs", "non-empty sequences")


def aggregate(
    loss: Tensor | TokenLoss,
    mask: Tensor,
    mode: str = "token-mean",
    normalisers: Normalisers | None = None,
) -> Tensor:
    """Reduce a per-token loss (B, T) to a scalar (verl ``agg_loss`` semantics, spec §0): the one
    public aggregation.

    ``loss`` is a loss matrix or a method's :class:`TokenLoss` (then the reduction runs over its
    ``loss_mask`` when the method selects tokens, and a global ``num_tokens`` is scaled by its
    ``num_tokens_scale``). ``normalisers`` (:class:`Normalisers`; build a batch's with
    :meth:`Normalisers.of`) holds the mini-batch counts over every micro-batch and rank and the
    Dr. GRPO constant; None = this batch's own.

    - ``token-mean``: ``sum(L * m) / N``, N = ``num_tokens`` or this batch's valid tokens;
    - ``seq-mean-token-mean``: mean over sequences of each sequence's token mean (original GRPO);
    - ``seq-mean-token-sum``: mean over sequences of each sequence's token sum;
    - ``seq-mean-token-sum-norm`` (Dr. GRPO): ``seq-mean-token-sum / scale_factor``
      (default: the padded length T, as verl; the Dr. GRPO paper uses the max generation length);
    - ``token-sum``: ``sum(L * m)``.
    Sequence means divide by ``num_seqs`` or the number of non-empty sequences of this batch.
    Pass the global normalisers when a mini-batch is split into micro-batches (each micro-batch's
    loss is then already on the mini-batch scale). An all-masked batch gives exactly 0 (with a
    zero gradient), never NaN. Impossible global normalisers raise ValueError (whatever the mode):
    ``num_tokens`` smaller than this batch's valid tokens (``mask``), or <= 0 while there are valid
    tokens; the same for ``num_seqs`` against the non-empty sequences.
    """
    n = normalisers or Normalisers()
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {mode!r}; valid: {list(AGG_MODES)}")
    tl = loss if isinstance(loss, TokenLoss) else TokenLoss(loss_mat=loss)
    check_same_shape(loss_mat=tl.loss_mat, mask=mask)
    m = as_bool_mask(mask)
    _check_global_normalisers(m, n.num_tokens, n.num_seqs)
    gnt = n.num_tokens
    if tl.loss_mask is not None:
        m = as_bool_mask(tl.loss_mask)
        if gnt is not None and tl.num_tokens_scale != 1.0:
            gnt = float(gnt) * tl.num_tokens_scale
    return _aggregate(tl.loss_mat, m, mode, gnt, n.num_seqs, n.scale_factor)


def _aggregate(
    loss_mat: Tensor,
    m: Tensor,
    mode: str,
    global_num_tokens: float | Tensor | None,
    global_num_seqs: float | Tensor | None,
    loss_scale_factor: float | None,
) -> Tensor:
    """:func:`aggregate` without the argument checks (bool mask of the same shape)."""
    zero = torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device)
    lm = torch.where(m, loss_mat, zero)
    if mode == "token-mean":
        n = m.sum().to(loss_mat.dtype)
        return lm.sum() / _denominator(global_num_tokens, n, "global_num_tokens")
    if mode == "token-sum":
        return lm.sum()
    if lm.dim() < 2:
        raise ValueError(f"loss_agg_mode {mode!r} needs a (B, T) loss matrix, got shape {tuple(lm.shape)}")
    counts = m.sum(-1).to(loss_mat.dtype)
    seq = lm.sum(-1)
    if mode == "seq-mean-token-mean":
        seq = seq / torch.where(counts > 0, counts, torch.ones_like(counts))
    n_seq = (counts > 0).sum().to(loss_mat.dtype)
    loss = seq.sum() / _denominator(global_num_seqs, n_seq, "global_num_seqs")
    if mode == "seq-mean-token-sum-norm":
        scale = float(lm.shape[-1]) if loss_scale_factor is None else float(loss_scale_factor)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"loss_scale_factor must be finite and > 0, got {loss_scale_factor!r}")
        loss = loss / scale
    return loss


def token_coefficients(
    mask: Tensor, mode: str = "token-mean", normalisers: Normalisers | None = None, *, dtype=torch.float64
) -> Tensor:
    """(B, T) ``d agg / d L_t``: the coefficient of each token's loss in the aggregated loss
    (aggregation is linear in the loss matrix, so ``agg(L) = sum_t coef_t L_t``). 0 on padding.

    Obtained by differentiating :func:`aggregate` itself at a zero loss matrix, so it
    follows every mode and normaliser of the aggregation without restating them.
    """
    m = as_bool_mask(mask)
    x = torch.zeros(m.shape, dtype=dtype, device=m.device, requires_grad=True)
    with torch.enable_grad():
        agg = aggregate(x, m, mode, normalisers)
        (g,) = torch.autograd.grad(agg, x, allow_unused=True)
    if g is None:
        return torch.zeros(m.shape, dtype=dtype, device=m.device)
    return torch.where(m, g, torch.zeros((), dtype=dtype, device=m.device))
