"""One real optimiser step of the probe: the batch's token statistics, the configured loss and its
gradient, the optimiser and its preconditioner."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from steer.analysis.probe.settings import OptimSetting
from steer.core.types import LossBatch
from steer.train.trainer import Trainer


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


class ProbeTrainer(Trainer):
    """The trainer, keeping the gradient of every micro-batch's loss with respect to its log-probs
    and entropies (``-u`` and ``-v``): ``loss_batch`` keeps the entropy's graph (as the probe's
    ``v`` needs) and, while ``taps`` is a list and gradients are on, marks both to retain their
    gradients and records them with the micro-batch's rows."""

    taps: list | None = None

    def loss_batch(self, data, idx, **kw):
        kw["entropy_graph"] = True
        lb = super().loss_batch(data, idx, **kw)
        if self.taps is not None and torch.is_grad_enabled():
            for t in (lb.logp, lb.entropy):
                if t.requires_grad:
                    t.retain_grad()
            self.taps.append((idx, lb.logp, lb.entropy))
        return lb


def probe_trainer(cfg, method, model, tokenizer, task, mb: int, log) -> ProbeTrainer:
    """The trainer whose stages the probe runs (``Trainer.step_data``, ``Trainer.loss_batch``,
    ``Trainer.minibatch_backward``) on the probe's model, tokenizer, task and method, with ``mb``
    rows per forward. The reference policy is theta_0 itself (the rollout log-probs), so the
    trainer's copy of the model is dropped; the cause pass is not run (it linearises the trainer's
    own AdamW, not the probe's optimiser settings)."""
    if "cause" in method.requires:
        raise ValueError(
            f"steer probe does not run method {method.name!r}: its loss needs the trainer's cause pass "
            "(Adam's linearised step), which the probe's optimiser settings do not have"
        )
    tcfg = copy.deepcopy(cfg)
    tcfg.trainer.micro_batch_size = int(mb)
    tcfg.trainer.cause_probe = False
    tr = ProbeTrainer(tcfg, model=model, tokenizer=tokenizer, task=task, method=method, log=log)
    tr.ref_model = None  # the reference is theta_0: StepData.ref_logp is set to the rollout log-probs
    return tr


def _loss_step(
    trainer, data, lr: float, params: dict[str, Tensor]
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict]:
    """The trainer's mini-batch backward of the configured loss over the whole batch (one
    mini-batch: its scope statistics over every micro-batch, the loss normalised by the batch's
    valid tokens) at the current parameters (= theta_0), with the learning rate ``lr``.

    Returns (parameter gradients, u = -dL/dlogp, v = -dL/dH, the first micro-batch's loss
    metrics); the parameters' ``.grad`` is cleared."""
    mask = data.rollouts.response_mask
    u = torch.zeros(mask.shape, dtype=torch.float64)
    v = torch.zeros(mask.shape, dtype=torch.float64)
    model = trainer.model
    was = model.training
    model.train()
    trainer.taps = []
    try:
        _, out, problem = trainer.minibatch_backward(data, torch.arange(mask.shape[0]), lr)
        if problem is not None:
            raise ValueError(f"the {trainer.method.name} loss is not finite (non-finite {problem}); no step was taken")
        for idx, logp, ent in trainer.taps:
            if logp.grad is not None:
                u[idx] = -logp.grad.detach().double().cpu()
            if ent.grad is not None:
                v[idx] = -ent.grad.detach().double().cpu()
        grads = {
            k: (p.grad.detach() if p.grad is not None else torch.zeros_like(p)) for k, p in params.items()
        }
    finally:
        trainer.taps = None
        trainer.optimizer.zero_grad(set_to_none=True)
        model.train(was)
    bad = [k for k, g in grads.items() if not bool(torch.isfinite(g).all())]
    if bad:
        raise ValueError(f"non-finite loss gradient in parameter(s) {bad[:3]}; no step was taken")
    metrics = out[0][0] if out else {}
    return grads, u.masked_fill(~mask, 0.0), v.masked_fill(~mask, 0.0), metrics


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
