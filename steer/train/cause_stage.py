"""The trainer's cause stage: a mini-batch's cause pass before its update, and the realised
entropy change after it.

:func:`cause_pass` gathers what :func:`steer.train.cause.cause_pass` needs from the trainer's
own loss batches (``Trainer.loss_batch`` with ``entropy_graph``): per micro-batch the gradient of
the mini-batch's entropy sum and the unweighted policy gradient (accumulated outside the
parameters' ``.grad``), clipped by the factor ``clip_grad_norm_`` would apply.
:func:`realised_change` compares the pass's prediction with the entropy change the optimiser step
actually made.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from steer.core.errors import NonFiniteError
from steer.train import cause as _cause
from steer.train.jvp import trainable_parameters

__all__ = ["cause_pass", "realised_change"]


def _accumulate_gradients(trainer, data, chunks: list[Tensor], norm: dict, names: list[str], leaves: list):
    """Per micro-batch one forward with grad and two backwards: ``grad H_mb`` and the unweighted
    policy gradient, summed into fresh buffers; plus each micro-batch's entropy (detached, on the
    CPU, zero outside the responses)."""
    g_h = {k: torch.zeros_like(p) for k, p in zip(names, leaves)}
    g_l = {k: torch.zeros_like(p) for k, p in zip(names, leaves)}
    ents = []
    for idx in chunks:
        lb = trainer.loss_batch(data, idx, **norm, entropy_graph=True)
        m = lb.response_mask
        st_ent = lb.entropy
        u = trainer.method.cause_coefficients(lb).to(device=lb.logp.device, dtype=lb.logp.dtype)
        ents.append(st_ent.detach().float().cpu().masked_fill(~m.cpu(), 0.0))
        if not bool(m.any()):
            continue
        h_sum = st_ent[m].sum()
        l0 = -(u * lb.logp)[m].sum()
        for acc, target, keep in ((g_h, h_sum, True), (g_l, l0, False)):
            gs = torch.autograd.grad(target, leaves, retain_graph=keep, allow_unused=True)
            for k, g in zip(names, gs):
                if g is not None:
                    acc[k].add_(g.detach())
        del lb
    return g_h, g_l, ents


def cause_pass(trainer, data, mb_idx: Tensor, chunks: list[Tensor], norm: dict):
    """The mini-batch's cause pass (:mod:`steer.train.cause`) for ``trainer``: the gradients of
    :func:`_accumulate_gradients`, the unweighted gradient's clipping factor, then Adam's
    linearised step and the forward-mode pass. The result carries ``clip_coef_used`` and
    ``seconds``."""
    t0 = time.perf_counter()  # loss_batch's ``entropy_graph`` keeps H's graph for grad H_mb
    params = trainable_parameters(trainer.model)
    names = list(params)
    leaves = [params[k] for k in names]
    g_h, g_l, ents = _accumulate_gradients(trainer, data, chunks, norm, names, leaves)
    for k in names:
        if not (bool(torch.isfinite(g_h[k]).all()) and bool(torch.isfinite(g_l[k]).all())):
            raise NonFiniteError(f"non-finite gradient in the cause pass (parameter {k!r})", name="cause")
    gnorm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in g_l.values()))
    kappa0 = min(1.0, trainer.cfg.optim.grad_clip / (gnorm + 1e-6))  # clip_grad_norm_'s factor
    g_l = {k: g * kappa0 for k, g in g_l.items()}
    cp = _cause.cause_pass(
        trainer.model,
        _cause.SubBatch.of(data.rollouts, mb_idx),
        trainer.optimizer,
        grad_entropy=g_h,
        grad_loss=g_l,
        entropy_before=torch.cat(ents),
        temperature=trainer.cfg.rollout.temperature,
        micro_batch_size=trainer.cfg.trainer.micro_batch_size,
    )
    trainer.model.train()
    cp.clip_coef_used = kappa0
    cp.seconds = time.perf_counter() - t0
    return cp


def realised_change(trainer, data, mb_idx: Tensor, mb_metrics: list, clip_coef: float) -> dict:
    """After a mini-batch's optimiser step: its predicted and realised change of the token-mean
    entropy (the mini-batch's total entropy change divided by its valid tokens), and both
    relative to the mean entropy before the step. The prediction is ``offset + sum_t lambda_t
    c_t`` from the method's ``cause/pred_sum`` metric (``_unweighted``: all weights 1);
    ``cause/clip_coef`` is the step's actual gradient-clipping factor. The cause pass is
    ``trainer.last_cause``."""
    t0 = time.perf_counter()
    cp = trainer.last_cause
    sub = _cause.SubBatch.of(data.rollouts, mb_idx)
    m = sub.response_mask.bool()
    after = _cause.entropy_after(
        trainer.model,
        sub,
        temperature=trainer.cfg.rollout.temperature,
        micro_batch_size=trainer.cfg.trainer.micro_batch_size,
    )
    before = cp.entropy_before.double().cpu()
    n = max(float(m.sum()), 1.0)
    h_sum = float(before[m].sum())
    real = float((after.double().cpu() - before)[m].sum())
    nan = float("nan")
    off = cp.offset
    pw = sum(float(mt.get("cause/pred_sum", 0.0)) for mt, _ in mb_metrics)
    pu = sum(float(mt.get("cause/pred_sum_unweighted", 0.0)) for mt, _ in mb_metrics)
    pred = nan if off is None else off + pw
    pred_u = nan if off is None else off + pu
    rel = (lambda v: v / h_sum) if h_sum > 0 else (lambda v: nan)  # noqa: E731
    return {
        "cause/clip_coef": clip_coef,
        "cause/pred_change": pred / n,
        "cause/pred_change_unweighted": pred_u / n,
        "cause/real_change": real / n,
        "cause/pred_rel_change": rel(pred),
        "cause/pred_rel_change_unweighted": rel(pred_u),
        "cause/real_rel_change": rel(real),
        "cause/offset": nan if off is None else off / n,
        "time/cause": cp.seconds + (time.perf_counter() - t0),
    }
