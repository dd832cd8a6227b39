"""The trainer's per-mini-batch cause pass for methods that require ``"cause"`` (``steer_causal``,
``entropy_band``): what each token's update does to the mini-batch's total entropy.

Before the mini-batch's loss, at the current parameters theta (the trainer drives step 1):

1. one forward of the mini-batch (the trainer's own scoring forward, with grad) and two
   backwards: ``grad H_mb`` of the mini-batch's total entropy ``H_mb = sum_t H_t``, and the
   *unweighted* policy gradient ``g0 = -grad sum_t u_t log pi_t`` with ``u_t = coef_t I_clip r_t A_t``
   (``Method.cause_coefficients``), times its clipping factor ``kappa0 = min(1, clip / |g0|)``;
2. AdamW's next update ``Delta theta(G)`` linearised at ``G0`` (:func:`adam_linearisation`):
   ``Delta theta(G) ~= Delta theta(G0) - P (G - G0)`` with P Adam's diagonal Jacobian, its
   normalisation by ``sqrt(v_hat)`` included (on Adam's first step P ~ 0: a sign step does not
   depend on the gradient's scale, so token weights cannot move it to first order);
3. ``g_t = <grad log pi_t, P grad H_mb>`` for every token: one forward-mode pass
   (:func:`steer.train.jvp.jvp_response_stats`);
4. ``offset = <grad H_mb, Delta theta(G0)> + <grad H_mb, P G0>``, so that the predicted change for
   token weights lambda is ``offset + sum_t lambda_t c_t`` (exactly the linearised change of
   Adam's own step at lambda = 1).

The trainer passes ``kappa0 * g_t`` as ``LossBatch.token_cause``. After the optimiser step a no-grad
forward gives the realised change of ``H_mb``, logged next to the prediction
``offset + sum_t lambda_t c_t`` (the weighted gradient's own clipping factor is taken to be kappa0).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CausePass", "SubBatch", "adam_linearisation", "cause_pass", "eager_attention", "entropy_after"]


@dataclass
class SubBatch:
    """The rows of a rollout batch that one mini-batch trains on (a Rollouts-like batch)."""

    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor

    @classmethod
    def of(cls, rollouts, idx: Tensor) -> SubBatch:
        return cls(
            rollouts.prompt_ids[idx],
            rollouts.prompt_mask[idx],
            rollouts.response_ids[idx],
            rollouts.response_mask[idx],
        )


@dataclass
class CausePass:
    """One mini-batch's cause pass: ``direction`` (n, T) ``g_t``, ``entropy_before`` (n, T) (0 on
    padding), ``offset`` (None: unknown), the pass's wall time, and the gradient-clipping factor the
    trainer scaled the direction by."""

    direction: Tensor
    entropy_before: Tensor
    offset: float | None
    seconds: float = 0.0
    clip_coef_used: float = 1.0


def adam_linearisation(
    optimizer, params: dict[str, Tensor], grad: dict[str, Tensor], *, frozen_denominator: bool = False
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(P, step)`` of the next step of a :class:`torch.optim.AdamW` (or Adam) for the parameters
    ``{name: tensor}`` at the gradient ``grad`` (the unweighted policy gradient G0, clipping factor
    included): ``step = Delta theta(G0)``, the update Adam would make, and ``P = -d Delta theta / dG``
    at G0, its diagonal Jacobian, so that ``Delta theta(G) ~= step - P (G - G0)`` for G near G0.

    With ``m_hat = (b1 m + (1 - b1) G) / bc1``, ``v_hat = (b2 v + (1 - b2) G^2) / bc2`` and
    ``D = sqrt(v_hat) + eps``: ``Delta theta = -lr m_hat / D - lr wd theta`` and
    ``P = lr ((1 - b1) / (bc1 D) - m_hat (1 - b2) G / (bc2 D^2 sqrt(v_hat)))``. The second term is
    Adam's normalisation: on the first step (no state) the update is ``lr G / (|G| + eps)`` and
    ``P = lr eps / D^2`` ~ 0, so token weights have no first-order effect there.

    ``frozen_denominator=True``: ``P = lr (1 - b1) / (bc1 D)``, the derivative with D held at its
    value at G0 (the normalisation term dropped). Then ``step = -lr b1 m / (bc1 D) - lr wd theta -
    P G0`` exactly: the step split into the part of the current gradient and the rest (momentum,
    decay); on the first step without weight decay ``step = -P G0`` (``steer probe`` splits its
    update into per-token parts this way). It is not the Jacobian: use the default to predict
    what a change of the gradient does to the step.
    ValueError for other optimisers, amsgrad and Adam's coupled weight decay."""
    if not isinstance(optimizer, (torch.optim.AdamW, torch.optim.Adam)):
        raise ValueError(f"the cause pass linearises Adam/AdamW only, got {type(optimizer).__name__}")
    group_of = {}
    for group in optimizer.param_groups:
        if group.get("amsgrad"):
            raise ValueError("the cause pass does not linearise amsgrad")
        for p in group["params"]:
            group_of[id(p)] = group
    P: dict[str, Tensor] = {}
    step: dict[str, Tensor] = {}
    decoupled = isinstance(optimizer, torch.optim.AdamW)
    for name, p in params.items():
        if id(p) not in group_of:
            raise ValueError(f"parameter {name!r} is not in the optimiser")
        g = group_of[id(p)]
        b1, b2 = g["betas"]
        lr, eps, wd = float(g["lr"]), float(g["eps"]), float(g["weight_decay"])
        if wd and not decoupled:
            raise ValueError("the cause pass does not linearise Adam's coupled weight decay; use AdamW")
        st = optimizer.state.get(p) or {}
        t = float(st["step"]) + 1.0 if "step" in st else 1.0
        dt = torch.float64
        m = st.get("exp_avg", torch.zeros_like(p)).detach().to(dt)
        v = st.get("exp_avg_sq", torch.zeros_like(p)).detach().to(dt)
        gr = grad[name].detach().to(dt)
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        m_hat = (b1 * m + (1.0 - b1) * gr) / bc1
        v_hat = (b2 * v + (1.0 - b2) * gr * gr) / bc2
        sq = v_hat.sqrt()
        d = sq + eps
        if frozen_denominator:
            norm_term = torch.zeros_like(sq)
        else:
            norm_term = torch.where(
                sq > 0, m_hat * (1.0 - b2) * gr / (bc2 * d * d * sq.clamp_min(1e-300)), torch.zeros_like(sq)
            )
        P[name] = (lr * ((1.0 - b1) / (bc1 * d) - norm_term)).to(p.dtype)
        upd = -lr * m_hat / d
        if wd:
            upd = upd - lr * wd * p.detach().to(dt)
        step[name] = upd.to(p.dtype)
    return P, step


