"""The GRPO trainer: one process, CPU or one GPU (section 2.1 and appendix E.2 of the paper).

One step:

1. sample ``prompts_per_step`` training prompts (a fixed permutation per epoch of the pool);
2. ``rollout.n`` responses each with HF ``generate`` (temperature / top-p / top-k);
3. reward each response (task verifier or math scorer; R = +1 / -1 as in section 2.1);
4. old log-probs and old entropy from a no-grad forward (the rollout policy, Eq. 2's pi_old);
   reference log-probs when the method needs a KL term;
5. ``method.compute_advantages(RolloutBatch)`` (Eq. 1 for GRPO);
6. ``ppo_epochs`` passes over ``num_mini_batches`` mini-batches of the same rollouts, each one
   AdamW step: forward -> ``token_stats_from_logits`` on the response positions (temperature
   of the sampler) -> ``LossBatch`` (``global_num_tokens`` = valid tokens of the mini-batch, and
   the mini-batch's MAX-reduced ``method.scope_stats`` when the method has any) ->
   ``method.compute_loss`` -> backward (accumulated over micro-batches) -> gradient clipping ->
   optimiser step. The trainer knows no method by name: what a method reads comes from
   ``method.requires``, its mini-batch statistics from ``method.scope_stats``. A non-finite
   input (``steer.core.errors.NonFiniteError``, caught by type), loss or gradient norm never
   reaches the weights: the step is skipped and counted (``trainer.nonfinite=skip``) or the run
   stops (``stop``).
7. metrics: every key of the method's per-micro-batch metrics is reduced over the step by its
   declared reduction (``steer.core.metrics``: sum, token-weighted mean, min, max; shares and
   clip fractions derived from the reduced sums).

Randomness: every step re-seeds python, numpy and torch from ``(seed, step)``, and evaluation
seeds from ``(seed, step, "eval")`` and restores the stream afterwards, so a run resumed from a
checkpoint draws exactly what the uninterrupted run drew (the RNG states are checkpointed too).

Whole jobs of the trainer live beside it: the cause stage of a mini-batch in
:mod:`steer.train.cause_stage`, the step's metrics record in :mod:`steer.train.step_record`, the
run folder (fresh, replaced or resumed) and the checkpoints in :mod:`steer.train.runstate`.
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from steer.core.errors import NonFiniteError
from steer.core.types import LossBatch, RolloutBatch
from steer.train import cause_stage, runstate
from steer.train.config import Config, build_method_from_config, to_yaml
from steer.train.evaluate import evaluate_heldout
from steer.train.metrics import JsonlLogger, TensorBoardLogger
from steer.train.rollout import Rollouts, generate_rollouts, response_token_stats
from steer.train.step_record import UpdateTally, step_record
from steer.train.tasks import Task, build_task, format_prompt, score_batch

__all__ = ["NonFiniteError", "StepData", "Trainer", "derive_seed", "load_model_and_tokenizer"]


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (stable across processes and Python versions)."""
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model_and_tokenizer(cfg: Config, *, log=print):
    """The policy and its tokenizer: the cached warm-started testbed policy, or a HF model."""
    dtype = _DTYPES[cfg.model.dtype]
    if cfg.model.source == "testbed":
        from steer.testbed import load_policy

        path = cfg.model.name_or_path
        if not path:
            from steer.testbed import warm_start

            path = warm_start(dict(cfg.warm_start.overrides), cfg.warm_start.cache_dir)
        model, tok = load_policy(path, dtype=dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from steer.models import resolve

        src = resolve(cfg.model.name_or_path, log=log)  # a named model -> its converted folder
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.model.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code
        )
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tok


@dataclass
class StepData:
    """Everything the update of one step works on."""

    step: int
    rollouts: Rollouts
    correct: Tensor  # (B,) bool
    rewards: Tensor  # (B,)
    old_logp: Tensor  # (B, T)
    old_entropy: Tensor  # (B, T)
    ref_logp: Tensor | None
    advantages: Tensor  # (B, T)
    t_rollout: float = 0.0
    t_old: float = 0.0
    verify_error_frac: float = 0.0  # rollouts whose verification errored or timed out (scored wrong)


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------


