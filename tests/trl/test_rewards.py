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


# -- an answer that fails verification is never better than a wrong one -----------------------

HOSTILE = [
    "\\boxed{" + "7" * 5000 + "}",  # a literal no parser reads
    "\\boxed{" + "-" * 6000 + "1}",  # a parser runs to the time limit on it
    "\\boxed{\\frac{1}{100000!}}",
    "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
]


@pytest.mark.parametrize("source, wrong", [("math500", 0.0), ("math_dapo", -1.0)])
def test_answers_that_always_fail_get_the_wrong_reward(source, wrong):
    logged = []
    out = MathReward()(
        prompts=["p"] * 6,
        completions=["\\boxed{12}", "\\boxed{13}", *HOSTILE],
        reward_model=[{"ground_truth": "12"}] * 6,
        data_source=[source] * 6,
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert out == [1.0, wrong, wrong, wrong, wrong, wrong]
    assert logged == [("reward/verify_error_frac", 0.0)]  # judged wrong before parsing: no error


def test_a_timeout_gets_the_wrong_reward_through_trls_trainer(tokenizer, tmp_path):
    """TRL's own reward path (``GRPOTrainer._calculate_rewards``: None would become NaN there, an
    unscorable completion with advantage 0): a completion the verifier cannot finish scores 0,
    like the wrong answer next to it, and the verify-error fraction is logged."""
    from datasets import Dataset

    from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer

    from .helpers import COMMON, tiny_model

    ds = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "2+2?"}]] * 4,
            "reward_model": [{"ground_truth": "4", "style": "rule"}] * 4,
            "data_source": ["math500"] * 4,
        }
    )
    args = SteerGRPOConfig(**{**COMMON, "output_dir": str(tmp_path), "max_steps": 1})
    trainer = SteerGRPOTrainer(
        model=tiny_model(tokenizer),
        reward_funcs=MathReward(),
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
    )
    tower = "\\boxed{9^{9^{9^{9}}}}"  # past the pool's time limit (no rule rejects it up front)
    texts = ["so \\boxed{4}", "so \\boxed{5}", HOSTILE[0], tower]
    inputs = [dict(ds[i]) for i in range(4)]
    prompts = [x["prompt"] for x in inputs]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    rewards = trainer._calculate_rewards(inputs, prompts, completions, [[1]] * 4)
    assert rewards[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert trainer._pending_metrics["reward/verify_error_frac"] == [0.25]
