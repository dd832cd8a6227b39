"""Held-out evaluation during training: the one held-out evaluator
(:func:`steer.evaluation.heldout.evaluate_heldout`) on the task's held-out problems.

For each held-out problem, ``eval.n_samples`` responses are drawn (section 5.1 validates with
temperature 1.0 and top-p 0.7), scored with the task's own scorer and reduced to ``heldout/``
keys: ``acc`` (avg@n), ``acc_se``, ``pass@k`` for each of ``eval.ks``, ``solved``,
``diversity`` (distinct correct canonical forms per problem), ``response_length``,
``truncated_frac``, ``entropy`` (with ``eval.entropy``) and ``solutions_available`` (tasks that
know every solution of a problem, such as countdown).
"""

from __future__ import annotations

import torch

from steer.evaluation.heldout import evaluate_heldout as _evaluate
from steer.train.config import EvalConfig
from steer.train.tasks import Task, format_prompt, score_batch


@torch.no_grad()
def evaluate_heldout(
    model,
    tokenizer,
    task: Task,
    cfg: EvalConfig,
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    problems: list | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Sample ``cfg.n_samples`` responses per held-out problem and score them.

    The sampler runs on a forked RNG seeded with ``seed``, so the result depends only on the
    weights and the seed, never on the training RNG stream (which is left untouched)."""
    problems = task.heldout_problems() if problems is None else problems
    if not problems:
        raise ValueError("evaluate_heldout: no held-out problems")
    res = _evaluate(
        model,
        tokenizer,
        [format_prompt(tokenizer, task, p) for p in problems],
        lambda idx, texts: score_batch(task, [problems[i] for i in idx], texts),
        n=cfg.n_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=cfg.batch_size,
        seed=seed,
        canonical=lambda i, text: task.canonical(problems[i], text),
        with_entropy=cfg.entropy,
    )
    out = res.metrics(cfg.ks, prefix="heldout/")
    sols = [task.solutions(p) for p in problems] if hasattr(task, "solutions") else None
    if sols is not None and all(s is not None for s in sols):
        out["heldout/solutions_available"] = sum(len(s) for s in sols) / len(sols)
    return out
