"""Accuracy, entropy and solution diversity of a policy on a problem set.

:func:`evaluate_policy` samples ``k`` responses per problem through the one held-out evaluator
(:func:`steer.evaluation.heldout.evaluate_heldout`, which samples with
:func:`steer.evaluation.generate.sample`) and reports:

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

from steer.evaluation.generate import sample
from steer.evaluation.heldout import evaluate_heldout

__all__ = ["distinct_correct", "evaluate_policy", "generate_responses", "prompt_texts"]


def prompt_texts(tokenizer, problems: Sequence[Any]) -> list[str]:
    """Chat-formatted prompt strings (the tokenizer's chat template, generation prompt added)."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p.prompt}], add_generation_prompt=True, tokenize=False
        )
        for p in problems
    ]


def _canonical(problem: Any, response: str) -> str | None:
    """The canonical form of a correct response: the problem's own (countdown), else the stripped
    text."""
    if hasattr(problem, "canonical"):
        return problem.canonical(response)
    return response.strip() if problem.verify(response) else None


def distinct_correct(problem: Any, responses: Sequence[str]) -> int:
    """Distinct correct solutions among ``responses``: canonical forms for countdown problems
    (anything with ``canonical``), distinct stripped strings otherwise."""
    forms = {_canonical(problem, r) for r in responses}
    forms.discard(None)
    return len(forms)


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
    g = sample(
        model,
        tokenizer,
        prompt_texts(tokenizer, problems),
        k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        with_entropy=with_entropy,
    )
    ents = g.entropy_sum if with_entropy else [0.0] * g.batch_size
    counts = g.n_tokens
    P = len(problems)
    return (
        [g.texts[i * k : (i + 1) * k] for i in range(P)],
        [ents[i * k : (i + 1) * k] for i in range(P)],
        [counts[i * k : (i + 1) * k] for i in range(P)],
    )


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
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (sampling), got {temperature}")
    if max_new_tokens is None:
        longest = max(len(s) for p in problems for s in getattr(p, "solutions", (p.answer,)))
        max_new_tokens = longest + 16
    res = evaluate_heldout(
        model,
        tokenizer,
        prompt_texts(tokenizer, problems),
        lambda idx, texts: [bool(problems[i].verify(t)) for i, t in zip(idx, texts)],
        n=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        canonical=lambda i, t: _canonical(problems[i], t),
        with_entropy=True,
    )
    ks = []
    j = 1
    while j <= k:
        ks.append(j)
        j *= 2
    m = res.metrics(ks)
    result: dict[str, Any] = {
        "accuracy": m["acc"],
        "entropy": m["entropy"],
        "diversity": m["diversity"],
        "solutions_available": sum(len(getattr(p, "solutions", (p.answer,))) for p in problems)
        / len(problems),
        "response_len": m["response_length"],
        "problems": len(problems),
        "k": k,
        "temperature": temperature,
        "top_p": top_p,
        **{f"pass@{j}": m[f"pass@{j}"] for j in ks},
    }
    if return_samples:
        result["samples"] = res.texts
        result["correct"] = res.correct
    return result
