"""The one held-out evaluator: ``n`` samples per problem, verdicts, accuracy, pass@k, diversity.

Used by the trainer's periodic evaluation (``heldout/*`` metrics), the testbed's
``evaluate_policy`` and ``steer.evaluation.evaluate_problems``; it samples through
:func:`steer.evaluation.generate.sample`, so every caller shares one generation path and one
end-of-response rule.

:func:`evaluate_heldout` works on prompt strings and a scoring function, so it knows nothing of
any task: ``score(indices, texts) -> verdicts`` scores a batch of responses of the problems
``indices`` (a process pool, a recomputing verifier, ...), and the optional
``canonical(index, text) -> str | None`` maps a *correct* response to a canonical solution form
(for the diversity metric). The result keeps every sample; :meth:`HeldoutResult.metrics`
reduces them:

- ``acc``: correct samples / samples (avg@n; every problem has ``n`` samples, so this is the
  mean over problems of the per-problem accuracy, the unbiased pass@1);
- ``acc_se``: standard error of ``acc`` over problems (sample std of the per-problem accuracy
  / sqrt(problems)), with at least two problems;
- ``pass@k`` for each requested k: unbiased pass@k (:mod:`steer.evaluation.passk`), averaged
  over problems;
- ``solved``: share of problems with at least one correct sample;
- ``diversity``: mean number of distinct canonical forms among a problem's correct samples
  (with ``canonical``);
- ``response_length``: mean response length in tokens (the stop token included);
- ``truncated_frac``: share of samples that hit ``max_new_tokens``;
- ``entropy`` (with ``with_entropy``): token-mean over every valid response token of the
  entropy of the raw next-token distribution (temperature 1, before top-p; Eq. 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from steer.evaluation.generate import sample
from steer.evaluation.passk import mean_pass_at_k

__all__ = ["HeldoutResult", "evaluate_heldout"]


@dataclass
class HeldoutResult:
    """Every sample of a held-out evaluation, grouped per problem."""

    texts: list[list[str]]
    correct: list[list[bool]]
    n_tokens: list[list[int]]
    finish: list[list[str]]
    distinct: list[int] | None = None
    entropy_sums: list[list[float]] | None = None

    @property
    def n_problems(self) -> int:
        return len(self.correct)

    def accuracy(self) -> float:
        n = sum(len(c) for c in self.correct)
        return sum(sum(c) for c in self.correct) / n

    def metrics(self, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
        """The reduced metrics (module docstring), keys prefixed with ``prefix``."""
        P = self.n_problems
        out: dict[str, float] = {"acc": self.accuracy(), "solved": sum(any(c) for c in self.correct) / P}
        if self.distinct is not None:
            out["diversity"] = sum(self.distinct) / P
        total_tokens = sum(sum(c) for c in self.n_tokens)
        n_samples = sum(len(c) for c in self.n_tokens)
        out["response_length"] = total_tokens / n_samples
        out["truncated_frac"] = sum(f == "length" for fs in self.finish for f in fs) / n_samples
        if self.entropy_sums is not None:
            out["entropy"] = sum(sum(e) for e in self.entropy_sums) / max(total_tokens, 1)
        per_problem = [sum(c) / len(c) for c in self.correct]
        if P > 1:
            mean = sum(per_problem) / P
            var = sum((x - mean) ** 2 for x in per_problem) / (P - 1)
            out["acc_se"] = (var / P) ** 0.5
        counts = [(len(c), sum(c)) for c in self.correct]
        for k in ks:
            out[f"pass@{k}"] = mean_pass_at_k(counts, k)
        return {prefix + k: v for k, v in out.items()}


def evaluate_heldout(
    model,
    tokenizer,
    prompts: Sequence[str],
    score: Callable[[list[int], list[str]], list[bool]],
    *,
    n: int,
    temperature: float = 1.0,
    top_p: float = 0.7,
    top_k: int = 0,
    max_new_tokens: int = 48,
    max_prompt_tokens: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    canonical: Callable[[int, str], str | None] | None = None,
    with_entropy: bool = False,
) -> HeldoutResult:
    """Sample ``n`` responses for each of ``prompts`` (fully formatted strings) and score them.

    ``batch_size`` counts sequences (problems x n) per ``generate`` call. The sampler's RNG is
    seeded once with ``seed`` on a forked stream, so the result depends only on the weights and
    the seed, and the caller's RNG stream is untouched."""
    if len(prompts) == 0:
        raise ValueError("evaluate_heldout: no problems")
    if n < 1:
        raise ValueError(f"evaluate_heldout: n must be >= 1, got {n}")
    g = sample(
        model,
        tokenizer,
        list(prompts),
        n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=batch_size,
        seed=seed,
        with_entropy=with_entropy,
    )
    P = len(prompts)
    verdicts = [bool(v) for v in score([i // n for i in range(P * n)], g.texts)]
    if len(verdicts) != P * n:
        raise ValueError(f"evaluate_heldout: score returned {len(verdicts)} verdicts for {P * n} responses")

    def per_problem(xs):
        return [list(xs[i * n : (i + 1) * n]) for i in range(P)]

    texts, correct = per_problem(g.texts), per_problem(verdicts)
    distinct = None
    if canonical is not None:
        distinct = []
        for i in range(P):
            forms = {canonical(i, t) for t, ok in zip(texts[i], correct[i]) if ok}
            forms.discard(None)
            distinct.append(len(forms))
    return HeldoutResult(
        texts=texts,
        correct=correct,
        n_tokens=per_problem(g.n_tokens),
        finish=per_problem(g.finish),
        distinct=distinct,
        entropy_sums=per_problem(g.entropy_sum) if with_entropy else None,
    )
