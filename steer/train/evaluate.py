"""Held-out evaluation during training: accuracy (avg@n), pass@k and solution diversity.

Countdown problems go through the testbed's ``evaluate_policy`` (which also reports the
policy entropy on held-out prompts); other tasks through the generic sampler below. For each
held-out problem, ``n_samples`` responses are drawn (section 5.1 validates with
temperature 1.0 and top-p 0.7). Reported, with keys under ``heldout/``:

- ``acc``: mean correctness over all samples (avg@n, the unbiased pass@1);
- ``pass@k`` for each k: unbiased pass@k (``steer.evaluation.passk``), averaged over problems;
- ``diversity``: mean number of distinct correct solutions (canonical forms) per problem among
  its ``n_samples`` samples; ``solved``: share of problems with at least one correct sample;
- ``response_length``: mean response length in tokens;
- ``acc_se``: standard error of ``acc`` over problems (std of per-problem accuracy / sqrt(P)).
"""

from __future__ import annotations

import torch

from steer.evaluation.passk import avg_at_k, mean_pass_at_k
from steer.train.config import EvalConfig
from steer.train.rollout import generate_rollouts
from steer.train.tasks import Task, format_prompt, score_batch


def _countdown_eval(model, tokenizer, problems, cfg: EvalConfig, *, max_new_tokens: int, seed: int) -> dict:
    """The testbed's ``evaluate_policy`` (same definitions), mapped to ``heldout/`` keys."""
    from steer.testbed import evaluate_policy

    res = evaluate_policy(
        model,
        tokenizer,
        problems,
        k=cfg.n_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=max_new_tokens,
        batch_size=cfg.batch_size,
        seed=seed,
        return_samples=True,
    )
    correct = res["correct"]
    out = {
        "heldout/acc": float(res["accuracy"]),
        "heldout/solved": sum(any(c) for c in correct) / len(correct),
        "heldout/diversity": float(res["diversity"]),
        "heldout/solutions_available": float(res["solutions_available"]),
        "heldout/entropy": float(res["entropy"]),
        "heldout/response_length": float(res["response_len"]),
    }
    return _finish(out, correct, cfg)


def _finish(out: dict, correct: list[list[bool]], cfg: EvalConfig) -> dict:
    per_problem = [sum(c) / len(c) for c in correct]
    mean = sum(per_problem) / len(per_problem)
    if len(per_problem) > 1:
        var = sum((x - mean) ** 2 for x in per_problem) / (len(per_problem) - 1)
        out["heldout/acc_se"] = (var / len(per_problem)) ** 0.5
    counts = [(len(c), sum(c)) for c in correct]
    for k in cfg.ks:
        out[f"heldout/pass@{k}"] = mean_pass_at_k(counts, k)
    return out


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

    Uses (and restores) torch's global RNG seeded with ``seed``, so the result depends only on
    the weights and the seed, never on the training RNG stream.
    """
    problems = task.heldout_problems() if problems is None else problems
    if not problems:
        raise ValueError("evaluate_heldout: no held-out problems")
    if task.name == "countdown":
        return _countdown_eval(model, tokenizer, problems, cfg, max_new_tokens=max_new_tokens, seed=seed)
    n = cfg.n_samples
    per_call = max(1, cfg.batch_size // n)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        correct: list[list[bool]] = []
        distinct: list[int] = []
        lengths: list[float] = []
        for s in range(0, len(problems), per_call):
            chunk = problems[s : s + per_call]
            ro = generate_rollouts(
                model,
                tokenizer,
                [format_prompt(tokenizer, task, p) for p in chunk],
                n,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_new_tokens=max_new_tokens,
                max_prompt_tokens=max_prompt_tokens,
            )
            lengths.extend(ro.response_mask.sum(1).float().tolist())
            for i, p in enumerate(chunk):
                texts = ro.texts[i * n : (i + 1) * n]
                verdicts = score_batch(task, [p] * len(texts), texts)
                correct.append(verdicts)
                forms = {task.canonical(p, t) for t, ok in zip(texts, verdicts) if ok}
                forms.discard(None)
                distinct.append(len(forms))
    finally:
        torch.set_rng_state(state)
    out = {
        "heldout/acc": avg_at_k(correct),
        "heldout/solved": sum(any(c) for c in correct) / len(correct),
        "heldout/diversity": sum(distinct) / len(distinct),
        "heldout/response_length": sum(lengths) / max(1, len(lengths)),
    }
    return _finish(out, correct, cfg)
