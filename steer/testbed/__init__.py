"""The CPU testbed: a countdown task with several correct solutions per
problem, reasoning-gym as an external source, a character-level tokenizer, a tiny Qwen2 policy,
a cached supervised warm-start and accuracy/entropy/diversity measurement.

Public API::

    build_tokenizer() -> PreTrainedTokenizerFast
    build_model(tokenizer, preset="tiny", seed=0, **overrides) -> Qwen2ForCausalLM
    load_policy(path_or_name) -> (model, tokenizer)
    save_policy(model, tokenizer, path) -> Path
    make_task(name="countdown", **config) -> CountdownTask | ReasoningGymTask
        task.problems(split="train"|"heldout", n) -> list[Problem]
        problem.prompt, .answer, .solutions, .verify(text) -> bool, .reward(text) -> float
    warm_start(config: WarmStartConfig | dict | None = None, cache_dir=None) -> Path
    evaluate_policy(model, tokenizer, problems, k=8, temperature=1.0, top_p=1.0) -> dict
    distinct_correct_solutions(problem, responses) -> int

See docs/testbed.md.
"""

from __future__ import annotations

from typing import Any

from .countdown import (
    CountdownConfig,
    CountdownTask,
    Problem,
    canonical_form,
    distinct_correct_solutions,
    enumerate_trees,
    solve,
    verify,
)
from .diversity import evaluate_policy, generate_responses, prompt_texts
from .model import PRESETS, build_model, count_parameters, load_policy, save_policy
from .rg_tasks import ReasoningGymTask, RGProblem, strict_match
from .tokenizer import build_tokenizer
from .warmstart import WarmStartConfig, cache_key, default_cache_dir, is_valid_cache, warm_start

__all__ = [
    "PRESETS",
    "CountdownConfig",
    "CountdownTask",
    "Problem",
    "RGProblem",
    "ReasoningGymTask",
    "WarmStartConfig",
    "build_model",
    "build_tokenizer",
    "cache_key",
    "canonical_form",
    "count_parameters",
    "default_cache_dir",
    "distinct_correct_solutions",
    "enumerate_trees",
    "evaluate_policy",
    "generate_responses",
    "is_valid_cache",
    "load_policy",
    "make_task",
    "prompt_texts",
    "save_policy",
    "solve",
    "strict_match",
    "verify",
    "warm_start",
]


def make_task(name: str = "countdown", **config: Any):
    """A task by name: ``"countdown"`` (keyword arguments are :class:`CountdownConfig` fields) or a
    reasoning-gym task name such as ``"basic_arithmetic"`` / ``"chain_sum"`` (keyword arguments
    are :class:`ReasoningGymTask` fields: ``config``, ``train_seed``, ``heldout_seed``,
    ``heldout_percent``)."""
    if name == "countdown":
        try:
            return CountdownTask(CountdownConfig(**config))
        except TypeError as e:
            raise ValueError(
                f"countdown: {e}; valid fields: {list(CountdownConfig.__dataclass_fields__)}"
            ) from e
    try:
        return ReasoningGymTask(name, **config)
    except TypeError as e:
        raise ValueError(f"{name}: {e}") from e
