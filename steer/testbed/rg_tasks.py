"""reasoning-gym as a second, external source of testbed problems.

:class:`ReasoningGymTask` draws items from a reasoning-gym dataset (``basic_arithmetic`` and
``chain_sum`` have narrow, tiny-model-friendly presets; any other reasoning-gym task name works with
an explicit config) and exposes them with the same interface as the countdown task:
``problems(split, n)`` returning objects with ``prompt``, ``answer``, ``solutions``, ``verify``,
``reward``.

Scoring is STRICT exact match (:func:`strict_match`): the response, stripped of surrounding
whitespace, must equal the gold answer, stripped. reasoning-gym's own ``score_answer`` gives partial
credit ``len(gold)/len(answer)`` when the gold is a substring of the answer (spec evaluation.md §5),
which a policy learns to farm; it is available only as :meth:`RGProblem.rg_score` for comparison.

Splits: train and held-out items come from different seeds, and a hash of the question text
assigns every question to exactly one split (the same rule as the countdown task), so the two sets
never share a question even when the generator's space is small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .countdown import split_of

__all__ = ["PRESETS", "RGProblem", "ReasoningGymTask", "strict_match"]

PRESETS: dict[str, dict[str, Any]] = {
    "basic_arithmetic": dict(
        min_terms=2,
        max_terms=2,
        min_digits=1,
        max_digits=2,
        operators=("+", "-"),
        allow_parentheses=False,
        allow_negation=False,
    ),
    "chain_sum": dict(min_terms=2, max_terms=3, min_digits=1, max_digits=2),
}


def strict_match(response: Any, answer: str) -> bool:
    """Exact string match after stripping surrounding whitespace; no partial credit, no
    substring match, non-strings are wrong."""
    if not isinstance(response, str):
        return False
    return response.strip() == str(answer).strip()


@dataclass(frozen=True)
class RGProblem:
    """One reasoning-gym item with a strict verifier."""

    prompt: str
    answer: str
    task: str
    index: int
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def solutions(self) -> tuple[str, ...]:
        return (self.answer,)

    def verify(self, response: str) -> bool:
        return strict_match(response, self.answer)

    def reward(self, response: str) -> float:
        """1.0 if the response is exactly the answer, else 0.0."""
        return 1.0 if self.verify(response) else 0.0

    def rg_score(self, response: str) -> float:
        """reasoning-gym's own (lenient, partial-credit) score, for comparison only."""
        import reasoning_gym as rg

        entry = {"question": self.prompt, "answer": self.answer, "metadata": dict(self.metadata)}
        try:
            return float(rg.get_score_answer_fn(self.task)(response, entry))
        except Exception:  # some reasoning-gym scorers raise on junk (spec §5)
            return 0.0


@dataclass
class ReasoningGymTask:
    """Problems from reasoning-gym task ``name`` with ``config`` (default: the narrow preset)."""

    name: str = "basic_arithmetic"
    config: dict[str, Any] | None = None
    train_seed: int = 1234
    heldout_seed: int = 98765
    heldout_percent: int = 20

    def __post_init__(self) -> None:
        if self.config is None:
            if self.name not in PRESETS:
                raise ValueError(
                    f"reasoning-gym task {self.name!r} has no preset here; pass config=... "
                    f"(presets: {sorted(PRESETS)})"
                )
            self.config = dict(PRESETS[self.name])
        if self.train_seed == self.heldout_seed:
            raise ValueError("ReasoningGymTask: train_seed and heldout_seed must differ")
        if not 1 <= self.heldout_percent <= 99:
            raise ValueError(f"heldout_percent must be in 1..99, got {self.heldout_percent}")

    def problems(self, split: str, n: int, seed: int | None = None) -> list[RGProblem]:
        """``n`` distinct problems of ``split`` ("train" or "heldout")."""
        import reasoning_gym as rg

        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if seed is None:
            seed = self.train_seed if split == "train" else self.heldout_seed
        frac = (self.heldout_percent if split == "heldout" else 100 - self.heldout_percent) / 100
        size = int(2 * n / frac) + 64  # items are generated lazily, so a large size costs nothing
        try:
            ds = rg.create_dataset(self.name, size=size, seed=seed, **self.config)
        except (TypeError, ValueError, AssertionError, KeyError) as e:
            raise ValueError(f"reasoning-gym task {self.name!r} rejected config {self.config}: {e}") from e
        out: list[RGProblem] = []
        seen: set[str] = set()
        for i in range(size):
            item = ds[i]
            q = item["question"]
            if q in seen or split_of(f"{self.name}:{q}", self.heldout_percent) != split:
                continue
            seen.add(q)
            out.append(RGProblem(q, str(item["answer"]), self.name, i, dict(item.get("metadata", {}))))
            if len(out) == n:
                return out
        raise ValueError(
            f"reasoning-gym {self.name}: only {len(out)} distinct {split} problems among {size} items; "
            f"widen the config {self.config}"
        )

    def verify(self, problem: RGProblem, response: str) -> bool:
        return problem.verify(response)
