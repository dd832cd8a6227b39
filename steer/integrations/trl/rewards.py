"""The project's math reward as a TRL reward function (scored in steer's verifier pool).

TRL calls a reward function with ``prompts``, ``completions``, ``completion_ids`` and every dataset
column as keyword arguments. For a dataset in verl's schema (the files of ``../data``: columns
``data_source``, ``prompt``, ``reward_model.ground_truth``) :data:`math_reward` reads the gold
answer from ``reward_model`` (or a ``ground_truth`` / ``answer`` column), picks the scorer from
``data_source`` (``math_dapo`` -> the DAPO scorer, +1 / -1; see steer.rewards.registry) and scores
the whole batch in one call to the process pool (a hard per-item time limit).

A completion whose verification errors or times out gets the scorer's wrong-answer reward (0, or
-1 for dapo), as in steer's trainer, verl's reward function and ``steer eval``: a reward of
``None`` (no part in the group's baseline, advantage 0) would score better than a wrong answer,
and a policy can learn answers that always fail verification to escape the penalty. The fraction
of such completions is logged as ``reward/verify_error_frac`` (TRL's ``log_metric``), so a rising
rate is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from steer.rewards.api import score_responses
from steer.rewards.pool import verify_error_frac

__all__ = ["MathReward", "math_reward"]


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}, ...]
        parts = [
            m.get("content", "") for m in completion if isinstance(m, dict) and m.get("role") == "assistant"
        ]
        if not parts:
            parts = [m.get("content", "") for m in completion if isinstance(m, dict)]
        return "".join(p if isinstance(p, str) else "" for p in parts)
    raise TypeError(
        f"math_reward: a completion must be a string or a list of messages, got {type(completion).__name__}"
    )


def _golds(n: int, kwargs: dict) -> list[str]:
    if "reward_model" in kwargs:
        out = []
        for i, rm in enumerate(kwargs["reward_model"]):
            if not isinstance(rm, dict) or "ground_truth" not in rm:
                raise ValueError(f"math_reward: reward_model[{i}] has no 'ground_truth' (got {rm!r})")
            out.append(str(rm["ground_truth"]))
        return out
    for key in ("ground_truth", "answer", "solution"):
        if key in kwargs:
            return [str(g) for g in kwargs[key]]
    raise ValueError(
        "math_reward needs the gold answers in a dataset column: 'reward_model' (verl's schema, with "
        f"'ground_truth'), 'ground_truth', 'answer' or 'solution'; the columns are {sorted(kwargs)}"
    )


class MathReward:
    """TRL reward function: the verifier pool's score of each completion against its gold answer.

    - ``scorer``: a scorer of steer.rewards.registry for every item (None: from ``data_source``).

    A timeout or a verifier error scores as a wrong answer (module docstring); the fraction of
    them in the last batch is ``self.last_verify_error_frac`` and is logged through TRL's
    ``log_metric`` as ``reward/verify_error_frac``.
    """

    __name__ = "math_reward"

    def __init__(self, scorer: str | None = None) -> None:
        self.scorer = scorer
        self.last_verify_error_frac = 0.0

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        responses = [_text(c) for c in completions]
        golds = _golds(len(responses), kwargs)
        if len(golds) != len(responses):
            raise ValueError(f"math_reward: {len(responses)} completions but {len(golds)} gold answers")
        sources = kwargs.get("data_source")
        verdicts = score_responses(
            responses, golds, data_sources=None if sources is None else list(sources), scorer=self.scorer
        )
        self.last_verify_error_frac = verify_error_frac(verdicts)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric("reward/verify_error_frac", self.last_verify_error_frac)
        return [float(v.score) for v in verdicts]


math_reward = MathReward()
