"""math_reward: TRL's reward-function signature over steer's verifier pool."""

from __future__ import annotations

import pytest

from steer.integrations.trl import math_reward
from steer.integrations.trl.rewards import MathReward


def test_scores_verl_schema_columns_with_the_source_scorer():
    completions = [
        [{"role": "assistant", "content": "so the sum is 34.\nAnswer: 34"}],
        [{"role": "assistant", "content": "Answer: 35"}],
        "plain text, no answer line",
    ]
    out = math_reward(
        prompts=["p"] * 3,
        completions=completions,
        completion_ids=[[1]] * 3,
        reward_model=[{"ground_truth": "34", "style": "rule"}] * 3,
        data_source=["math_dapo"] * 3,
    )
    assert out == [1.0, -1.0, -1.0]  # the DAPO scorer: +1 / -1


def test_other_gold_columns_and_an_explicit_scorer():
    r = MathReward(scorer="math_verify")
    assert r(prompts=["p", "p"], completions=["\\boxed{1/2}", "\\boxed{3}"], answer=["0.5", "2"]) == [
        1.0,
        0.0,
    ]


def test_missing_gold_names_the_columns():
    with pytest.raises(ValueError, match="reward_model"):
        math_reward(prompts=["p"], completions=["x"], data_source=["math_dapo"])
    with pytest.raises(ValueError, match="ground_truth"):
        math_reward(prompts=["p"], completions=["x"], reward_model=[{"style": "rule"}])