def cause_pass(
    model,
    batch: SubBatch,
    optimizer,
    *,
    grad_entropy: dict[str, Tensor] | None,
    grad_loss: dict[str, Tensor],
    entropy_before: Tensor,
    temperature: float = 1.0,
    micro_batch_size: int = 0,
    subset=None,
) -> CausePass:
    """Steps 2-4 of the module docstring for one mini-batch at the model's current parameters, given
    ``grad H_mb`` (``grad_entropy``), the unweighted policy gradient G0 the step is linearised at
    (``grad_loss``, clipping factor included) and the entropies of the gradients' forward.

    The offset is ``<grad H, Delta theta(G0)> + <grad H, P G0>``: with ``c_t = u_t g_t`` (G0 =
    ``-sum_t u_t grad log pi_t``) the prediction ``offset + sum_t lambda_t c_t`` is
    ``<grad H, Delta theta(G0) - P (G(lambda) - G0)>``, the linearised change for token weights
    lambda, and exactly Adam's step at lambda = 1 (to first order in the entropy).

    ``subset`` (:func:`steer.train.jvp.last_layers`; measured by ``benchmarks/cheap_cause.py``, not
    used by the trainer): ``g_t`` restricted to the
    subset's parameters, ``<grad_S log pi_t, P_S grad_S H_mb>``, exact for the subset: ``grad_S H_mb``
    is computed here with the other parameters held constant (``grad_entropy`` must be None), the
    forward-mode pass carries tangents on the subset only, and ``P_S`` is Adam's Jacobian of the
    subset's parameters at the full G0 (a tied head's role takes the tied tensor's). The offset is
    then None (the prediction of the total change needs the full pass)."""
    import time

    from steer.train.jvp import entropy_gradient, jvp_response_stats, trainable_parameters

    t0 = time.perf_counter()
    params = trainable_parameters(model)
    if subset is not None:
        if grad_entropy is not None:
            raise ValueError("cause_pass with a subset computes grad H itself; pass grad_entropy=None")
        needed = sorted(set(subset.source.values()))
        P, _ = adam_linearisation(optimizer, {k: params[k] for k in needed}, grad_loss)
        gh = entropy_gradient(
            model, batch, temperature=temperature, micro_batch_size=micro_batch_size, subset=subset
        )
        direction = {role: P[subset.source[role]] * g for role, g in gh.items()}
        with eager_attention(model):
            _, _, dlp, _ = jvp_response_stats(
                model, batch, direction, temperature=temperature, micro_batch_size=micro_batch_size, subset=subset
            )
        return CausePass(direction=dlp, entropy_before=entropy_before, offset=None, seconds=time.perf_counter() - t0)
    if grad_entropy is None:
        raise ValueError("cause_pass needs grad_entropy (grad H_mb) without a subset")
    P, step = adam_linearisation(optimizer, params, grad_loss)
    direction = {k: P[k] * g for k, g in grad_entropy.items()}
    offset = 0.0
    for k, gh in grad_entropy.items():
        gh = gh.double()
        offset += float((gh * step[k].double()).sum()) + float((gh * P[k].double() * grad_loss[k].double()).sum())
    with eager_attention(model):
        _, _, dlp, _ = jvp_response_stats(
            model, batch, direction, temperature=temperature, micro_batch_size=micro_batch_size
        )
    return CausePass(direction=dlp, entropy_before=entropy_before, offset=offset, seconds=time.perf_counter() - t0)


