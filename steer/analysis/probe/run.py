"""``steer probe``: which estimator predicts the entropy change of a real optimiser step?

One probe (paper section 3.1, Fig. 1-2, 10, 15; docs/probe.md):

1. sample rollouts from the policy on a task's prompts (the trainer's ``generate_rollouts``), score
   them (the task's verifier or a ``steer.rewards`` scorer), compute the configured method's
   advantages (``Method.compute_advantages``);
2. at the rollout parameters theta_0 compute the token statistics (``token_stats_from_logits``) and
   the gradient of the batch's total entropy ``grad H_batch`` (one backward);
3. for every optimiser setting (SGD or AdamW at a learning rate): from theta_0, one forward of the
   configured loss (``Method.compute_loss``, on-policy, normalised over the batch's valid tokens as
   the trainer does), one backward, one real ``optimizer.step()`` from a fresh optimiser state, then
   the entropies at exactly the same states (same prompt and response tokens) at theta_1;
4. compare the measured per-token change ``H_t(theta_1) - H_t(theta_0)`` with every core estimator
   (``paper``, ``reference``, ``exact``, ``cov``), the JVP-linearised change of each state's entropy
   along the actual update (:func:`steer.analysis.jvp.linearised_entropy_change`) and the
   contribution of each token's own gradient (:func:`steer.analysis.jvp.per_token_cause`).

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

from steer.analysis.jvp import (
    entropy_gradient,
    require_eager_attention,
    trainable_parameters,
)
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
from steer.analysis.probe.step import _Batch, _entropies, _restore, _snapshot
from steer.core.types import RolloutBatch

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
    from steer.train.config import Config, build_method_from_config, load_config, to_dict
    from steer.train.rollout import generate_rollouts
    from steer.train.tasks import format_prompt, score_batch
    from steer.train.trainer import derive_seed, seed_all

    log = log or _log_default
    settings = parse_optimizers(optimizers)
    if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
        raise ValueError(f"grad_clip must be None or a finite number > 0, got {grad_clip!r}")
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    loaded = _load_checkpoint(checkpoint, log) if checkpoint is not None else None
    if isinstance(config, Config):
        cfg = config
        if overrides:
            raise ValueError("overrides need a config path or name, not a Config object")
    elif config is None and loaded is not None:
        cfg = load_config(loaded.path / "config.yaml", list(overrides))
    else:
        cfg = load_config(config or "testbed", list(overrides))
    k = int(num_prompts if num_prompts is not None else cfg.trainer.prompts_per_step)
    n_roll = int(n if n is not None else cfg.rollout.n)
    if k < 1:
        raise ValueError(f"num_prompts must be >= 1, got {k}")
    if n_roll < 2:
        raise ValueError(
            f"n must be >= 2 (group-relative advantages need 2 rollouts per prompt), got {n_roll}"
        )
    mb = int(micro_batch_size if micro_batch_size is not None else cfg.trainer.micro_batch_size)
    threads = cfg.trainer.num_threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    t_start = time.perf_counter()

    method = build_method_from_config(cfg)
    model, tokenizer, task, device = _load_everything(cfg, model, tokenizer, task, log)
    adam_state = None
    if loaded is not None:
        try:
            model.load_state_dict({k: v.to(device) for k, v in loaded.model_state.items()})
        except RuntimeError as exc:
            raise ValueError(
                f"the checkpoint {loaded.path} does not fit the configured model: {exc}"
            ) from exc
        adam_state = loaded.optimizer_state
        log(f"from checkpoint {loaded.path} (step {loaded.state.get('step')})")
    params = trainable_parameters(model)
    n_params = sum(p.numel() for p in params.values())
    theta0 = _snapshot(params)
    try:
        pool = task.train_problems()
        if len(pool) < k:
            raise ValueError(f"the task's training pool has {len(pool)} problems, fewer than num_prompts={k}")
        rng = np.random.default_rng(derive_seed(seed, "probe-prompts"))
        problems = [pool[i] for i in rng.permutation(len(pool))[:k]]
        prompts = [format_prompt(tokenizer, task, p) for p in problems]
        seed_all(derive_seed(seed, "probe-rollouts"))
        log(f"sampling {k} prompts x {n_roll} rollouts (max {cfg.rollout.max_new_tokens} new tokens)")
        t0 = time.perf_counter()
        ro = generate_rollouts(
            model,
            tokenizer,
            prompts,
            n_roll,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            max_new_tokens=cfg.rollout.max_new_tokens,
            max_prompt_tokens=cfg.rollout.max_prompt_tokens,
            generation_batch_size=cfg.rollout.generation_batch_size,
        )
        t_roll = time.perf_counter() - t0
        log(f"scoring {ro.batch_size} responses")
        correct = torch.tensor(
            score_batch(task, [problems[i // n_roll] for i in range(ro.batch_size)], ro.texts),
            dtype=torch.bool,
        )
        rewards = torch.where(
            correct, torch.tensor(cfg.task.reward_correct), torch.tensor(cfg.task.reward_wrong)
        ).float()
        batch = _Batch(ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
        mask = batch.response_mask
        temperature = cfg.rollout.temperature
        log("token statistics and the entropy gradient at the rollout parameters")
        base = _entropies(model, batch, temperature, mb, with_sums=True)
        rb = RolloutBatch(
            rewards=rewards,
            group_ids=ro.group_ids,
            response_mask=mask,
            old_logp=base["logp"],
            old_entropy=base["entropy"] if method.needs_old_entropy else None,
        )
        advantages = method.compute_advantages(rb).detach().float().masked_fill(~mask, 0.0)
        n_tok = int(mask.sum())
        nonzero = int(((advantages != 0) & mask).sum())
        if nonzero == 0:
            raise ValueError(
                "every valid token has advantage 0 (all groups equal-reward): the step would not move "
                "the policy; use more prompts or rollouts, or another seed"
            )
        grad_h = entropy_gradient(model, batch, params=theta0, temperature=temperature, micro_batch_size=mb)
        results: dict[str, dict] = {}
        tokens: dict[str, dict[str, Tensor]] = {}
        updates: dict[str, dict[str, Tensor]] = {}
        log(f"{len(settings)} optimiser setting(s), one real step each from the same parameters")
        method_state = method.state_dict()  # every setting draws the same random tokens (Clip-Cov, ...)
        for s in settings:
            method.load_state_dict(method_state)
            r, tok, upd = _probe_setting(
                s,
                model=model,
                method=method,
                batch=batch,
                base=base,
                advantages=advantages,
                params=params,
                theta0=theta0,
                grad_h=grad_h,
                optim_cfg=cfg.optim,
                grad_clip=grad_clip,
                temperature=temperature,
                mb=mb,
                bins=bins,
                log=log,
                max_len=int(cfg.rollout.max_new_tokens),
                adam_state=adam_state,
            )
            results[s.tag] = r
            tokens[s.tag] = tok
            if return_details:
                updates[s.tag] = upd
    finally:
        _restore(params, theta0)
    groups = correct.view(-1, n_roll).float().mean(1)
    out = {
        "version": 1,
        "model": {
            "source": cfg.model.source,
            "name_or_path": cfg.model.name_or_path,
            "parameters": int(n_params),
            "vocab_size": int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0),
            "hidden_size": int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0),
            "num_hidden_layers": int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "device": str(device),
        },
        "method": {"name": method.name, "config": {k: v for k, v in cfg.method.items()}},
        "data": {
            "task": cfg.task.name,
            "train_path": cfg.task.train_path,
            "prompts": k,
            "rollouts_per_prompt": n_roll,
            "responses": int(ro.batch_size),
            "valid_tokens": n_tok,
            "tokens_with_nonzero_advantage": nonzero,
            "accuracy": float(correct.float().mean()),
            "groups_equal_reward": float(((groups == 0) | (groups == 1)).float().mean()),
            "entropy_mean": float(base["entropy"][mask].double().mean()),
            "temperature": temperature,
        },
        "settings": results,
        "paper_fig2": PAPER_FIG2,
        "time_s": {"rollout": t_roll, "total": time.perf_counter() - t_start},
        "config": to_dict(cfg),
        "seed": seed,
        "grad_clip": grad_clip,
        "checkpoint": None
        if loaded is None
        else {"path": str(loaded.path), "step": loaded.state.get("step")},
        "prob_buckets": list(PROB_BUCKETS),
    }
    if out_dir is not None:
        write_outputs(out, tokens, out_dir, plots=plots, log=log)
    if return_details:
        out["details"] = {
            "batch": batch,
            "rewards": rewards,
            "advantages": advantages,
            "base": base,
            "tokens": tokens,
            "updates": updates,
        }
    return out
