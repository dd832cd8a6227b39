"""The parts of TRL's ``GRPOTrainer._compute_loss`` that ``SteerGRPOTrainer`` must run as TRL wrote them.

Everything in this module is a copy of TRL code; nothing steer-specific lives here. The trainer
(``steer/integrations/trl/trainer.py``) calls these pieces in TRL's order around the one part it
replaces, the per-token clipped objective, which the core computes (``Method.token_loss``).

Upstream
--------
- TRL version: 1.16.0 (the integration accepts 1.16.x; ``steer.integrations.trl`` refuses others).
- Function: ``trl.trainer.grpo_trainer.GRPOTrainer._compute_loss``, lines 3020-3290 of
  ``trl/trainer/grpo_trainer.py`` (:data:`UPSTREAM`).
- :data:`UPSTREAM_SHA256` is the SHA-256 of ``inspect.getsource(GRPOTrainer._compute_loss)`` in
  that version. ``tests/trl/test_trl_copy.py`` fails when the installed TRL's function differs,
  and also when a statement here is neither in the upstream function nor marked ``# differs: N``
  below. After reviewing a new upstream function against this module, update the copy, the line
  numbers and the hash together.

What is copied (upstream line numbers), and where
-------------------------------------------------
- 3021-3047, the forward pass: :func:`token_mask` (3027) and :func:`forward`.
- 3049-3052, 3055-3066, 3068-3081, 3083 and 3095: the top-entropy mask, the advantages' shape, the
  old log-probs, the off-policy mask and the token-level ratio: :func:`policy_inputs`.
- 3097-3105, the KL term: :func:`kl_term`.
- 3140-3147, the off-policy mask, the top-entropy mask and the vLLM importance ratio applied to the
  per-token loss: :func:`apply_masks`.
- 3152-3184, the loss-type normalisers: :func:`aggregate`.
- 3189-3245, the entropy bonus and the adaptive-entropy controller: :func:`entropy_bonus`.
- 3248-3251, the MoE auxiliary loss: :func:`aux_loss_term`.
- 3254-3283, TRL's metrics (``kl``, ``entropy``, ``clip_ratio/*``): :func:`log_metrics`.

Each function takes the trainer as ``trainer`` where upstream has ``self``, and returns what the
rest of upstream's function goes on to use; those two changes are not listed below.

Lines that differ from upstream, and why (each such line is marked ``# differs: N``)
-------------------------------------------------------------------------------------
0. Plumbing: a value upstream unpacks or assigns in one place is read from the inputs or from
   :class:`PolicyInputs` here; a name that upstream leaves unbound on a branch is set to None.
1. 3109-3138 (the objective of each loss type) are not copied: the per-token clipped objective is
   the core's ``Method.token_loss`` (ratio, clip, dual clip and the method's token weights). The
   trainer computes it between :func:`policy_inputs` and :func:`kl_term`.
2. 3084-3093: only ``importance_sampling_level == "token"`` is kept, so the ratio is the token
   ratio; the trainer refuses "sequence" (GSPO) before this code runs.
3. 3146: the vLLM importance-ratio condition drops ``and self.loss_type != "vespo"``: vespo is
   refused, so the condition is the same for every accepted loss type.
4. 3097-3105 (the KL term) run after the core's policy term, not before TRL's objective (the
   parity tests check loss and gradients equal stock TRL in this order).
5. 3149-3150 (``+ beta * KL``) and 3152-3184 (the normaliser) are unchanged when the method selects
   no tokens. A token-selecting method (``TokenLoss.loss_mask``) has its policy term normalised
   over the selected tokens: the trainer calls :func:`aggregate` with the selection as ``mask``
   and ``tokens_scale`` = rho (for dapo, TRL's normaliser times rho), and aggregates the KL term
   separately over every valid token. 3149-3150 therefore live in the trainer.
6. 3152-3184: only the loss types the integration accepts (grpo, bnpo, dr_grpo, dapo) are kept.
7. 3030-3047: :func:`forward` passes ``batch_size`` (None in the loss, TRL's default) so the
   trainer's extra forwards can reuse it.
8. 3254-3283: the sequence-level branches of ``masked_seq_mean`` / ``global_masked_mean`` and the
   cispo / vespo metrics (3284-3288) are dropped (settings the trainer refuses).
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass

import torch
from torch import Tensor
from trl.trainer.utils import nanmax, nanmin

__all__ = [
    "COPIED",
    "TRL_VERSION",
    "UPSTREAM",
    "UPSTREAM_SHA256",
    "PolicyInputs",
    "aggregate",
    "apply_masks",
    "aux_loss_term",
    "entropy_bonus",
    "forward",
    "kl_term",
    "log_metrics",
    "policy_inputs",
    "token_mask",
    "upstream_sha256",
]

TRL_VERSION = "1.16.0"
UPSTREAM = "trl/trainer/grpo_trainer.py, GRPOTrainer._compute_loss, lines 3020-3290 (TRL 1.16.0)"
UPSTREAM_SHA256 = "80295546bbdbf6f711acce7f6e69b0100ab40aa8f23ed8052cc564ff024e3e40"
#: the functions of this module that are copies of upstream code (checked statement by statement)
COPIED = (
    "token_mask",
    "forward",
    "policy_inputs",
    "kl_term",
    "apply_masks",
    "aggregate",
    "entropy_bonus",
    "aux_loss_term",
    "log_metrics",
)


def upstream_sha256() -> str:
    """SHA-256 of the installed TRL's ``GRPOTrainer._compute_loss`` source (compare with UPSTREAM_SHA256)."""
    from trl import GRPOTrainer

    return hashlib.sha256(inspect.getsource(GRPOTrainer._compute_loss).encode()).hexdigest()


