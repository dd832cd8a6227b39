"""Accuracy, entropy and solution diversity of a policy on a problem set (issue 3, "Testbed").

:func:`evaluate_policy` samples ``k`` responses per problem with HF ``generate`` (batched,
temperature and top-p configurable) and reports:

- ``accuracy``: mean verdict over all samples (= avg@k = unbiased pass@1),
- ``pass@j`` for j = 1, 2, 4, ... up to k (unbiased estimator, spec evaluation.md §4),
- ``entropy``: mean per-token entropy H(pi(.|s)) (Eq. 4) of the policy's raw next-token
  distribution (temperature 1, before top-p) over every generated response token (the closing
  ``<eos>`` included, padding excluded),
- ``diversity``: mean over problems of the number of distinct correct canonical solutions among the
  k samples (:func:`steer.testbed.countdown.distinct_correct_solutions`),
- ``solutions_available``: mean number of canonical solutions per problem (the ceiling of diversity),
- ``response_len``: mean number of generated tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from steer.evaluation.passk import pass_at_k  # unbiased pass@k (spec evaluation.md §4)

__all__ = ["distinct_correct", "evaluate_policy", "generate_responses", "prompt_texts"]


def prompt_texts(tokenizer, problems: Sequence[Any]) -> list[str]:
    """Chat-formatted prompt strings (the tokenizer's chat template, generation prompt added)."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p.prompt}], add_generation_prompt=True, tokenize=False
        )
        for p in problems
    ]


def distinct_correct(problem: Any, responses: Sequence[str]) -> int:
    """Distinct correct solutions among ``responses``: canonical forms for countdown problems
    (anything with ``canonical``), distinct stripped strings otherwise."""
    seen = set()
    for r in responses:
        if hasattr(problem, "canonical"):
            c = problem.canonical(r)
            if c is not None:
                seen.add(c)
        elif problem.verify(r):
            seen.add(r.strip())
    return len(seen)


@torch.no_grad()
def generate_responses(
    model,
    tokenizer,
    problems: Sequence[Any],
    k: int = 8,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 48,
    batch_size: int = 512,
    seed: int | None = 0,
    with_entropy: bool = True,
) -> tuple[list[list[str]], list[list[float]], list[list[int]]]:
    """Sample ``k`` responses per problem. Returns (texts[p][j], entropy sums and token counts
    per response). ``batch_size`` counts sequences (problems x k) per ``generate`` call."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (sampling), got {temperature}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    per_call = max(1, batch_size // k)
    texts: list[list[str]] = []
    ent_sums: list[list[float]] = []
    counts: list[list[int]] = []
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    prompts = prompt_texts(tokenizer, problems)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(problems), per_call):
            chunk = prompts[start : start + per_call]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {key: v.to(device) for key, v in enc.items()}
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                num_return_sequences=k,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad,
                output_logits=with_entropy,
                return_dict_in_generate=True,
            )
            seq = out.sequences[:, enc["input_ids"].shape[1] :]
            # valid generated tokens: up to and including the first eos
            is_eos = seq == eos
            after = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
            valid = after == 0
            if with_entropy:
                logits = torch.stack(out.logits, dim=1).float()  # (N, T, V) raw logits
                logp = torch.log_softmax(logits, dim=-1)
                ent = -(logp.exp() * logp).sum(-1)
                ent_sum = (ent * valid).sum(1).tolist()
            else:
                ent_sum = [0.0] * seq.shape[0]
            n_tok = valid.sum(1).tolist()
            decoded = tokenizer.batch_decode(seq, skip_special_tokens=True)
            for i in range(len(chunk)):
                sl = slice(i * k, (i + 1) * k)
                texts.append(decoded[sl])
                ent_sums.append(ent_sum[sl])
                counts.append(n_tok[sl])
    if was_training:
        model.train()
    return texts, ent_sums, counts


def evaluate_policy(
    model,
    tokenizer,
    problems: Sequence[Any],
    k: int = 8,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int | None = None,
    batch_size: int = 512,
    seed: int | None = 0,
    return_samples: bool = False,
) -> dict[str, Any]:
    """Sample ``k`` responses per problem and measure accuracy, pass@j (j = 1, 2, 4, ..., k),
    mean per-token entropy and diversity (see the module docstring). ``max_new_tokens`` defaults
    to the longest reference answer plus 16 characters."""
    if len(problems) == 0:
        raise ValueError("evaluate_policy: no problems")
    if max_new_tokens is None:
        longest = max(len(s) for p in problems for s in getattr(p, "solutions", (p.answer,)))
        max_new_tokens = longest + 16
    texts, ent_sums, counts = generate_responses(
        model, tokenizer, problems, k, temperature, top_p, max_new_tokens, batch_size, seed
    )
    verdicts = [[bool(p.verify(r)) for r in rs] for p, rs in zip(problems, texts)]
    n_correct = [sum(v) for v in verdicts]
    total_tokens = sum(sum(c) for c in counts)
    result: dict[str, Any] = {
        "accuracy": sum(n_correct) / (k * len(problems)),
        "entropy": sum(sum(e) for e in ent_sums) / max(total_tokens, 1),
        "diversity": sum(distinct_correct(p, rs) for p, rs in zip(problems, texts)) / len(problems),
        "solutions_available": sum(len(getattr(p, "solutions", (p.answer,))) for p in problems)
        / len(problems),
        "response_len": total_tokens / (k * len(problems)),
        "problems": len(problems),
        "k": k,
        "temperature": temperature,
        "top_p": top_p,
    }
    j = 1
    while j <= k:
        result[f"pass@{j}"] = sum(pass_at_k(k, c, j) for c in n_correct) / len(problems)
        j *= 2
    if return_samples:
        result["samples"] = texts
        result["correct"] = verdicts
    return result
