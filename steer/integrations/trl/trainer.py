"""``SteerGRPOTrainer``: TRL's ``GRPOTrainer`` with the loss of any method of steer's registry.

Where the method enters (TRL 1.16; see docs/trl.md for why):

- **Loss.** ``_compute_loss`` is overridden. It is TRL 1.16's ``_compute_loss`` for the loss types
  grpo / bnpo / dr_grpo / dapo, except that the per-token clipped objective comes from
  ``Method.token_loss`` (the core computes the ratio, the clip, the dual clip and the method's token
  weights, e.g. STEER's lambda = exp(-k|Omega|)). Everything after it is TRL's, in TRL's order: the
  off-policy mask, TRL's top-entropy mask, the vLLM importance-sampling ratio, the KL term (beta),
  the loss-type normaliser, the entropy bonus and the adaptive-entropy controller, and TRL's own
  metrics. The token weights therefore never touch the entropy bonus, its normaliser or the
  adaptive-entropy statistics (TRL's ``get_high_entropy_mask`` slot would weight those too).
  The TRL code this runs is in one place, ``_trl_copy.py``, whose header records the upstream
  version, lines and source hash and lists every line that differs (``tests/trl/test_trl_copy.py``).
- **Advantages.** Methods with their own advantage estimator (W-REINFORCE, PSR/NSR, unlikeliness,
  entropy advantage, GTPO, GRPO-S, EDGE-GRPO, OPO, PPL and position shaping) replace TRL's
  advantages in ``_generate_and_score_completions`` by ``Method.compute_advantages`` on the whole
  generation batch of every rank (gathered, so each group is complete and every rank computes the
  same numbers), then keep this rank's rows as (B, T) token advantages. Rollout-policy entropy
  and log-probs come from one extra no-grad forward when the estimator needs them.
- **Batch-wide statistics.** STEER's max|Omega| with ``scope='minibatch'`` (Eq. 10, the default)
  is taken over the whole optimiser step: every micro-batch of the gradient-accumulation window
  (a no-grad forward for each but the current one, once per window) on every rank (MAX all-gather),
  so every rank uses the same value. ``scope='microbatch'`` (the released code's choice) is per
  micro-batch on each rank. Clip-Cov / KL-Cov selections and the core's forking-token quantile
  are per micro-batch on each rank; TRL's own ``top_entropy_quantile`` gathers the entropies of
  every rank.
- **Metrics.** The method's metrics are reduced over ranks by their declared reduction
  (:mod:`steer.core.metrics`) on every micro-batch and over the logging window, and logged under
  ``steer/`` (``steer/weight_mean``, ``steer/weight_min``, ``steer/clipfrac_{low,high,dual}``,
  ``steer/quadrant/{I..IV}/{count,share,omega_sum}``, ...).
"""

from __future__ import annotations

import hashlib
import math
import os

import torch
from torch import Tensor
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from steer.core.errors import NonFiniteError
from steer.core.metrics import MetricReducer, reduction_of
from steer.core.registry import build_method
from steer.core.types import LossBatch, RolloutBatch
from steer.integrations.trl import _trl_copy as _trl
from steer.integrations.trl.config import SUPPORTED_LOSS_TYPES, SteerGRPOConfig, method_overrides

__all__ = ["SteerGRPOTrainer"]

# inputs that only a vision-language batch carries; the extra forwards of this trainer pass text only
_MULTIMODAL_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_attention_mask",
    "spatial_shapes",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)
_OLD_ENTROPY = "steer_old_entropy"  # (B, T) rollout-policy entropy, carried through TRL's buffers


def _metric_key(k: str) -> str:
    return k if k.startswith("steer/") else f"steer/{k}"


class SteerGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose loss is shaped by ``args.steer_method`` (see the module docstring).

    Takes exactly TRL's arguments; ``args`` must be a :class:`SteerGRPOConfig` (None builds the
    default one, which trains STEER). ``self.steer_method`` is the core
    :class:`steer.core.registry.Method`.
    """

    def __init__(self, model, reward_funcs=None, args: SteerGRPOConfig | None = None, *posargs, **kwargs):
        if any(c.__module__.startswith("trl.experimental.async_grpo") for c in type(self).__mro__):
            raise TypeError(
                "SteerGRPOTrainer cannot be combined with TRL's experimental async GRPO trainer: it computes its "
                "own loss (trl.experimental.async_grpo ... compute_loss), which never applies the method's weights"
            )
        if isinstance(model, str):
            from steer.models import resolve

            model = resolve(model)  # a named model of steer.models -> its converted folder
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = SteerGRPOConfig(f"{str(name).rstrip('/').split('/')[-1] or 'model'}-STEER")
        if not isinstance(args, SteerGRPOConfig):
            raise TypeError(
                f"SteerGRPOTrainer needs a SteerGRPOConfig (steer.integrations.trl), got {type(args).__name__}; "
                "it has every GRPOConfig field plus steer_method / steer_method_kwargs"
            )
        super().__init__(model, reward_funcs, args, *posargs, **kwargs)
        self.steer_method = build_method(
            args.steer_method, **method_overrides(args, args.steer_method, args.steer_method_kwargs)
        )
        self._steer_requires = self.steer_method.requires
        self._steer_acc = {"train": MetricReducer(), "eval": MetricReducer()}
        self._steer_keys_checked: set[tuple[str, ...]] = set()
        self._steer_rewards_per_func: Tensor | None = None
        self._steer_scope_cache: tuple[int, dict[str, Tensor]] | None = None

    # ------------------------------------------------------------------------------------------
    # forwards

    def _steer_forward(self, model, inputs: dict, batch_size: int | None = None):
        """``(per_token_logps, entropies, aux_loss)`` for ``inputs``, as TRL's loss computes them."""
        return _trl.forward(self, model, inputs, batch_size=batch_size)

    def _steer_no_grad_forward(self, inputs: dict, batch_size: int | None = None) -> tuple[Tensor, Tensor]:
        """Detached ``(logps, entropies)`` of the current policy on ``inputs`` (text only)."""
        present = [k for k in _MULTIMODAL_KEYS if inputs.get(k) is not None]
        if present:
            raise NotImplementedError(
                f"steer_method={self.args.steer_method!r} needs an extra forward that SteerGRPOTrainer runs on "
                f"text only; this batch carries multimodal inputs {present}"
            )
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
        ):
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
                torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
                inputs["completion_ids"].size(1),
                batch_size=batch_size,
                compute_entropy=True,
            )
        return logps.detach(), entropies.detach()

    # ------------------------------------------------------------------------------------------
    # rollout: advantages of the advantage-level methods

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        out = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._steer_rewards_per_func = out  # (global batch, reward funcs), gathered over ranks
        return out

    def _generate_and_score_completions(self, inputs):
        self._steer_rewards_per_func = None
        output = super()._generate_and_score_completions(inputs)
        c = self.steer_method.config
        need_adv_stats = c.advantage != "grpo" and bool({"old_entropy", "old_logp"} & self._steer_requires)
        off_policy = output.get("old_per_token_logps") is not None
        need_loss_old_entropy = "old_entropy" in self._steer_requires and off_policy
        old_logp = old_entropy = None
        if need_adv_stats or need_loss_old_entropy:
            mode = "train" if self.model.training else "eval"
            bs = (
                self.args.per_device_train_batch_size
                if mode == "train"
                else self.args.per_device_eval_batch_size
            )
            old_logp, old_entropy = self._steer_no_grad_forward(output, batch_size=bs)
            if off_policy:
                old_logp = output["old_per_token_logps"]
            output[_OLD_ENTROPY] = old_entropy
        if c.advantage != "grpo":
            output["advantages"] = self._steer_advantages(output, old_logp, old_entropy)
        return output

    def _steer_advantages(self, output: dict, old_logp: Tensor | None, old_entropy: Tensor | None) -> Tensor:
        """This rank's (B, T) advantages from the method's estimator on the gathered generation batch."""
        rpf = self._steer_rewards_per_func
        if rpf is None:
            raise RuntimeError("SteerGRPOTrainer: the rewards of this batch were not captured")
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        device = rpf.device
        mask = output["completion_mask"]
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        b_local, t_local = mask.shape
        acc = self.accelerator

        def gathered(x: Tensor) -> Tensor:
            return acc.gather(acc.pad_across_processes(x.contiguous(), dim=1, pad_index=0))

        mask_g = gathered(mask.long()).bool()
        old_logp_g = gathered(old_logp.float()) if old_logp is not None else None
        old_ent_g = gathered(old_entropy.float()) if old_entropy is not None else None
        n = mask_g.size(0)
        if rpf.size(0) != n:
            raise RuntimeError(f"SteerGRPOTrainer: {rpf.size(0)} rewards for {n} gathered completions")
        rewards = (rpf * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        scorable = ~torch.isnan(rpf).all(dim=1)  # TRL: unscorable completions get advantage 0
        group_ids = torch.arange(n, device=device) // group_size
        idx = scorable.nonzero(as_tuple=True)[0]
        adv = torch.zeros(mask_g.shape, dtype=torch.float32, device=device)
        if idx.numel() > 0:
            rb = RolloutBatch(
                rewards=rewards[idx].float(),
                group_ids=group_ids[idx],
                response_mask=mask_g[idx],
                old_logp=None if old_logp_g is None else old_logp_g[idx],
                old_entropy=None if old_ent_g is None else old_ent_g[idx],
            )
            adv[idx] = self.steer_method.compute_advantages(rb).to(adv.dtype)
        lo = acc.process_index * b_local
        return adv[lo : lo + b_local, :t_local].contiguous()

    # ------------------------------------------------------------------------------------------
    # loss

    def _steer_lr(self) -> float:
        opt = getattr(self, "optimizer", None)
        if opt is not None and opt.param_groups:
            return float(opt.param_groups[0]["lr"])
        return float(self.args.learning_rate)

    def _steer_loss_batch(
        self, inputs: dict, per_token_logps: Tensor, entropies: Tensor, mask: Tensor
    ) -> LossBatch:
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1)
        advantages = advantages.expand_as(per_token_logps)
        old = inputs.get("old_per_token_logps")
        old = per_token_logps.detach() if old is None else old
        # padding carries no information; a non-finite value there (e.g. from an external sampler)
        # must not reach the core's per-token statistics
        old = old.masked_fill(~mask.bool(), 0.0)
        old_entropy = None
        if "old_entropy" in self._steer_requires:
            old_entropy = inputs.get(_OLD_ENTROPY)
            if old_entropy is None:  # on-policy: the rollout policy is the current one
                old_entropy = entropies.detach()
        return LossBatch(
            logp=per_token_logps,
            old_logp=old,
            advantages=advantages,
            response_mask=mask.bool(),
            entropy=entropies,
            old_entropy=old_entropy,
            lr=self._steer_lr(),
        )

    def _steer_scope_stats(self, inputs: dict, lb: LossBatch) -> dict[str, Tensor] | None:
        """The reduced ``Method.scope_stats`` over the optimiser step, or None for 'microbatch'.

        'minibatch' (Eq. 10): this micro-batch's own statistics and those of the other
        micro-batches of the gradient-accumulation window (a no-grad forward each, with the
        parameters the window trains with), reduced by the method's own reduction
        (``Method.reduce_scope_stats``), then over ranks with its op (``Method.scope_reduce_op``,
        MAX); computed once per window.
        In evaluation the batch is its own window.
        """
        if getattr(self.steer_method.config, "scope", "microbatch") == "microbatch":
            return None
        own = self.steer_method.scope_stats(lb)
        if not own:
            return None
        train = self.model.training and self._buffered_inputs is not None
        if train:
            ga = self.current_gradient_accumulation_steps
            start = self._step - self._step % ga
            if self._steer_scope_cache is not None and self._steer_scope_cache[0] == start:
                return self._steer_scope_cache[1]
            collected = [own]
            spg = self.args.steps_per_generation
            bs = self.args.per_device_train_batch_size
            for s in range(start, start + ga):
                if s == self._step:
                    continue
                mb = self._buffered_inputs[s % spg]
                logps, ents = self._steer_no_grad_forward(mb, batch_size=bs)
                m = _trl.token_mask(mb)
                collected.append(self.steer_method.scope_stats(self._steer_loss_batch(mb, logps, ents, m)))
        else:
            collected = [own]
        method = self.steer_method
        stats = method.reduce_scope_stats(collected)
        if self.accelerator.num_processes > 1:
            if method.scope_reduce_op != "max":
                raise RuntimeError(
                    f"steer_method={method.name!r} reduces its scope statistics with its own function, "
                    "which no reduction over processes reproduces; run it in one process"
                )
            keys = sorted(stats)
            vec = torch.stack([stats[k].detach().float().reshape(()) for k in keys]).to(
                self.accelerator.device
            )
            vec = self.accelerator.gather(vec.unsqueeze(0)).amax(dim=0)
            stats = {k: vec[i] for i, k in enumerate(keys)}
        if train:
            self._steer_scope_cache = (start, stats)
        return stats

    def _steer_record(self, mode: str, metrics: dict[str, float], n_tokens: float) -> None:
        """Reduce one micro-batch's metrics over ranks (by their declared reductions) and keep them.

        Each rank's ``(metrics, n_tokens)`` is gathered and reduced by :class:`MetricReducer`; the
        result enters the logging window's reducer with the micro-batch's token count over ranks.
        """
        acc = self.accelerator
        if acc.num_processes == 1:
            self._steer_acc[mode].add(dict(metrics), n_tokens)
            return
        keys = tuple(sorted(metrics))
        for k in keys:
            reduction_of(k)  # an undeclared key fails here, on every rank, before any collective
        if keys not in self._steer_keys_checked:
            digest = int.from_bytes(hashlib.sha256("\n".join(keys).encode()).digest()[:6], "big")
            seen = acc.gather(torch.tensor([float(digest)], dtype=torch.float64, device=acc.device))
            if bool((seen != seen[0]).any()):
                raise RuntimeError(
                    f"SteerGRPOTrainer: the ranks emit different metric keys (this rank: {list(keys)}); "
                    "the cross-rank reduction would misattribute them"
                )
            self._steer_keys_checked.add(keys)
        row = [float(n_tokens)] + [float(metrics[k]) for k in keys]
        table = acc.gather(torch.tensor([row], dtype=torch.float64, device=acc.device))  # (ranks, 1 + K)
        over_ranks = MetricReducer()
        for r in table.tolist():
            over_ranks.add(dict(zip(keys, r[1:])), r[0])
        self._steer_acc[mode].add(over_ranks.result(), float(table[:, 0].sum()))

    def _steer_token_loss(self, inputs: dict, per_token_logps: Tensor, entropies: Tensor, mask: Tensor):
        """The method's per-token clipped objective with its token weights (``Method.token_loss``)."""
        lb = self._steer_loss_batch(inputs, per_token_logps, entropies, mask)
        lb.scope_stats = self._steer_scope_stats(inputs, lb)
        try:
            return self.steer_method.token_loss(lb)
        except NonFiniteError as e:
            raise NonFiniteError(
                f"SteerGRPOTrainer (global step {self.state.global_step}): {e}; no update was applied from this "
                "batch; resume from the last checkpoint (TRL's resume_from_checkpoint)",
                name=e.name,
                count=e.count,
            ) from e

    def _compute_loss(self, model, inputs):
        """TRL 1.16's ``_compute_loss`` (the pieces in ``_trl_copy``, in TRL's order) with the core's objective."""
        if self.loss_type not in SUPPORTED_LOSS_TYPES:
            raise ValueError(
                f"SteerGRPOTrainer supports loss_type in {list(SUPPORTED_LOSS_TYPES)}, got {self.loss_type!r}"
            )
        if self.importance_sampling_level != "token":
            raise ValueError("SteerGRPOTrainer supports importance_sampling_level='token' only")
        mask = _trl.token_mask(inputs)
        per_token_logps, entropies, aux_loss = self._steer_forward(model, inputs)
        p = _trl.policy_inputs(self, inputs, per_token_logps, entropies, mask)
        # the one replaced piece: the per-token objective comes from the core
        tl = self._steer_token_loss(inputs, per_token_logps, entropies, mask)
        per_token_kl = _trl.kl_term(self, inputs, per_token_logps, p.coef_1)
        per_token_loss = _trl.apply_masks(self, tl.loss_mat, inputs, p)

        mode = "train" if self.model.training else "eval"
        if tl.loss_mask is None:
            if per_token_kl is not None:
                per_token_loss = per_token_loss + self.beta * per_token_kl
            loss, policy_loss = _trl.aggregate(self, per_token_loss, mask, inputs, mode)
        else:  # the policy term over the selected tokens, the KL term over every valid token
            sel = tl.loss_mask.to(mask.dtype)
            loss, policy_loss = _trl.aggregate(
                self, per_token_loss, sel, inputs, mode, float(tl.num_tokens_scale)
            )
            if per_token_kl is not None:
                kl_loss, kl_policy = _trl.aggregate(self, self.beta * per_token_kl, mask, inputs, mode)
                loss, policy_loss = loss + kl_loss, policy_loss + kl_policy

        loss = _trl.entropy_bonus(self, loss, policy_loss, entropies, mask, p.entropy_mask, mode)
        loss = _trl.aux_loss_term(self, loss, aux_loss, mode)
        _trl.log_metrics(self, mode, mask, entropies, p, per_token_kl)
        if self.args.steer_log_metrics:
            self._steer_record(mode, tl.metrics, float(mask.sum()))
        return loss

    # ------------------------------------------------------------------------------------------
    # checkpoints: the method's own state (random-selection generators, controllers)

    def _steer_state_path(self, folder: str) -> str:
        return os.path.join(folder, f"steer_method_state_rank{self.accelerator.process_index}.pt")

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        os.makedirs(folder, exist_ok=True)
        torch.save(self.steer_method.state_dict(), self._steer_state_path(folder))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            path = self._steer_state_path(checkpoint)
            if os.path.exists(path):
                self.steer_method.load_state_dict(torch.load(path, weights_only=False))

    # ------------------------------------------------------------------------------------------
    # logging

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        acc = self._steer_acc[mode]
        reduced = acc.result()
        if reduced:
            prefix = "eval_" if mode == "eval" else ""
            for k, v in reduced.items():
                if isinstance(v, float) and not math.isfinite(v):
                    continue
                logs[prefix + _metric_key(k)] = v
        self._steer_acc[mode] = MetricReducer()
        super().log(logs, start_time)