def token_mask(inputs: dict) -> Tensor:
    """Upstream 3027: the completion mask times the tool mask."""
    completion_mask = inputs["completion_mask"]  # differs: 0
    mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
    return mask


def forward(trainer, model, inputs: dict, batch_size: int | None = None):
    """Upstream 3021-3047: ``(per_token_logps, entropies, aux_loss)`` of the completion tokens."""
    prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
    completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits_to_keep = completion_ids.size(1)  # we only need to compute the logits for the completion tokens

    # Compute the per_token_logps and the entropy at each position in the completion
    per_token_logps, entropies, aux_loss = trainer._get_per_token_logps_and_entropies(  # differs: 7
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=batch_size,
        compute_entropy=True,
        compute_aux_loss=trainer.aux_loss_enabled,
        pixel_values=inputs.get("pixel_values"),
        image_grid_thw=inputs.get("image_grid_thw"),
        num_images=inputs.get("num_images"),
        pixel_attention_mask=inputs.get("pixel_attention_mask"),
        spatial_shapes=inputs.get("spatial_shapes"),
        num_tiles=inputs.get("num_tiles"),
        image_sizes=inputs.get("image_sizes"),
        token_type_ids=inputs.get("token_type_ids"),
        mm_token_type_ids=inputs.get("mm_token_type_ids"),
        image_position_ids=inputs.get("image_position_ids"),
    )
    return per_token_logps, entropies, aux_loss


@dataclass
class PolicyInputs:
    """What upstream 3049-3095 compute before the objective."""

    entropy_mask: Tensor | None
    advantages: Tensor  # (B, 1) or (B, T)
    old_per_token_logps: Tensor
    off_policy_mask: Tensor | None
    coef_1: Tensor  # the token-level ratio


def policy_inputs(
    trainer, inputs: dict, per_token_logps: Tensor, entropies: Tensor, mask: Tensor
) -> PolicyInputs:
    """Upstream 3049-3052, 3055-3066, 3068-3081, 3083 and 3095 (token level only: difference 2)."""
    if trainer.top_entropy_quantile < 1.0:
        entropy_mask = trainer.get_high_entropy_mask(entropies, mask, 1 - trainer.top_entropy_quantile)
    else:
        entropy_mask = None

    # Compute the loss
    advantages = inputs["advantages"]
    # In the base GRPO implementation, advantages are expected to have shape (B,). To support subclasses that
    # provide advantages with shape (B, T), we *conditionally* unsqueeze the tensor.
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    # When num_iterations == 1 and steps_per_generation <= gradient_accumulation_steps,
    # old_per_token_logps == per_token_logps. In this case we can skip its computation
    # (see _generate_and_score_completions) and instead use per_token_logps.detach().
    old_per_token_logps = inputs.get("old_per_token_logps")
    old_per_token_logps = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps

    off_policy_mask = None  # differs: 0
    if trainer.off_policy_mask_threshold is not None:
        # When using vLLM, prioritize sampling_per_token_logps, otherwise use old_per_token_logps
        sampling_per_token_logps = inputs.get("sampling_per_token_logps", old_per_token_logps)

        off_policy_mask = trainer.get_off_policy_mask(
            advantages=advantages,
            per_token_logps=per_token_logps,
            sampling_per_token_logps=sampling_per_token_logps,
            mask=mask,
            off_policy_threshold=trainer.off_policy_mask_threshold,
        )

    log_ratio = per_token_logps - old_per_token_logps
    log_importance_weights = log_ratio  # difference 2: token level only (upstream 3085)

    coef_1 = torch.exp(log_importance_weights)
    return PolicyInputs(entropy_mask, advantages, old_per_token_logps, off_policy_mask, coef_1)