@contextmanager
def eager_attention(model):
    """Run the block with the model's attention switched to 'eager' (forward-mode AD has no rule
    for the fused kernels), then switch back, so that the training forward keeps its own kernel."""
    from steer.train.jvp import require_eager_attention

    cfg = getattr(model, "config", None)
    before = getattr(cfg, "_attn_implementation", None)
    require_eager_attention(model)
    try:
        yield
    finally:
        if before not in (None, "eager"):
            model.set_attn_implementation(before)


@torch.no_grad()
def entropy_after(model, batch: SubBatch, *, temperature: float = 1.0, micro_batch_size: int = 0) -> Tensor:
    """(n, T) float entropies of the batch's states under the model's current parameters (the
    trainer's scoring forward, in the model's current mode like the gradients' forward), 0 on
    padding."""
    from steer.train.rollout import response_token_stats

    n = batch.response_ids.shape[0]
    size = micro_batch_size if micro_batch_size and micro_batch_size > 0 else max(n, 1)
    out = []
    for s in range(0, n, size):
        sl = slice(s, min(n, s + size))
        st = response_token_stats(
            model, batch.prompt_ids[sl], batch.prompt_mask[sl], batch.response_ids[sl], temperature=temperature
        )
        out.append(st.entropy.float())
    h = torch.cat(out) if out else torch.zeros(batch.response_mask.shape)
    return h.masked_fill(~batch.response_mask.bool().to(h.device), 0.0)
