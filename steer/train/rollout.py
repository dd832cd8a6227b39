"""Rollouts and the per-token forward that scores them.

Rollouts come from the one generation path (:func:`steer.evaluation.generate.sample`), shared
with held-out evaluation and ``steer eval``. Layout of a rollout batch (verl's convention):
prompts left-padded to ``(B, P)``, responses right-padded to ``(B, T)``; ``response_mask`` is
True up to and including the first stop token (or on every generated token when the response
hit ``max_new_tokens``). Prompt ``i`` of the input list becomes rows ``i*n .. i*n+n-1`` (group
id ``i``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from steer.core.stats import token_stats_from_logits
from steer.core.types import TokenStats
from steer.evaluation.generate import Generation, sample

#: A rollout batch: :class:`steer.evaluation.generate.Generation` (the one generation path).
Rollouts = Generation


def generate_rollouts(
    model,
    tokenizer,
    prompts: list[str],
    n: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 48,
    max_prompt_tokens: int = 128,
    generation_batch_size: int = 0,
) -> Rollouts:
    """Sample ``n`` responses per prompt (``steer.evaluation.generate.sample``; temperature,
    top-p, top-k, 0 disables top-k). Draws from torch's global RNG, which the trainer re-seeds
    from ``(seed, step)`` every step."""
    return sample(
        model,
        tokenizer,
        prompts,
        n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=generation_batch_size,
        seed=None,
    )


def response_logits(model, prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor) -> Tensor:
    """Logits ``(B, T, V)`` of the policy at the positions that predict each response token.

    Position ids follow the attention mask (as in generation with left padding), so these are
    the logits the sampler used, up to floating-point noise.
    """
    device = next(model.parameters()).device
    seq = torch.cat([prompt_ids, response_ids], dim=1).to(device)
    attn = torch.cat([prompt_mask.long(), torch.ones_like(response_ids)], dim=1).to(device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    T = response_ids.shape[1]
    out = model(input_ids=seq, attention_mask=attn, position_ids=pos, logits_to_keep=T + 1, use_cache=False)
    return out.logits[:, :-1, :]


def response_token_stats(
    model,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    response_ids: Tensor,
    *,
    temperature: float = 1.0,
    with_sums: bool = False,
) -> TokenStats:
    """``token_stats_from_logits`` on the response positions (log-probs and entropy of the
    temperature-scaled sampling distribution, Eq. 3)."""
    logits = response_logits(model, prompt_ids, prompt_mask, response_ids)
    return token_stats_from_logits(
        logits, response_ids.to(logits.device), temperature=temperature, with_sums=with_sums
    )