def kl_term(trainer, inputs: dict, per_token_logps: Tensor, coef_1: Tensor) -> Tensor | None:
    """Upstream 3097-3105 (difference 4): TRL's k3 KL per token, None when beta is 0."""
    per_token_kl = None  # differs: 0
    # Compute the KL divergence between the model and the reference model
    if trainer.beta != 0.0:
        ref_per_token_logps = inputs["ref_per_token_logps"]
        per_token_kl = (
            torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
        )
        # Importance sampling correction for the KL divergence
        if trainer.args.use_bias_correction_kl:
            per_token_kl = per_token_kl * coef_1
    return per_token_kl


def apply_masks(trainer, per_token_loss: Tensor, inputs: dict, p: PolicyInputs) -> Tensor:
    """Upstream 3140-3147: the off-policy mask, the top-entropy mask and the vLLM ratio."""
    off_policy_mask, entropy_mask = p.off_policy_mask, p.entropy_mask  # differs: 0
    if trainer.off_policy_mask_threshold is not None:
        per_token_loss = per_token_loss * off_policy_mask

    if entropy_mask is not None:
        per_token_loss = per_token_loss * entropy_mask

    if trainer.use_vllm and trainer.vllm_importance_sampling_correction:  # differs: 3
        per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
    return per_token_loss


