"""One real optimiser step of the probe: the batch's token statistics, the configured loss and its
gradient, the optimiser and its preconditioner."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from steer.analysis.probe.settings import OptimSetting
from steer.core.types import LossBatch


@dataclass
class _Batch:
    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor


def _chunks(n: int, size: int) -> list[slice]:
    size = size if size and size > 0 else max(n, 1)
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _snapshot(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: p.detach().clone() for k, p in params.items()}


def _restore(params: dict[str, Tensor], saved: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(saved[k])


def _stats(model, batch: _Batch, sl: slice, temperature: float, with_sums: bool):
    from steer.train.rollout import response_token_stats

    return response_token_stats(
        model,
        batch.prompt_ids[sl],
        batch.prompt_mask[sl],
        batch.response_ids[sl],
        temperature=temperature,
        with_sums=with_sums,
    )


@torch.no_grad()
def _entropies(
    model, batch: _Batch, temperature: float, mb: int, with_sums: bool = False
) -> dict[str, Tensor]:
    was = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {"logp": [], "entropy": [], "sum_p2": [], "sum_p2_logp": []}
    try:
        for sl in _chunks(batch.response_ids.shape[0], mb):
            st = _stats(model, batch, sl, temperature, with_sums)
            parts["logp"].append(st.logp.cpu())
            parts["entropy"].append(st.entropy.cpu())
            if with_sums:
                parts["sum_p2"].append(st.sum_p2.cpu())
                parts["sum_p2_logp"].append(st.sum_p2_logp.cpu())
    finally:
        model.train(was)
    m = batch.response_mask
    return {k: torch.cat(v).masked_fill(~m, 0.0) for k, v in parts.items() if v}


def _loss_step(
    model,
    method,
    batch: _Batch,
    base: dict[str, Tensor],
    advantages: Tensor,
    lr: float,
    temperature: float,
    mb: int,
    params: dict[str, Tensor],
    max_len: int | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict]:
    """Forward + loss + backward of the configured loss at the current parameters (= theta_0).

    Returns (parameter gradients, u = -dL/dlogp, v = -dL/dH, loss metrics). The loss is normalised
    over the whole batch (``global_num_tokens``), as the trainer does for one mini-batch."""
    mask = batch.response_mask
    n_tok = float(mask.sum())
    n_seq = float((mask.sum(1) > 0).sum())
    names = list(params)
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    u = torch.zeros(mask.shape, dtype=torch.float64)
    v = torch.zeros(mask.shape, dtype=torch.float64)
    metrics: dict = {}
    chunks = _chunks(batch.response_ids.shape[0], mb)
    scope_stats = None
    if len(chunks) > 1:  # a method's batch statistics (STEER's max|Omega|) over the whole batch
        with torch.no_grad():
            parts = []
            for sl in chunks:
                st = _stats(model, batch, sl, temperature, method.needs_sums)
                parts.append(
                    method.scope_stats(
                        _loss_batch(st, batch, base, advantages, sl, lr, n_tok, n_seq, method, max_len)
                    )
                )
        # the method's own reduction (the MAX, or the weighting's), as the trainer does
        scope_stats = method.reduce_scope_stats(parts) or None
    was = model.training
    model.train()
    try:
        for sl in chunks:
            st = _stats(model, batch, sl, temperature, method.needs_sums)
            lb = _loss_batch(st, batch, base, advantages, sl, lr, n_tok, n_seq, method, max_len)
            lb.scope_stats = scope_stats
            loss, met = method.compute_loss(lb)
            if not bool(torch.isfinite(loss).all()):
                raise ValueError(f"the {method.name} loss is not finite ({float(loss)}); no step was taken")
            out = torch.autograd.grad(
                loss, [st.logp, st.entropy] + [params[k] for k in names], allow_unused=True
            )
            if out[0] is not None:
                u[sl] = -out[0].detach().double().cpu()
            if out[1] is not None:
                v[sl] = -out[1].detach().double().cpu()
            for k, g in zip(names, out[2:]):
                if g is not None:
                    grads[k].add_(g.detach())
            metrics = met if not metrics else metrics
    finally:
        model.train(was)
    bad = [k for k, g in grads.items() if not bool(torch.isfinite(g).all())]
    if bad:
        raise ValueError(f"non-finite loss gradient in parameter(s) {bad[:3]}; no step was taken")
    return grads, u.masked_fill(~mask, 0.0), v.masked_fill(~mask, 0.0), metrics


def _loss_batch(st, batch, base, advantages, sl, lr, n_tok, n_seq, method, max_len) -> LossBatch:
    m = batch.response_mask[sl]
    dev = st.logp.device
    return LossBatch(
        logp=st.logp,
        old_logp=base["logp"][sl].to(dev),
        advantages=advantages[sl].to(dev),
        response_mask=m.to(dev),
        entropy=st.entropy,
        old_entropy=base["entropy"][sl].to(dev) if method.needs_old_entropy else None,
        sum_p2=st.sum_p2 if method.needs_sums else None,
        sum_p2_logp=st.sum_p2_logp if method.needs_sums else None,
        ref_logp=base["logp"][sl].to(dev) if method.needs_ref else None,  # reference = theta_0
        lr=lr,
        global_num_tokens=max(n_tok, 1.0),
        global_num_seqs=max(n_seq, 1.0),
        max_response_length=max_len,
    )


def _make_optimizer(setting: OptimSetting, params: list[Tensor], optim_cfg, adam_state: dict | None = None):
    """SGD without momentum, or AdamW (``optim.*`` betas, eps, weight decay): a fresh state, or
    ``adam_state`` (a trainer checkpoint's ``optimizer.pt``) with the setting's learning rate."""
    if setting.name == "sgd":
        return torch.optim.SGD(params, lr=setting.lr, momentum=0.0, weight_decay=0.0)
    opt = torch.optim.AdamW(
        params,
        lr=setting.lr,
        betas=(optim_cfg.beta1, optim_cfg.beta2),
        eps=optim_cfg.eps,
        weight_decay=optim_cfg.weight_decay,
    )
    if adam_state is not None:
        try:
            opt.load_state_dict(adam_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ValueError(
                f"the checkpoint's optimiser state does not fit this model's parameters: {exc}"
            ) from exc
        for g in opt.param_groups:
            g["lr"] = setting.lr
    return opt


def _preconditioner(setting: OptimSetting, opt, params: dict[str, Tensor], grads: dict[str, Tensor], clip_coef: float):
    """The diagonal P with ``Delta theta ~= P * (-grad L)`` of the step ``opt`` is about to take
    along the clipped gradient ``clip_coef * grads``; the learning rate and the clipping factor
    included. SGD: ``lr`` (exact). AdamW: :func:`steer.train.cause.adam_linearisation` with Adam's
    denominator held at this step's, ``lr (1 - beta1) / (1 - beta1^t) / (sqrt(v_hat) + eps)``:
    exact for the first step of a fresh state without weight decay, an approximation otherwise
    (momentum, decay)."""
    if setting.name == "sgd":
        return setting.lr * clip_coef
    from steer.train.cause import adam_linearisation

    P, _ = adam_linearisation(opt, params, {k: g * clip_coef for k, g in grads.items()}, frozen_denominator=True)
    return {k: pk * clip_coef for k, pk in P.items()}


def _steer_omega(method, base, advantages, mask, lr) -> Tensor:
    """The STEER method's own Omega at theta_0 (``Method.compute_omega``, on-policy)."""
    lb = LossBatch(
        logp=base["logp"],
        old_logp=base["logp"],
        advantages=advantages,
        response_mask=mask,
        entropy=base["entropy"],
        old_entropy=base["entropy"],
        sum_p2=base["sum_p2"],
        sum_p2_logp=base["sum_p2_logp"],
        lr=lr,
    )
    return method.compute_omega(lb)
