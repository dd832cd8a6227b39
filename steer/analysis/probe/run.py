"""``steer probe``: which estimator predicts the entropy change of a real optimiser step?

One probe (paper section 3.1, Fig. 1-2, 10, 15; docs/probe.md):

1. sample rollouts from the policy on a task's prompts and score them (the trainer's sampling
   stage ``Trainer.sample``: the task's verifier or a ``steer.rewards`` scorer); the trainer's ``Trainer.step_data``
   gives their rewards, log-probs, entropies and the configured method's advantages;
2. at the rollout parameters theta_0 compute the token sums (``token_stats_from_logits``) and
   the gradient of the batch's total entropy ``grad H_batch`` (one backward);
3. for every optimiser setting (SGD or AdamW at a learning rate): from theta_0, the trainer's
   mini-batch backward of the configured loss over the whole batch (``Trainer.minibatch_backward``:
   scope statistics, ``Trainer.loss_batch``, ``Method.compute_loss``, on-policy, normalised over
   the batch's valid tokens), one real ``optimizer.step()`` from a fresh optimiser state, then
   the entropies at exactly the same states (same prompt and response tokens) at theta_1;
4. compare the measured per-token change ``H_t(theta_1) - H_t(theta_0)`` with every core estimator
   (``paper``, ``reference``, ``exact``, ``cov``), the JVP-linearised change of each state's entropy
   along the actual update (:func:`steer.train.jvp.linearised_entropy_change`) and the
   contribution of each token's own gradient (:func:`steer.train.jvp.per_token_cause`).

Entry point: :func:`run_probe` (a dict of every number; also written to ``out_dir``) and
:func:`run_sweep` (``steer probe --sweep``: the probe over testbed models of several widths, depths
and vocabulary sizes).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from steer.analysis.probe.measure import _probe_setting
from steer.analysis.probe.report import markdown_report, write_outputs
from steer.analysis.probe.settings import (
    DEFAULT_OPTIMIZERS,
    ESTIMATOR_NAMES,
    PAPER_FIG2,
    PROB_BUCKETS,
    OptimSetting,
    _log_default,
    parse_optimizers,
)
from steer.analysis.probe.step import _Batch, _entropies, _restore, _snapshot, probe_trainer
from steer.train.jvp import (
    entropy_gradient,
    require_eager_attention,
    trainable_parameters,
)

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "ESTIMATOR_NAMES",
    "PROB_BUCKETS",
    "OptimSetting",
    "markdown_report",
    "parse_optimizers",
    "run_probe",
    "write_outputs",
]


def _load_checkpoint(path, log):
    """A trainer checkpoint: the directory itself, or the newest valid one under a run folder or
    its ``checkpoints`` folder. ValueError when there is none or it is corrupt."""
    from steer.train import checkpoint as ckpt

    p = Path(path)
    if not (p / "manifest.json").exists():
        root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found, _ = ckpt.find_latest_valid(root, log=log)
        if found is None:
            raise ValueError(f"no valid steer train checkpoint in {path}")
        p = found
    try:
        return ckpt.load_checkpoint(p)
    except ckpt.CheckpointError as exc:
        raise ValueError(str(exc)) from exc


def _load_everything(cfg, model, tokenizer, task, log):
    from steer.train.tasks import build_task
    from steer.train.trainer import load_model_and_tokenizer, resolve_device

    device = resolve_device(cfg.model.device)
    if model is None or tokenizer is None:
        log(f"loading the policy ({cfg.model.source}: {cfg.model.name_or_path or 'testbed warm-start'})")
        model, tokenizer = load_model_and_tokenizer(cfg, log=log)
    model = model.to(device)
    require_eager_attention(model)
    if task is None:
        task = build_task(cfg.task)
    return model, tokenizer, task, device


def _check_arguments(grad_clip, bins) -> None:
    if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
        raise ValueError(f"grad_clip must be None or a finite number > 0, got {grad_clip!r}")
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


def _resolve_config(config, overrides: Sequence[str], loaded):
    """The probe's trainer config: a Config as given, the checkpoint run's own ``config.yaml``,
    or a config path or name (default ``"testbed"``) with ``overrides``."""
    from steer.train.config import Config, load_config

    if isinstance(config, Config):
        if overrides:
            raise ValueError("overrides need a config path or name, not a Config object")
        return config
    if config is None and loaded is not None:
        return load_config(loaded.path / "config.yaml", list(overrides))
    return load_config(config or "testbed", list(overrides))


def _sizes(cfg, num_prompts, n, micro_batch_size) -> tuple[int, int, int]:
    """Prompts, rollouts per prompt and rows per forward (the config's unless given)."""
    k = int(num_prompts if num_prompts is not None else cfg.trainer.prompts_per_step)
    n_roll = int(n if n is not None else cfg.rollout.n)
    if k < 1:
        raise ValueError(f"num_prompts must be >= 1, got {k}")
    if n_roll < 2:
        raise ValueError(
            f"n must be >= 2 (group-relative advantages need 2 rollouts per prompt), got {n_roll}"
        )
    mb = int(micro_batch_size if micro_batch_size is not None else cfg.trainer.micro_batch_size)
    return k, n_roll, mb


def _from_checkpoint(model, loaded, device, log) -> dict | None:
    """Load the checkpoint's weights into ``model``; its optimiser state (None without one)."""
    if loaded is None:
        return None
    try:
        model.load_state_dict({k: v.to(device) for k, v in loaded.model_state.items()})
    except RuntimeError as exc:
        raise ValueError(f"the checkpoint {loaded.path} does not fit the configured model: {exc}") from exc
    log(f"from checkpoint {loaded.path} (step {loaded.state.get('step')})")
    return loaded.optimizer_state


def _rollouts(trainer, k: int, n_roll: int, seed: int, log) -> dict:
    """``k`` prompts drawn with ``seed`` from the task's training pool, ``n_roll`` rollouts each,
    scored by the trainer's sampling stage (``Trainer.sample``): the rollouts, the correctness,
    the sampling time and the share of verification errors."""
    from steer.train.trainer import derive_seed, seed_all

    pool = trainer.task.train_problems()
    if len(pool) < k:
        raise ValueError(f"the task's training pool has {len(pool)} problems, fewer than num_prompts={k}")
    rng = np.random.default_rng(derive_seed(seed, "probe-prompts"))
    problems = [pool[i] for i in rng.permutation(len(pool))[:k]]
    seed_all(derive_seed(seed, "probe-rollouts"))
    log(
        f"sampling and scoring {k} prompts x {n_roll} rollouts "
        f"(max {trainer.cfg.rollout.max_new_tokens} new tokens)"
    )
    t0 = time.perf_counter()
    ro, correct, verify_error_frac = trainer.sample(problems, n_roll)
    return {"ro": ro, "correct": correct, "t_roll": time.perf_counter() - t0, "verify_error_frac": verify_error_frac}


def _check_advantages(advantages: Tensor, mask: Tensor) -> None:
    """ValueError when every valid token has advantage 0 (the step would not move the policy)."""
    if int(((advantages != 0) & mask).sum()) == 0:
        raise ValueError(
            "every valid token has advantage 0 (all groups equal-reward): the step would not move "
            "the policy; use more prompts or rollouts, or another seed"
        )


def _probe_batch(cfg, trainer, theta0, k, n_roll, seed, mb, log) -> dict:
    """Rollouts and the trainer's step data on them (rewards, the rollout log-probs and entropies,
    the method's advantages: ``Trainer.step_data``), the token sums at theta_0 and the gradient of
    the batch's total entropy."""
    model = trainer.model
    data = _rollouts(trainer, k, n_roll, seed, log)
    ro = data["ro"]
    batch = _Batch(ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    mask = batch.response_mask
    temperature = cfg.rollout.temperature
    log("token statistics and the entropy gradient at the rollout parameters")
    was = model.training
    try:
        sd = trainer.step_data(
            0, ro, data["correct"], t_rollout=data["t_roll"], verify_error_frac=data["verify_error_frac"]
        )
    finally:
        model.train(was)
    sd.advantages = sd.advantages.masked_fill(~mask, 0.0)
    if "ref_logp" in trainer.method.requires:
        sd.ref_logp = sd.old_logp  # the reference policy is theta_0
    _check_advantages(sd.advantages, mask)
    sums = _entropies(model, batch, temperature, mb, with_sums=True)
    base = {
        "logp": sd.old_logp,
        "entropy": sd.old_entropy,
        "sum_p2": sums["sum_p2"],
        "sum_p2_logp": sums["sum_p2_logp"],
    }
    grad_h = entropy_gradient(model, batch, params=theta0, temperature=temperature, micro_batch_size=mb)
    return {
        **data,
        "step_data": sd,
        "rewards": sd.rewards,
        "batch": batch,
        "base": base,
        "advantages": sd.advantages,
        "grad_h": grad_h,
    }


def _run_settings(
    settings, trainer, cfg, data, params, theta0, grad_clip, mb, bins, adam_state, keep, log
):
    """Every optimiser setting, one real step each from theta_0 (the method's random state reset
    before each, so every setting draws the same random tokens: Clip-Cov, ...); ``keep``: keep
    each setting's parameter update."""
    results: dict[str, dict] = {}
    tokens: dict[str, dict[str, Tensor]] = {}
    updates: dict[str, dict[str, Tensor]] = {}
    log(f"{len(settings)} optimiser setting(s), one real step each from the same parameters")
    method, model = trainer.method, trainer.model
    method_state = method.state_dict()
    for s in settings:
        method.load_state_dict(method_state)
        r, tok, upd = _probe_setting(
            s,
            model=model,
            method=method,
            trainer=trainer,
            step_data=data["step_data"],
            batch=data["batch"],
            base=data["base"],
            advantages=data["advantages"],
            params=params,
            theta0=theta0,
            grad_h=data["grad_h"],
            optim_cfg=cfg.optim,
            grad_clip=grad_clip,
            temperature=cfg.rollout.temperature,
            mb=mb,
            bins=bins,
            log=log,
            adam_state=adam_state,
        )
        results[s.tag] = r
        tokens[s.tag] = tok
        if keep:  # the parameter updates only when asked for (memory-hungry on a large model)
            updates[s.tag] = upd
    return results, tokens, updates


def _model_info(cfg, model, params, device) -> dict:
    mc = getattr(model, "config", None)
    return {
        "source": cfg.model.source,
        "name_or_path": cfg.model.name_or_path,
        "parameters": int(sum(p.numel() for p in params.values())),
        "vocab_size": int(getattr(mc, "vocab_size", 0) or 0),
        "hidden_size": int(getattr(mc, "hidden_size", 0) or 0),
        "num_hidden_layers": int(getattr(mc, "num_hidden_layers", 0) or 0),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(device),
    }


def _data_info(cfg, data: dict, k: int, n_roll: int) -> dict:
    correct, mask, adv = data["correct"], data["batch"].response_mask, data["advantages"]
    groups = correct.view(-1, n_roll).float().mean(1)
    return {
        "task": cfg.task.name,
        "train_path": cfg.task.train_path,
        "prompts": k,
        "rollouts_per_prompt": n_roll,
        "responses": int(data["ro"].batch_size),
        "valid_tokens": int(mask.sum()),
        "tokens_with_nonzero_advantage": int(((adv != 0) & mask).sum()),
        "accuracy": float(correct.float().mean()),
        "groups_equal_reward": float(((groups == 0) | (groups == 1)).float().mean()),
        "entropy_mean": float(data["base"]["entropy"][mask].double().mean()),
        "temperature": cfg.rollout.temperature,
    }


def _output(cfg, method, model, params, device, data, results, k, n_roll, seed, grad_clip, loaded) -> dict:
    """The probe's result (``time_s.total`` filled in by the caller)."""
    from steer.train.config import to_dict

    return {
        "version": 1,
        "model": _model_info(cfg, model, params, device),
        "method": {"name": method.name, "config": {k: v for k, v in cfg.method.items()}},
        "data": _data_info(cfg, data, k, n_roll),
        "settings": results,
        "paper_fig2": PAPER_FIG2,
        "time_s": {"rollout": data["t_roll"], "total": None},
        "config": to_dict(cfg),
        "seed": seed,
        "grad_clip": grad_clip,
        "checkpoint": None
        if loaded is None
        else {"path": str(loaded.path), "step": loaded.state.get("step")},
        "prob_buckets": list(PROB_BUCKETS),
    }


def run_probe(
    config=None,
    overrides: Sequence[str] = (),
    *,
    model=None,
    tokenizer=None,
    task=None,
    optimizers: Sequence = DEFAULT_OPTIMIZERS,
    num_prompts: int | None = None,
    n: int | None = None,
    grad_clip: float | None = None,
    micro_batch_size: int | None = None,
    seed: int = 0,
    bins: int = 20,
    out_dir: str | Path | None = None,
    plots: bool = True,
    return_details: bool = False,
    checkpoint: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the probe; returns a dict of every number (see docs/probe.md, "Output").

    ``config``: a trainer config (a path, a shipped config name such as ``"testbed"``, or a
    :class:`steer.train.config.Config`; default ``"testbed"``) with dotted ``overrides``: it sets the
    policy (``model.*``: the testbed warm-start, or ``model.source=hf model.name_or_path=PATH``),
    the prompts (``task.*``: countdown, or ``task.name=math task.train_path=FILE.parquet``), the
    sampler (``rollout.*``), the method (``method.name``, ``method.*``), AdamW's betas/eps/weight
    decay (``optim.*``), the device and dtype. ``model``/``tokenizer``/``task`` replace the loaded ones.

    ``optimizers``: settings such as ``["sgd:1", "adamw:1e-4"]`` (:func:`parse_optimizers`); each is
    one step from the same rollout parameters with a fresh optimiser state. ``num_prompts`` (default
    ``trainer.prompts_per_step``) prompts drawn with ``seed`` from the task's training pool, ``n``
    rollouts each (default ``rollout.n``). ``grad_clip``: clip the gradient norm like the trainer
    (None = no clipping). ``micro_batch_size``: rows per forward (default
    ``trainer.micro_batch_size``, 0 = all). Writes ``probe.json``, ``probe.md``, ``tokens.npz`` and
    PNGs into ``out_dir`` when given. The model's parameters are restored to theta_0 at the end
    (a model passed in stays switched to eager attention, which forward-mode AD needs).
    ``checkpoint``: a ``steer train`` checkpoint directory (``.../checkpoints/step_00000040``, or a
    run folder or its ``checkpoints`` folder: the newest valid one): the probe starts from its
    weights, every AdamW setting from its optimiser state (the setting's learning rate replaces the
    run's), and ``config`` defaults to the run's own ``config.yaml`` (``overrides`` still apply).
    ``return_details`` adds ``out["details"]``: the batch, rewards, advantages, the theta_0
    statistics, the per-token arrays of every setting and each setting's parameter update (tensors;
    not written to the JSON; memory-hungry on a large model).
    """
    from steer.train.config import build_method_from_config

    log = log or _log_default
    settings = parse_optimizers(optimizers)
    _check_arguments(grad_clip, bins)
    loaded = _load_checkpoint(checkpoint, log) if checkpoint is not None else None
    cfg = _resolve_config(config, overrides, loaded)
    k, n_roll, mb = _sizes(cfg, num_prompts, n, micro_batch_size)
    torch.set_num_threads(cfg.trainer.num_threads or (os.cpu_count() or 1))
    t_start = time.perf_counter()
    method = build_method_from_config(cfg)
    model, tokenizer, task, device = _load_everything(cfg, model, tokenizer, task, log)
    adam = _from_checkpoint(model, loaded, device, log)  # AdamW state from the checkpoint
    params = trainable_parameters(model)
    theta0 = _snapshot(params)
    trainer = probe_trainer(cfg, method, model, tokenizer, task, mb, log)
    try:
        data = _probe_batch(cfg, trainer, theta0, k, n_roll, seed, mb, log)
        results, tokens, updates = _run_settings(
            settings, trainer, cfg, data, params, theta0, grad_clip, mb, bins, adam, return_details, log
        )
    finally:
        _restore(params, theta0)
    out = _output(cfg, method, model, params, device, data, results, k, n_roll, seed, grad_clip, loaded)
    out["time_s"]["total"] = time.perf_counter() - t_start
    if out_dir is not None:
        write_outputs(out, tokens, out_dir, plots=plots, log=log)
    if return_details:
        keys = ("batch", "rewards", "advantages", "base")
        out["details"] = {**{key: data[key] for key in keys}, "tokens": tokens, "updates": updates}
    return out