class Trainer:
    """GRPO-style RLVR trainer for any method of ``steer.core.registry``."""

    def __init__(
        self,
        cfg: Config,
        *,
        model=None,
        tokenizer=None,
        task: Task | None = None,
        method=None,
        log=None,
        on_step=None,
    ):
        """``on_step(record)``, when given, is called with every metrics record as it is written
        (the step-0 evaluation included), e.g. to report progress from another process."""
        self.cfg = cfg
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.on_step = on_step
        threads = cfg.trainer.num_threads or (os.cpu_count() or 1)
        torch.set_num_threads(threads)
        self.device = resolve_device(cfg.model.device)
        self.method = method if method is not None else build_method_from_config(cfg)
        if model is None or tokenizer is None:
            model, tokenizer = load_model_and_tokenizer(cfg, log=self.log)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.task = task if task is not None else build_task(cfg.task)
        self._warn_eval_entropy_memory()
        self.ref_model = None
        if "ref_logp" in self.method.requires:
            self.ref_model = copy.deepcopy(self.model).eval()
            for p in self.ref_model.parameters():
                p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        self.out_dir = Path(cfg.logging.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.step = 0
        self.best_value: float | None = None
        self.nonfinite_skips = 0
        self.consecutive_skips = 0
        self.last_heldout: dict = {}
        self.last_cause = None  # the last mini-batch's cause pass (methods that require "cause")
        self._jsonl: JsonlLogger | None = None
        self._tb: TensorBoardLogger | None = None
        self._equal_streak = 0  # consecutive steps where most groups had equal rewards
        self.interrupted = False  # set when fit() was stopped by Ctrl-C

    # ------------------------------------------------------------------ helpers

    def _warn_eval_entropy_memory(self) -> None:
        """``eval.entropy`` keeps the raw logits of a whole ``generate`` call; say so when that is
        large (a big vocabulary)."""
        e = self.cfg.eval
        if not e.entropy:
            return
        vocab = getattr(getattr(self.model, "config", None), "vocab_size", None) or len(self.tokenizer)
        tokens = e.max_new_tokens or self.cfg.rollout.max_new_tokens
        gib = e.batch_size * tokens * int(vocab) * 4 / 2**30
        if gib > 2:
            self.log(
                f"warning: eval.entropy=true keeps the raw logits of each held-out generate call, about "
                f"{gib:.0f} GiB (eval.batch_size={e.batch_size} x {tokens} tokens x vocabulary {vocab}); "
                "set eval.entropy=false or lower eval.batch_size"
            )

    def current_lr(self, step: int) -> float:
        w = self.cfg.optim.warmup_steps
        scale = 1.0 if w <= 0 else min(1.0, (step + 1) / w)
        return self.cfg.optim.lr * scale

    def _problems_for_step(self, step: int) -> list:
        """Prompts of step ``step`` (0-based): consecutive slices of a per-epoch permutation of
        the training pool, derived from (seed, epoch) only."""
        pool = self.task.train_problems()
        k = self.cfg.trainer.prompts_per_step
        if len(pool) < k:
            raise ValueError(
                f"the training pool has {len(pool)} problems, fewer than trainer.prompts_per_step={k}"
            )
        per_epoch = len(pool) // k
        epoch, idx = divmod(step, per_epoch)
        perm = np.random.default_rng(derive_seed(self.cfg.trainer.seed, "data", epoch)).permutation(len(pool))
        return [pool[i] for i in perm[idx * k : (idx + 1) * k]]

    def _stats(self, model, ro: Rollouts, idx: Tensor, *, with_sums: bool):
        return response_token_stats(
            model,
            ro.prompt_ids[idx],
            ro.prompt_mask[idx],
            ro.response_ids[idx],
            temperature=self.cfg.rollout.temperature,
            with_sums=with_sums,
        )

    def _chunks(self, n: int) -> list[Tensor]:
        size = self.cfg.trainer.micro_batch_size or n
        return [torch.arange(s, min(n, s + size)) for s in range(0, n, size)]

    @torch.no_grad()
    def _old_forward(self, ro: Rollouts) -> tuple[Tensor, Tensor, Tensor | None]:
        """Old log-probs and entropy (always: Eq. 4 is logged every step), reference log-probs."""
        self.model.eval()
        logps, ents, refs = [], [], []
        for idx in self._chunks(ro.batch_size):
            st = self._stats(self.model, ro, idx, with_sums=False)
            logps.append(st.logp.float().cpu())
            ents.append(st.entropy.float().cpu())
            if self.ref_model is not None:
                refs.append(self._stats(self.ref_model, ro, idx, with_sums=False).logp.float().cpu())
        mask = ro.response_mask
        old_logp = torch.cat(logps).masked_fill(~mask, 0.0)
        old_ent = torch.cat(ents).masked_fill(~mask, 0.0)
        ref = torch.cat(refs).masked_fill(~mask, 0.0) if refs else None
        return old_logp, old_ent, ref

    def loss_batch(
        self,
        data: StepData,
        idx: Tensor,
        *,
        lr: float,
        global_num_tokens: float,
        global_num_seqs: float,
        scope_stats: dict[str, Tensor] | None = None,
        token_cause: Tensor | None = None,
        cause_offset: float | None = None,
        entropy_graph: bool = False,
    ) -> LossBatch:
        """The :class:`LossBatch` of the responses ``idx`` of a step (one micro-batch): a forward
        of the current policy on them (``token_stats_from_logits`` at the sampler's temperature),
        plus what ``method.requires`` asks for, and the configured maximum response length
        (``rollout.max_new_tokens``, the constant of Dr. GRPO's aggregation), on the model's
        device; ``token_cause`` (the whole step's (B, T), rows ``idx`` taken) and ``cause_offset``
        from the mini-batch's cause pass when the method requires ``"cause"``; ``entropy_graph``
        keeps the entropy's graph whatever the method needs (the cause pass). Gradients flow unless
        called under ``torch.no_grad()``. The one place a loss batch is built."""
        req = self.method.requires
        st = self._stats(self.model, data.rollouts, idx, with_sums="sums" in req)
        dev = st.logp.device
        return LossBatch(
            logp=st.logp,
            old_logp=data.old_logp[idx].to(dev),
            advantages=data.advantages[idx].to(dev),
            response_mask=data.rollouts.response_mask[idx].to(dev),
            # a method that needs no entropy still gets a detached copy: its quadrant metrics
            # (sign of A x sign of the entropy-change indicator) need it, its gradient does not
            entropy=st.entropy if ("entropy" in req or entropy_graph) else st.entropy.detach(),
            old_entropy=data.old_entropy[idx].to(dev) if "old_entropy" in req else None,
            sum_p2=st.sum_p2 if "sums" in req else None,
            sum_p2_logp=st.sum_p2_logp if "sums" in req else None,
            ref_logp=data.ref_logp[idx].to(dev) if data.ref_logp is not None else None,
            lr=lr,
            global_num_tokens=float(global_num_tokens),
            global_num_seqs=float(global_num_seqs),
            max_response_length=int(self.cfg.rollout.max_new_tokens),
            scope_stats=scope_stats,
            token_cause=token_cause[idx].to(dev) if token_cause is not None else None,
            cause_offset=cause_offset,
        )

    def _handle_nonfinite(self, what: str, step: int, mb: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.trainer.nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite {what} at step {step}, mini-batch {mb} (trainer.nonfinite=stop)", name=what
            )
        self.nonfinite_skips += 1
        self.consecutive_skips += 1
        self.log(f"warning: non-finite {what} at step {step}, mini-batch {mb}: optimiser step skipped")
        limit = self.cfg.trainer.max_nonfinite_skips
        if limit and self.consecutive_skips > limit:
            raise NonFiniteError(
                f"{self.consecutive_skips} consecutive non-finite optimiser steps "
                f"(trainer.max_nonfinite_skips={limit})",
                name=what,
            )

    # ------------------------------------------------------------------ one step

    def collect(self, step: int) -> StepData:
        """Stages 1-5 of a step: prompts, rollouts, rewards, old/ref log-probs, advantages.
        Re-seeds every RNG from ``(seed, step)`` first."""
        seed_all(derive_seed(self.cfg.trainer.seed, "step", step))
        t0 = time.perf_counter()
        problems = self._problems_for_step(step)
        ro, correct, verify_error_frac = self.sample(problems, self.cfg.rollout.n)
        return self.step_data(
            step, ro, correct, t_rollout=time.perf_counter() - t0, verify_error_frac=verify_error_frac
        )

    def sample(self, problems: list, n: int) -> tuple[Rollouts, Tensor, float]:
        """Stages 1-2 on given problems: ``n`` rollouts of each (rows grouped by problem) with the
        configured sampling, and their verdicts. Returns ``(rollouts, correct, verify_error_frac)``:
        ``correct`` (B,) bool; ``verify_error_frac`` the share whose verification errored or timed
        out (scored wrong). Draws from the global RNGs as they stand: seed them first."""
        cfg = self.cfg
        prompts = [format_prompt(self.tokenizer, self.task, p) for p in problems]
        ro = generate_rollouts(
            self.model,
            self.tokenizer,
            prompts,
            n,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            max_new_tokens=cfg.rollout.max_new_tokens,
            max_prompt_tokens=cfg.rollout.max_prompt_tokens,
            generation_batch_size=cfg.rollout.generation_batch_size,
        )
        correct = torch.tensor(
            score_batch(self.task, [problems[i // n] for i in range(ro.batch_size)], ro.texts),
            dtype=torch.bool,
        )
        return ro, correct, float(getattr(self.task, "last_verify_error_frac", 0.0))

    def step_data(
        self,
        step: int,
        ro: Rollouts,
        correct: Tensor,
        *,
        t_rollout: float = 0.0,
        verify_error_frac: float = 0.0,
    ) -> StepData:
        """Stages 3-5 of a step on given rollouts and their verdicts (``correct``, (B,) bool;
        ``verify_error_frac``: the share of them whose verification errored or timed out, scored
        wrong): rewards, old/ref log-probs of the current policy, advantages."""
        cfg = self.cfg
        rewards = torch.where(
            correct, torch.tensor(cfg.task.reward_correct), torch.tensor(cfg.task.reward_wrong)
        ).float()
        t1 = time.perf_counter()
        old_logp, old_ent, ref_logp = self._old_forward(ro)
        rb = RolloutBatch(
            rewards=rewards,
            group_ids=ro.group_ids,
            response_mask=ro.response_mask,
            old_logp=old_logp,
            old_entropy=old_ent if "old_entropy" in self.method.requires else None,
        )
        advantages = self.method.compute_advantages(rb).detach().float()
        if advantages.shape != ro.response_mask.shape:
            raise ValueError(
                f"{self.method.name}.compute_advantages returned shape {tuple(advantages.shape)}, "
                f"expected {tuple(ro.response_mask.shape)}"
            )
        return StepData(
            step=step,
            rollouts=ro,
            correct=correct,
            rewards=rewards,
            old_logp=old_logp,
            old_entropy=old_ent,
            ref_logp=ref_logp,
            advantages=advantages,
            t_rollout=t_rollout,
            t_old=time.perf_counter() - t1,
            verify_error_frac=verify_error_frac,
        )

    def minibatch_backward(self, data: StepData, mb_idx: Tensor, lr: float) -> tuple[float, list, str | None]:
        """Zero the gradients, then forward + ``method.compute_loss`` + backward over the
        micro-batches of one mini-batch (``mb_idx``: row indices), the loss normalised by the
        mini-batch's valid tokens. Returns ``(loss, [(metrics, tokens)], problem)`` where
        ``problem`` is None, or the name of what was non-finite (``"loss"``, or the input the
        core rejected: ``"logits"``, ``"omega"``, ...); nothing is stepped.

        Methods with scope statistics (``method.scope_stats``, e.g. STEER's max|Omega| with
        ``scope=minibatch``) need them over the whole mini-batch before any loss: the first
        micro-batch's own forward is probed, and when it returns statistics and there are
        several micro-batches, the others get a no-grad forward first and every key is
        reduced over them (``method.reduce_scope_stats``: the MAX, or the weighting's own
        reduction) into ``LossBatch.scope_stats``. Otherwise there is no extra pass.

        A method that requires ``"cause"`` first gets the mini-batch's cause pass
        (:func:`steer.train.cause_stage.cause_pass`: one backward of the mini-batch's entropy and one
        forward-mode pass); it is kept in ``self.last_cause`` for the realised-change log."""
        mask = data.rollouts.response_mask
        norm = dict(
            lr=lr,
            global_num_tokens=max(float(mask[mb_idx].sum()), 1.0),
            global_num_seqs=float(mask[mb_idx].any(1).sum()),
        )
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        out: list = []
        chunks = [mb_idx[rel] for rel in self._chunks(len(mb_idx))]
        self.last_cause = None
        try:
            if "cause" in self.method.requires or self.cfg.trainer.cause_probe:
                cp = cause_stage.cause_pass(self, data, mb_idx, chunks, norm)
                full = torch.zeros(mask.shape, dtype=torch.float32)
                full[mb_idx] = cp.direction.float().cpu() * cp.clip_coef_used
                norm["token_cause"] = full
                norm["cause_offset"] = cp.offset
                self.last_cause = cp
            first = self.loss_batch(data, chunks[0], **norm)
            if len(chunks) > 1:
                stats = self.method.scope_stats(first)
                if stats:
                    with torch.no_grad():
                        more = [self.method.scope_stats(self.loss_batch(data, idx, **norm)) for idx in chunks[1:]]
                    stats = self.method.reduce_scope_stats([stats, *more])
                    first.scope_stats = stats
                    norm["scope_stats"] = stats
            for i, idx in enumerate(chunks):
                lb = first if i == 0 else self.loss_batch(data, idx, **norm)
                loss, metrics = self.method.compute_loss(lb)
                if not bool(torch.isfinite(loss).all()):
                    return total, out, "loss"
                loss.backward()
                total += float(loss.detach())
                out.append((metrics, float(mask[idx].sum())))
                del lb
                first = None
        except NonFiniteError as exc:
            return total, out, exc.name or "input"
        return total, out, None

    def update_minibatch(self, data: StepData, mb_idx: Tensor, lr: float) -> dict:
        """One optimiser step on the rows ``mb_idx``: :meth:`minibatch_backward`, gradient clipping,
        the step, and (with the cause pass) the realised entropy change. Returns ``{"problem"}``
        (None, or what was non-finite: then nothing was stepped and the gradients are left for the
        caller to clear), ``"loss"``, ``"grad_norm"``, ``"metrics"`` ([(metrics, tokens)] per
        micro-batch) and ``"cause"`` (the :func:`steer.train.cause_stage.realised_change` record,
        or None)."""
        cfg = self.cfg
        mb_loss, mb_metrics, bad = self.minibatch_backward(data, mb_idx, lr)
        gn = None
        if bad is None:
            params = [p for p in self.model.parameters() if p.grad is not None]
            gn = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip, error_if_nonfinite=False)
            if not bool(torch.isfinite(gn)):
                bad = "gradient"
        out = {"problem": bad, "loss": mb_loss, "grad_norm": float("nan"), "metrics": mb_metrics, "cause": None}
        if bad is not None:
            return out
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        clip_coef = min(1.0, cfg.optim.grad_clip / (float(gn) + 1e-6))  # clip_grad_norm_'s factor
        if self.last_cause is not None:
            out["cause"] = cause_stage.realised_change(self, data, mb_idx, mb_metrics, clip_coef)
        out["grad_norm"] = float(gn)
        return out

    def train_step(self, step: int) -> dict:
        """One GRPO step (0-based ``step``); returns its metrics record (without held-out keys)."""
        t0 = time.perf_counter()
        rec = self.update(self.collect(step))
        rec["time/step"] = time.perf_counter() - t0
        return rec

    def update(self, data: StepData) -> dict:
        """Stages 6-9 of a step: the mini-batch updates of ``data`` (``trainer.ppo_epochs`` passes)
        and the step's metrics record (without held-out keys and ``time/step``;
        :func:`steer.train.step_record.step_record`)."""
        cfg = self.cfg
        step = data.step
        lr = self.current_lr(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.train()
        tally = UpdateTally()
        B = data.rollouts.batch_size
        mb_size = B // cfg.trainer.num_mini_batches
        t2 = time.perf_counter()
        for epoch in range(cfg.trainer.ppo_epochs):
            if cfg.trainer.shuffle_mini_batches:
                g = torch.Generator().manual_seed(derive_seed(cfg.trainer.seed, "shuffle", step, epoch))
                order = torch.randperm(B, generator=g)
            else:
                order = torch.arange(B)
            for mb in range(cfg.trainer.num_mini_batches):
                mb_idx = order[mb * mb_size : (mb + 1) * mb_size]
                upd = self.update_minibatch(data, mb_idx, lr)
                if upd["problem"] is not None:
                    self._handle_nonfinite(upd["problem"], step, mb)
                    tally.skipped += 1
                    continue
                self.consecutive_skips = 0
                tally.add(upd)
        t_update = time.perf_counter() - t2
        return step_record(
            data,
            tally,
            n=cfg.rollout.n,
            lr=lr,
            nonfinite_total=self.nonfinite_skips,
            method=self.method,
            t_update=t_update,
        )

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, step: int) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        out = evaluate_heldout(
            self.model,
            self.tokenizer,
            self.task,
            cfg.eval,
            max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
            max_prompt_tokens=cfg.rollout.max_prompt_tokens,
            seed=derive_seed(cfg.trainer.seed, "eval", step),
        )
        out["time/eval"] = time.perf_counter() - t0
        self.last_heldout = out
        return out

    # ------------------------------------------------------------------ checkpoints

    def save(self, name: str, metrics_offset: int) -> Path:
        """Write checkpoint ``name`` (:func:`steer.train.runstate.save_state`)."""
        return runstate.save_state(self, name, metrics_offset)

    def load(self, path: str | Path) -> int:
        """Restore from one checkpoint directory; returns the metrics-file offset to truncate to."""
        return runstate.load_state(self, path)

    # ------------------------------------------------------------------ the loop

    def fit(
        self, *, resume: bool = False, overwrite: bool = False, allow_config_change: bool = False
    ) -> dict:
        """Train ``trainer.steps`` steps (or up to ``trainer.stop_after``); returns the last
        record. With ``resume``, continue from the newest valid checkpoint in the run directory.

        A run directory that already holds a run is refused (``steer.train.rundir.RunDirError``)
        unless ``resume`` (continue it) or ``overwrite`` (remove what the earlier run wrote first).
        A resume whose config differs from the checkpoint's in anything that changes the
        optimisation is refused (``ResumeConfigError``) unless ``allow_config_change``; an allowed
        change is appended to ``config_changes.jsonl``. On Ctrl-C, :attr:`interrupted` is set and
        the ``KeyboardInterrupt`` propagates (the checkpoints written so far are intact)."""
        offset = runstate.open_run(
            self, resume=resume, overwrite=overwrite, allow_config_change=allow_config_change
        )
        self._open_logs(offset)
        bar = self._progress_bar()
        try:
            return self._loop(bar)
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        finally:
            if bar is not None:
                bar.close()
            if self._jsonl is not None:
                self._jsonl.close()
            if self._tb is not None:
                self._tb.close()

    def _open_logs(self, offset: int | None) -> None:
        """The metrics file (fresh, or cut back to ``offset`` on a resume), ``config.yaml`` and,
        with ``logging.tensorboard``, the TensorBoard writer."""
        cfg = self.cfg
        if offset is None and self.step == 0:
            self._jsonl = JsonlLogger(self.metrics_path, fresh=True)
        else:
            self._jsonl = JsonlLogger(self.metrics_path, truncate_to=offset)
        (self.out_dir / "config.yaml").write_text(to_yaml(cfg))
        if cfg.logging.tensorboard:
            self._tb = TensorBoardLogger(self.out_dir / "tb", purge_step=self.step if self.step else None)

    def _progress_bar(self):
        if not self.cfg.logging.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.cfg.trainer.steps, initial=self.step, desc=f"{self.method.name}", dynamic_ncols=True
        )

    def _loop(self, bar) -> dict:
        """The step-0 evaluation, then the steps up to ``trainer.steps`` (or ``trainer.stop_after``):
        each step's record (with its evaluation) written, the progress shown, the checkpoints
        written. Returns the last record."""
        cfg = self.cfg
        last: dict = {}
        if self.step == 0 and cfg.eval.at_start:
            rec = {"step": 0, **self.evaluate(0)}
            self._emit(rec)
            last = rec
        end = cfg.trainer.steps
        if cfg.trainer.stop_after:
            end = min(end, cfg.trainer.stop_after)
        while self.step < end:
            rec = self.train_step(self.step)
            self.step += 1
            self._watch_signal(rec)
            is_last = self.step == cfg.trainer.steps
            if (cfg.eval.every and self.step % cfg.eval.every == 0) or (is_last and cfg.eval.at_end):
                rec.update(self.evaluate(self.step))
            off = self._emit(rec)
            last = rec
            if bar is not None:
                post = {"reward": f"{rec['reward']:.3f}", "H": f"{rec['entropy']:.3f}"}
                if "heldout/acc" in self.last_heldout:
                    post["heldout"] = f"{self.last_heldout['heldout/acc']:.3f}"
                bar.set_postfix(post)
                bar.update(1)
            runstate.checkpoint_after_step(self, rec, off)
        return last

    #: the no-signal warning: at least this share of groups with equal rewards ...
    NO_SIGNAL_SHARE = 0.8
    #: ... for this many consecutive steps
    NO_SIGNAL_STEPS = 5

    def _watch_signal(self, rec: dict) -> None:
        """Warn once per stretch when most groups have equal rewards (all correct or all wrong:
        zero group-relative advantage, so no gradient from them) for several steps in a row."""
        share = float(rec.get("groups_all_correct", 0.0)) + float(rec.get("groups_all_wrong", 0.0))
        if share >= self.NO_SIGNAL_SHARE:
            self._equal_streak += 1
        else:
            self._equal_streak = 0
        if self._equal_streak == self.NO_SIGNAL_STEPS:
            self.log(
                f"warning: no learning signal: at least {self.NO_SIGNAL_SHARE:.0%} of the groups had equal "
                f"rewards in each of the last {self.NO_SIGNAL_STEPS} steps (step {rec['step']}: "
                f"{rec.get('groups_all_wrong', 0.0):.0%} all wrong, {rec.get('groups_all_correct', 0.0):.0%} "
                "all correct); such groups have zero advantage. The task may be too hard or too easy for "
                "this policy: try another task/difficulty, more rollouts per prompt (rollout.n) or a "
                "stronger starting model"
            )

    def _emit(self, rec: dict) -> int:
        off = self._jsonl.log(rec)
        if self._tb is not None:
            self._tb.log(rec, int(rec["step"]))
        if self.on_step is not None:
            self.on_step(rec)
        return off
