"""Inputs for verl's real loss call site, ``verl.workers.utils.losses.ppo_loss``.

verl hands ``ppo_loss`` the model output as a flat (total_nnz,) tensor over every token of the
micro-batch (prompt and response, no padding; the log-prob of token t+1 sits at position t) and a
TensorDict with the padded rollout fields plus the global batch information. These helpers build
both from padded (B, T) response tensors, so a test can compare against a float64 reference on the
same numbers and read the gradients on the flat leaf.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu

PROMPT_LEN = 3


def random_batch(
    B: int, T: int, *, seed: int, empty_rows=(), equal_reward_rows=(), dtype=torch.float32
) -> dict:
    """Padded response tensors with random lengths (some rows empty), advantages with whole
    equal-reward groups (A = 0), log-probs and entropies of a plausible size."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    for r in empty_rows:
        lens[r] = 0
    mask = torch.arange(T)[None, :] < lens[:, None]
    old_logp = -torch.rand(B, T, generator=g, dtype=dtype) * 3.0
    logp = old_logp + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)
    logp = torch.minimum(logp, torch.zeros((), dtype=dtype))
    adv_seq = torch.randn(B, generator=g, dtype=dtype)
    for r in equal_reward_rows:
        adv_seq[r] = 0.0
    adv = adv_seq[:, None].expand(B, T).clone() * mask
    entropy = torch.rand(B, T, generator=g, dtype=dtype) * 4.0
    old_entropy = entropy + 0.1 * torch.randn(B, T, generator=g, dtype=dtype).abs()
    return {
        "lens": lens,
        "mask": mask,
        "old_logp": old_logp * mask,
        "logp": logp * mask,
        "advantages": adv,
        "entropy": entropy * mask,
        "old_entropy": old_entropy * mask,
    }


def flatten_response(padded: torch.Tensor, lens: torch.Tensor, prompt_len: int = PROMPT_LEN) -> torch.Tensor:
    """The flat (total_nnz,) layout verl's engine produces for per-token outputs."""
    parts = []
    for i in range(padded.shape[0]):
        n = int(lens[i])
        seg = torch.zeros(prompt_len + n, dtype=padded.dtype)
        seg[prompt_len - 1 : prompt_len - 1 + n] = padded[i, :n]
        parts.append(seg)
    return torch.cat(parts)


def make_data(
    b: dict,
    *,
    rows=None,
    dp_size: int = 1,
    batch_num_tokens=None,
    global_batch_size=None,
    with_old_entropy: bool = True,
    rollout_is_weights: torch.Tensor | None = None,
) -> TensorDict:
    """The micro-batch TensorDict ``ppo_loss`` receives (rows: a subset of the batch)."""
    idx = torch.arange(b["mask"].shape[0]) if rows is None else torch.as_tensor(rows)
    mask = b["mask"][idx]
    B, T = mask.shape
    fields = {
        "prompts": torch.ones(B, PROMPT_LEN, dtype=torch.long),
        "responses": torch.ones(B, T, dtype=torch.long),
        "attention_mask": torch.cat([torch.ones(B, PROMPT_LEN, dtype=torch.long), mask.long()], dim=1),
        "response_mask": mask.long(),
        "old_log_probs": b["old_logp"][idx],
        "advantages": b["advantages"][idx],
    }
    if with_old_entropy:
        fields["entropy"] = b["old_entropy"][idx]
    if rollout_is_weights is not None:
        fields["rollout_is_weights"] = rollout_is_weights[idx]
    td = TensorDict(fields, batch_size=[B])
    tu.assign_non_tensor(
        td, dp_size=dp_size, batch_num_tokens=batch_num_tokens, global_batch_size=global_batch_size
    )
    return td


def model_output(b: dict, *, rows=None, with_entropy: bool = True) -> tuple[dict, torch.Tensor]:
    """(model_output, flat log-prob leaf with grad) for the rows."""
    idx = torch.arange(b["mask"].shape[0]) if rows is None else torch.as_tensor(rows)
    lens = b["lens"][idx]
    flat = flatten_response(b["logp"][idx], lens).requires_grad_(True)
    out = {"log_probs": flat}
    if with_entropy:
        out["entropy"] = flatten_response(b["entropy"][idx], lens)
    return out, flat


def actor_config(policy_loss, **kw):
    """verl's FSDP actor config (the dataclass the worker builds) with ``policy_loss``."""
    from verl.workers.config.actor import FSDPActorConfig
    from verl.workers.config.optimizer import FSDPOptimizerConfig

    base = dict(
        strategy="fsdp2",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=2,
        clip_ratio_low=0.2,
        clip_ratio_high=0.28,
        clip_ratio_c=10.0,
        calculate_entropy=True,
        policy_loss=policy_loss,
        optim=FSDPOptimizerConfig(lr=1e-6),
    )
    base.update(kw)
    return FSDPActorConfig(**base)
