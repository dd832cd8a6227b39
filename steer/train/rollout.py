"""Rollouts with HF ``generate`` and the per-token forward that scores them.

Layout of a rollout batch (verl's convention): prompts left-padded to ``(B, P)``, responses
right-padded to ``(B, T)``; ``response_mask`` is True up to and including the first EOS token
(or on every generated token when the response hit ``max_new_tokens``). Prompt ``i`` of the
input list becomes rows ``i*n .. i*n+n-1`` (group id ``i``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from steer.core.stats import token_stats_from_logits
from steer.core.types import TokenStats


@dataclass
class Rollouts:
    prompt_ids: Tensor  # (B, P) long, left-padded
    prompt_mask: Tensor  # (B, P) bool
    response_ids: Tensor  # (B, T) long, right-padded
    response_mask: Tensor  # (B, T) bool
    group_ids: Tensor  # (B,) long
    texts: list[str]  # decoded responses (special tokens skipped), B entries

    @property
    def batch_size(self) -> int:
        return int(self.response_ids.shape[0])

    def select(self, idx: Tensor) -> Rollouts:
        return Rollouts(
            self.prompt_ids[idx],
            self.prompt_mask[idx],
            self.response_ids[idx],
            self.response_mask[idx],
            self.group_ids[idx],
            [self.texts[i] for i in idx.tolist()],
        )


def eos_ids(tokenizer, model=None) -> list[int]:
    """Every token id that ends a response (tokenizer EOS and the model's generation EOS)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None) if model is not None else None
    extra = getattr(gen, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, (list, tuple)):
        ids.update(int(x) for x in extra)
    if not ids:
        raise ValueError("the tokenizer defines no eos_token_id: responses could never end")
    return sorted(ids)


def pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id)


def encode_prompts(
    tokenizer, prompts: list[str], max_prompt_tokens: int, *, add_special_tokens: bool = False
) -> tuple[Tensor, Tensor]:
    """Left-padded ``(ids, mask)``; prompts longer than ``max_prompt_tokens`` keep their end.
    Prompts are expected to be fully formatted (chat template applied), so no special tokens are
    added unless asked."""
    enc = [
        tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"][-max_prompt_tokens:] for p in prompts
    ]
    if any(len(e) == 0 for e in enc):
        raise ValueError("a prompt encoded to zero tokens")
    width = max(len(e) for e in enc)
    pid = pad_id(tokenizer)
    ids = torch.full((len(enc), width), pid, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.bool)
    for i, e in enumerate(enc):
        ids[i, width - len(e) :] = torch.tensor(e, dtype=torch.long)
        mask[i, width - len(e) :] = True
    return ids, mask


def response_mask_from_ids(response_ids: Tensor, eos: list[int]) -> Tensor:
    """True up to and including the first EOS of each row (all True when there is none)."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for e in eos:
        is_eos |= response_ids == e
    # number of EOS tokens strictly before position t
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return before == 0


@torch.no_grad()
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
    """Sample ``n`` responses per prompt with ``model.generate`` (do_sample, temperature, top-p,
    top-k; 0 disables top-k). Draws from torch's global RNG."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    ids, mask = encode_prompts(tokenizer, prompts, max_prompt_tokens)
    ids = ids.repeat_interleave(n, dim=0)
    mask = mask.repeat_interleave(n, dim=0)
    group_ids = torch.arange(len(prompts), dtype=torch.long).repeat_interleave(n)
    eos = eos_ids(tokenizer, model)
    pid = pad_id(tokenizer)
    gcfg = GenerationConfig(
        do_sample=True,
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k),
        max_new_tokens=int(max_new_tokens),
        pad_token_id=pid,
        eos_token_id=eos,
        bos_token_id=tokenizer.bos_token_id,
    )
    was_training = model.training
    model.eval()
    chunk = generation_batch_size or ids.shape[0]
    outs = []
    for s in range(0, ids.shape[0], chunk):
        seq = model.generate(
            input_ids=ids[s : s + chunk].to(device),
            attention_mask=mask[s : s + chunk].long().to(device),
            generation_config=gcfg,
        )
        outs.append(seq[:, ids.shape[1] :].cpu())
    model.train(was_training)
    width = max(o.shape[1] for o in outs)
    width = max(width, 1)
    resp = torch.full((ids.shape[0], width), pid, dtype=torch.long)
    row = 0
    for o in outs:
        resp[row : row + o.shape[0], : o.shape[1]] = o
        if o.shape[1] == 0:  # nothing generated at all: an empty response
            resp[row : row + o.shape[0], 0] = eos[0]
        row += o.shape[0]
    rmask = response_mask_from_ids(resp, eos)
    # rows of a shorter chunk are padded with pad_id, which may not be an EOS: mask them out
    row = 0
    for o in outs:
        rmask[row : row + o.shape[0], o.shape[1] :] = False
        row += o.shape[0]
    texts = []
    for r, m in zip(resp, rmask):
        toks = [int(t) for t, keep in zip(r.tolist(), m.tolist()) if keep and int(t) not in eos]
        texts.append(tokenizer.decode(toks, skip_special_tokens=True))
    return Rollouts(ids, mask, resp, rmask, group_ids, texts)


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
