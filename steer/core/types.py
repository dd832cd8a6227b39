"""Shared data containers of the core.

Everything here is a plain container of tensors: no model, no I/O. Shapes follow verl's
convention for the policy update: padded ``(B, T)`` response tensors with a boolean
``response_mask`` (True on real response tokens). ``B`` is the number of responses in the
(micro-)batch, ``T`` the padded response length. The core functions themselves accept any
shape ``(...)`` with a mask of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TokenStats:
    """Per-token statistics of a next-token distribution at the sampled token.

    ``logp`` and ``entropy`` keep their autograd graph; ``sum_p2`` and ``sum_p2_logp`` are
    detached (they only feed estimators and weights).

    - ``logp``: log pi(o|s) of the sampled token o (Eq. 2's ratio numerator, in log space).
    - ``entropy``: full-vocabulary entropy H(pi(.|s)) (Eq. 3).
    - ``sum_p2``: sum_v pi(v|s)^2.
    - ``sum_p2_logp``: sum_v pi(v|s)^2 log pi(v|s).
    """

    logp: Tensor
    entropy: Tensor
    sum_p2: Tensor | None = None
    sum_p2_logp: Tensor | None = None


@dataclass
class RolloutBatch:
    """What the advantage stage sees once per rollout batch.

    - ``rewards``: (B,) scalar outcome reward per response (e.g. +1 / -1, or 1 / 0).
    - ``group_ids``: (B,) long; responses with the same id were sampled from the same prompt.
    - ``response_mask``: (B, T) bool.
    - ``old_logp``: (B, T) log-prob of each sampled token under the rollout (old) policy.
    - ``old_entropy``: (B, T) entropy under the old policy, or None when a method needs none.
    """

    rewards: Tensor
    group_ids: Tensor
    response_mask: Tensor
    old_logp: Tensor | None = None
    old_entropy: Tensor | None = None


@dataclass
class LossBatch:
    """What the policy-loss stage sees per (micro-)batch.

    - ``logp``: (B, T) current log-prob of the sampled tokens, with grad.
    - ``old_logp``: (B, T) rollout-policy log-prob (detached).
    - ``advantages``: (B, T) token advantages from the advantage stage.
    - ``response_mask``: (B, T) bool.
    - ``entropy``: (B, T) current-policy entropy (keeps its graph: the entropy bonus needs it;
      weights and masks must use a detached copy). None when the method needs none.
    - ``old_entropy``: (B, T) rollout-policy entropy, or None.
    - ``sum_p2`` / ``sum_p2_logp``: (B, T) current-policy sums for the ``exact`` estimator.
    - ``ref_logp``: (B, T) reference-policy log-prob for a KL penalty, or None.
    - ``lr``: the optimiser's learning rate eta (enters the entropy-change estimators).
    - ``global_num_tokens``: the number of valid tokens in the whole mini-batch over every
      micro-batch and rank, used as the token-mean normaliser. None means "this batch's own".
    - ``global_num_seqs``: likewise for sequence-mean modes.
    - ``max_response_length``: the configured maximum response length (generation limit); the
      constant of ``seq-mean-token-sum-norm`` (Dr. GRPO) unless the method sets
      ``loss_scale_factor``. None: the padded length T of this batch.
    - ``scope_stats``: the :meth:`steer.core.registry.Method.scope_stats` of every micro-batch of
      the mini-batch (and every rank) reduced by :meth:`~steer.core.registry.Method.reduce_scope_stats`,
      e.g. STEER's ``{"omega_max": ...}``. None means "this batch is the whole scope" (the method
      uses its own statistics).
    - ``token_cause``: (B, T) detached ``g_t = <grad log pi_t, P grad H_mb>``: how each token's
      log-prob moves along the preconditioned gradient of the mini-batch's total entropy (``P``
      the optimiser's linearised step, learning rate included). With a loss's own coefficient
      ``u_t = -dL/d log pi_t`` it gives the token's cause ``c_t = u_t g_t`` of the mini-batch's
      entropy change (``steer.train.jvp``; needed by methods that require ``"cause"``).
    - ``cause_offset``: the first-order change of the mini-batch's total entropy from the part of
      the optimiser step that no token weight controls (Adam's momentum, weight decay), in the
      same units as ``sum_t c_t``; None = unknown (e.g. Adam's first step, whose update is not
      linear in the gradient).
    """

    logp: Tensor
    old_logp: Tensor
    advantages: Tensor
    response_mask: Tensor
    entropy: Tensor | None = None
    old_entropy: Tensor | None = None
    sum_p2: Tensor | None = None
    sum_p2_logp: Tensor | None = None
    ref_logp: Tensor | None = None
    lr: float = 1e-6
    global_num_tokens: float | None = None
    global_num_seqs: float | None = None
    max_response_length: int | None = None
    scope_stats: dict[str, Tensor] | None = None
    token_cause: Tensor | None = None
    cause_offset: float | None = None


@dataclass(frozen=True)
class Normalisers:
    """The denominators of loss aggregation, passed as one object.

    - ``num_tokens``: valid tokens of the whole mini-batch over every micro-batch and rank
      (token-mean); None = this batch's own.
    - ``num_seqs``: non-empty sequences likewise (sequence-mean modes); None = this batch's own.
    - ``scale_factor``: the constant of ``seq-mean-token-sum-norm`` (Dr. GRPO); None = the padded
      length T of the batch.
    """

    num_tokens: float | Tensor | None = None
    num_seqs: float | Tensor | None = None
    scale_factor: float | None = None

    @classmethod
    def of(cls, batch: LossBatch, loss_scale_factor: float | None = None) -> Normalisers:
        """A :class:`LossBatch`'s normalisers: its mini-batch counts and the
        ``seq-mean-token-sum-norm`` constant (``loss_scale_factor``, else the batch's configured
        ``max_response_length``, else None: the padded length)."""
        scale = loss_scale_factor
        if scale is None and batch.max_response_length is not None:
            scale = float(batch.max_response_length)
        return cls(batch.global_num_tokens, batch.global_num_seqs, scale)


@dataclass
class TokenLoss:
    """A method's per-token policy loss before aggregation (:meth:`Method.token_loss`).

    - ``loss_mat``: (B, T), with grad: the per-token policy loss with the method's token weights
      applied, exactly 0 on padding (and on tokens a selection method drops), not aggregated and
      without the entropy-bonus / KL regularisers.
    - ``weight``: (B, T) detached token weights the method applied (STEER's lambda, Clip-Cov's
      0/1 keep mask, a quadrant intervention's weights, forking's 0/1 selection), or None when all
      are 1.
    - ``metrics``: per-batch metrics (Python floats), each with a declared reduction in
      :mod:`steer.core.metrics`.
    - ``loss_mask``: the tokens the aggregation counts when it differs from the response mask
      (forking tokens: the selected ones), else None.
    - ``num_tokens_scale``: factor applied to a global ``num_tokens`` normaliser (forking: rho,
      the selected share), 1.0 otherwise.
    Aggregate it with :func:`steer.core.aggregation.aggregate`; never re-implement the reduction.
    """

    loss_mat: Tensor
    weight: Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    loss_mask: Tensor | None = None
    num_tokens_scale: float = 1.0


def check_same_shape(**tensors: Tensor | None) -> None:
    """Raise ValueError naming the offenders when the given tensors' shapes differ."""
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"mismatched shapes: {shapes}")


def as_bool_mask(mask: Tensor) -> Tensor:
    """A boolean copy of a 0/1 or bool mask."""
    if mask.dtype == torch.bool:
        return mask
    return mask != 0


def masked_mean_float(x: Tensor, mask: Tensor, empty: float) -> float:
    """The float64 mean of ``x`` over the True entries of the bool ``mask`` (``empty`` when none)."""
    n = int(mask.sum())
    if n == 0:
        return empty
    return float(
        torch.where(mask, x.double(), torch.zeros((), dtype=torch.float64, device=x.device)).sum() / n
    )
