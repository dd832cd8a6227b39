"""Scorer registry: scorer by name, default scorer by ``data_source``.

A scorer is a pure function ``(response, gold) -> (correct, pred, reason)`` that runs inside a
pool worker; the registry also says which reward value a verdict maps to (math_verify and qwen:
1 / 0; dapo: +1 / -1, as in the DAPO recipe).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    module: str
    function: str
    reward_correct: float
    reward_wrong: float
    description: str

    def load(self) -> Callable[[str, str], tuple[bool, str | None, str]]:
        return getattr(importlib.import_module(self.module), self.function)


SCORERS: dict[str, ScorerSpec] = {
    "math_verify": ScorerSpec(
        "math_verify",
        "steer.rewards.math_verify_scorer",
        "score_math_verify",
        1.0,
        0.0,
        "math-verify: gold boxed, \\boxed{} preferred, Answer: line understood, verify(gold, pred)",
    ),
    "dapo": ScorerSpec(
        "dapo",
        "steer.rewards.dapo",
        "score_dapo",
        1.0,
        -1.0,
        "DAPO: last Answer: line in the last 300 chars (else last \\boxed{}), Minerva-normalised, exact",
    ),
    "qwen": ScorerSpec(
        "qwen",
        "steer.rewards.qwen",
        "score_qwen",
        1.0,
        0.0,
        "Qwen-style: normalisation, exact integers, 1e-6 relative tolerance, percentage leniency, element-wise tuples",
    ),
    "qwen_strict": ScorerSpec(
        "qwen_strict",
        "steer.rewards.qwen",
        "score_qwen_strict",
        1.0,
        0.0,
        "qwen without the percentage leniency (ref*100 / ref/100 not accepted)",
    ),
}

#: Default scorer per ``data_source`` (exact name, then prefix); anything else -> math_verify.
DEFAULT_BY_SOURCE: dict[str, str] = {"math_dapo": "dapo"}
DEFAULT_BY_PREFIX: tuple[tuple[str, str], ...] = ()
FALLBACK_SCORER = "math_verify"


def list_scorers() -> list[str]:
    """Names of the registered scorers."""
    return sorted(SCORERS)


def get_scorer(name: str) -> ScorerSpec:
    """The scorer called ``name``; unknown name -> ValueError listing the valid ones."""
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; valid: {', '.join(list_scorers())}") from None


def default_scorer(data_source: str | None) -> str:
    """Scorer name used for ``data_source`` when none is given explicitly."""
    if data_source is None:
        return FALLBACK_SCORER
    if data_source in DEFAULT_BY_SOURCE:
        return DEFAULT_BY_SOURCE[data_source]
    for prefix, name in DEFAULT_BY_PREFIX:
        if data_source.startswith(prefix):
            return name
    return FALLBACK_SCORER


def register_scorer(spec: ScorerSpec, *, data_sources: tuple[str, ...] = ()) -> None:
    """Add a scorer (its module must be importable in the worker processes)."""
    SCORERS[spec.name] = spec
    for ds in data_sources:
        DEFAULT_BY_SOURCE[ds] = spec.name
