"""The reward file through verl's own loader (``reward.custom_reward_function``) and reward manager."""

from __future__ import annotations

import inspect

import pytest
from omegaconf import OmegaConf

import steer.integrations.verl.reward as reward_module


def _fn(**reward_kwargs):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": reward_module.__file__,
                    "name": "compute_score",
                    "reward_kwargs": reward_kwargs,
                }
            }
        }
    )
    return get_custom_reward_fn(cfg)


def test_scores_through_the_verifier_pool_by_data_source():
    fn = _fn(pool_workers=1)
    right = fn(
        data_source="math500",
        solution_str="so it is \\boxed{\\frac{1}{2}}",
        ground_truth="0.5",
        extra_info={},
    )
    wrong = fn(data_source="math500", solution_str="\\boxed{3}", ground_truth="0.5", extra_info={})
    assert right["score"] == 1.0 and right["acc"] == 1.0
    assert wrong["score"] == 0.0 and wrong["acc"] == 0.0
    # DAPO's convention (+1 / -1 on the last "Answer:" line), as verl's math_dapo
    dapo_ok = fn(data_source="math_dapo", solution_str="work\nAnswer: 42", ground_truth="42", extra_info=None)
    dapo_bad = fn(
        data_source="math_dapo", solution_str="work\nAnswer: 41", ground_truth="42", extra_info=None
    )
    assert dapo_ok["score"] == 1.0 and dapo_bad["score"] == -1.0


def test_scorer_from_extra_info_and_kwargs():
    fn = _fn(pool_workers=1, scorer="math_verify")
    assert (
        fn(data_source="math_dapo", solution_str="\\boxed{7}", ground_truth="7", extra_info=None)["score"]
        == 1.0
    )
    fn2 = _fn(pool_workers=1)
    out = fn2(
        data_source="x", solution_str="\\boxed{7}", ground_truth="7", extra_info={"scorer": "math_verify"}
    )
    assert out["score"] == 1.0


def test_hard_time_limit_gives_a_defined_score():
    fn = _fn(pool_workers=1, timeout=2.0)
    # a power tower that a naive evaluator would try to expand
    out = fn(data_source="math500", solution_str="\\boxed{9^{9^{9^{9}}}}", ground_truth="1", extra_info={})
    assert out["score"] == 0.0


def test_signature_is_verls():
    params = list(inspect.signature(reward_module.compute_score).parameters)
    assert params[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]


@pytest.mark.parametrize("bad", [None, ""])
def test_empty_response_scores_zero(bad):
    fn = _fn(pool_workers=1)
    assert fn(data_source="math500", solution_str=bad or "", ground_truth="1", extra_info={})["score"] == 0.0


# -- an answer that fails verification is never better than a wrong one -----------------------

HOSTILE = [
    "\\boxed{" + "7" * 5000 + "}",  # a literal no parser reads
    "\\boxed{" + "-" * 6000 + "1}",  # a parser runs to the time limit on it
    "\\boxed{\\frac{1}{100000!}}",
    "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
]
TOWER = "\\boxed{9^{9^{9^{9}}}}"  # past the pool's time limit (no rule rejects it up front)


class _TextTokenizer:
    """Token id ``i`` decodes to ``texts[i]`` (the reward manager only decodes)."""

    def __init__(self, texts):
        self.texts = texts

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.texts[int(i)] for i in ids)


@pytest.mark.parametrize("source, wrong", [("math500", 0.0), ("math_dapo", -1.0)])
def test_answers_that_fail_verification_get_the_wrong_reward_in_verls_reward_manager(source, wrong):
    import numpy as np
    import torch
    from verl import DataProto
    from verl.workers.reward_manager.naive import NaiveRewardManager

    texts = ["", "so \\boxed{12}", "so \\boxed{13}", *HOSTILE, TOWER]
    n = len(texts) - 1
    data = DataProto.from_dict(
        tensors={
            "prompts": torch.zeros(n, 1, dtype=torch.long),
            "responses": torch.arange(1, n + 1).view(n, 1),
            "attention_mask": torch.ones(n, 2, dtype=torch.long),
        },
        non_tensors={
            "reward_model": np.array([{"ground_truth": "12", "style": "rule"}] * n, dtype=object),
            "data_source": np.array([source] * n, dtype=object),
            "extra_info": np.array([{} for _ in range(n)], dtype=object),
        },
    )
    manager = NaiveRewardManager(
        _TextTokenizer(texts), num_examine=0, compute_score=_fn(pool_workers=1, timeout=1.0)
    )
    out = manager(data, return_dict=True)
    rewards = out["reward_tensor"][:, 0].tolist()
    assert rewards == [1.0] + [wrong] * (n - 1)
    timed_out = 0.0 if source == "math_dapo" else 1.0  # dapo compares strings: no time limit reached
    assert out["reward_extra_info"]["verify_error"] == [0.0] * (n - 1) + [timed_out]