def aggregate(
    trainer, per_token_loss: Tensor, mask: Tensor, inputs: dict, mode: str, tokens_scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Upstream 3152-3184 (differences 5, 6): ``(loss for backward, detached policy_loss)``."""
    if trainer.loss_type == "grpo":  # differs: 6
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
        normalizer = (
            trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
        )  # no accum in eval
        policy_loss = loss.detach()
        loss = loss / normalizer
    elif trainer.loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
        normalizer = (
            trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
        )  # no accum in eval
        policy_loss = loss.detach()
        loss = loss / normalizer
    elif trainer.loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * trainer.max_completion_length)
        normalizer = (
            trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
        )  # no accum in eval
        policy_loss = loss.detach()
        loss = loss / normalizer
    elif trainer.loss_type == "dapo":  # differs: 6
        # `num_items_in_batch` spans the generation batch, so rescale it to one accumulation window
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
        if mode == "train":  # in eval, the batch is neither split across steps nor accumulated
            normalizer = (
                normalizer * trainer.current_gradient_accumulation_steps / trainer.args.steps_per_generation
            )
        if tokens_scale != 1.0:  # differs: 5
            normalizer = normalizer * tokens_scale  # differs: 5
        loss = (per_token_loss * mask).sum() / normalizer
        policy_loss = loss.detach()
    else:
        raise ValueError(f"Unknown loss type: {trainer.loss_type}")
    return loss, policy_loss


def entropy_bonus(
    trainer, loss: Tensor, policy_loss: Tensor, entropies: Tensor, mask: Tensor, entropy_mask, mode: str
) -> Tensor:
    """Upstream 3189-3245: the entropy bonus on TRL's own mask and the adaptive-entropy controller."""
    if trainer._entropy_bonus_enabled:
        # When top_entropy_quantile < 1.0, entropy_mask restricts policy gradients to high-entropy
        # tokens. Use the same effective mask for the entropy bonus so it acts on the same tokens.
        effective_mask = mask if entropy_mask is None else mask * entropy_mask
        accumulation_factor = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
        entropy_loss = (
            (entropies * effective_mask).sum() / effective_mask.sum().clamp(min=1.0) / accumulation_factor
        )

        # Apply the coefficient and gating from the end of the previous optimizer step
        if trainer.use_adaptive_entropy:
            apply_coef = (
                trainer.entropy_coef if trainer._last_world_entropy <= trainer.args.entropy_target else 0.0
            )
        else:
            apply_coef = trainer.entropy_coef

        loss = loss - apply_coef * entropy_loss

        trainer._metrics[mode]["policy_loss"].append(trainer.accelerator.gather(policy_loss).nanmean().item())

        # Adaptive update. Gated on train mode so evaluation cannot mutate the entropy controller state.
        if trainer.use_adaptive_entropy and mode == "train":
            stats = torch.stack([(entropies * effective_mask).sum(), effective_mask.sum()]).detach()
            if trainer._entropy_window_stats is None:
                trainer._entropy_window_stats = stats
            else:
                trainer._entropy_window_stats = trainer._entropy_window_stats + stats
            if trainer.accelerator.sync_gradients:
                window_stats = trainer.accelerator.reduce(trainer._entropy_window_stats, reduction="sum")
                world_entropy = (window_stats[0] / window_stats[1].clamp(min=1.0)).item()
                if world_entropy <= trainer.args.entropy_target:
                    trainer.entropy_coef = min(
                        trainer.entropy_coef + trainer.args.entropy_coef_delta, trainer.args.entropy_coef_max
                    )
                else:
                    trainer.entropy_coef = max(
                        trainer.entropy_coef - trainer.args.entropy_coef_delta, trainer.args.entropy_coef_min
                    )
                trainer._last_world_entropy = world_entropy
                trainer._entropy_window_stats = None

        if mode == "train" and trainer.accelerator.sync_gradients:
            trainer._metrics[mode]["entropy_coef"].append(trainer.entropy_coef)
    return loss


def aux_loss_term(trainer, loss: Tensor, aux_loss, mode: str) -> Tensor:
    """Upstream 3248-3251: the MoE router's auxiliary loss, scaled for gradient accumulation."""
    if trainer.aux_loss_enabled:
        normalizer = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss + trainer.router_aux_loss_coef * aux_loss / normalizer
        trainer._metrics[mode]["aux_loss"].append(
            trainer.accelerator.gather_for_metrics(aux_loss).mean().item()
        )
    return loss


def log_metrics(
    trainer, mode: str, mask: Tensor, entropies: Tensor, p: PolicyInputs, per_token_kl: Tensor | None
) -> None:
    """Upstream 3254-3283 (difference 8): TRL's ``kl``, ``entropy`` and ``clip_ratio/*`` metrics."""
    coef_1, advantages = p.coef_1, p.advantages  # differs: 0

    # Log the metrics
    def masked_seq_mean(x):
        return (x * mask).sum(-1) / mask.sum(-1)

    def global_masked_mean(x):
        local_sum, local_count = (x * mask).sum(), mask.sum().float()
        totals = trainer.accelerator.reduce(torch.stack([local_sum, local_count]), reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()

    if trainer.beta != 0.0:
        trainer._metrics[mode]["kl"].append(global_masked_mean(per_token_kl))

    trainer._metrics[mode]["entropy"].append(global_masked_mean(entropies))

    # Compute the clipped probability ratios
    is_low_clipped = (coef_1 < 1 - trainer.epsilon_low) & (advantages < 0)
    is_high_clipped = (coef_1 > 1 + trainer.epsilon_high) & (advantages > 0)
    is_region_clipped = is_low_clipped | is_high_clipped
    trainer._metrics[mode]["clip_ratio/low_mean"].append(global_masked_mean(is_low_clipped.float()))
    trainer._metrics[mode]["clip_ratio/high_mean"].append(global_masked_mean(is_high_clipped.float()))
    trainer._metrics[mode]["clip_ratio/region_mean"].append(global_masked_mean(is_region_clipped.float()))
    gathered_low_clip = trainer.accelerator.gather(masked_seq_mean(is_low_clipped.float()))
    trainer._metrics[mode]["clip_ratio/low_min"].append(nanmin(gathered_low_clip).item())
    gathered_high_clip = trainer.accelerator.gather(masked_seq_mean(is_high_clipped.float()))
    trainer._metrics[mode]["clip_ratio/high_max"].append(nanmax(gathered_high_clip).item())
