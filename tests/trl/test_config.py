"""SteerGRPOConfig: our fields, their validation, the TRL settings that are refused."""

from __future__ import annotations

import pytest
from transformers import HfArgumentParser

import steer.integrations.trl as steer_trl
from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer
from steer.integrations.trl.config import method_overrides

BASE = dict(output_dir="unused", report_to="none", use_cpu=True, bf16=False)


def cfg(**kw):
    return SteerGRPOConfig(**BASE, **kw)


def test_defaults_train_steer_with_trl_clip_range():
    c = cfg(epsilon_high=0.28)
    assert c.steer_method == "steer" and c.steer_method_kwargs == {} and c.steer_log_metrics
    over = method_overrides(c, "steer", {})
    assert over["eps_low"] == 0.2 and over["eps_high"] == 0.28 and over["loss_agg_mode"] == "token-mean"


def test_command_line_parses_our_fields():
    (c,) = HfArgumentParser(SteerGRPOConfig).parse_args_into_dataclasses(
        [
            "--output_dir",
            "o",
            "--use_cpu",
            "--bf16",
            "false",
            "--report_to",
            "none",
            "--steer_method",
            "steer",
            "--steer_method_kwargs",
            '{"lambda_min": 0.8}',
            "--loss_type",
            "grpo",
        ]
    )
    assert c.steer_method_kwargs == {"lambda_min": 0.8}
    assert method_overrides(c, "steer", c.steer_method_kwargs)["loss_agg_mode"] == "seq-mean-token-mean"


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"steer_method": "nope"}, ["steer_method", "nope"]),
        ({"steer_method_kwargs": "{bad"}, ["steer_method_kwargs", "JSON"]),
        ({"steer_method_kwargs": "[1]"}, ["steer_method_kwargs", "dict"]),
        ({"steer_method_kwargs": {"lambda_min": 2.0}}, ["lambda_min"]),
        ({"steer_method_kwargs": {"no_such": 1}}, ["no_such"]),
        ({"steer_method_kwargs": {"eps_high": 0.3}}, ["eps_high", "epsilon_high"]),
        ({"steer_method_kwargs": {"kl_coef": 0.1}}, ["kl_coef", "beta"]),
        ({"steer_method_kwargs": {"loss_agg_mode": "seq-mean-token-mean"}}, ["loss_agg_mode", "loss_type"]),
        ({"steer_method_kwargs": {"estimator": "exact"}}, ["exact", "fused LM head"]),
        ({"steer_method": "steer_causal"}, ["cause", "steer train"]),
        ({"steer_method": "entropy_band"}, ["cause", "steer train"]),
        ({"steer_method": "kl_penalty"}, ["beta"]),
        ({"steer_method": "entropy_bonus"}, ["entropy_coef"]),
        ({"steer_method": "adaptive_entropy"}, ["use_adaptive_entropy"]),
        ({"steer_method": "dr_grpo"}, ["loss_type='dr_grpo'"]),
        ({"steer_method": "dr_grpo", "loss_type": "dr_grpo"}, ["scale_rewards='none'"]),
        ({"steer_method": "gtpo"}, ["alpha1", "alpha2"]),
        ({"loss_type": "cispo"}, ["cispo", "clipped objective"]),
        ({"loss_type": "sapo"}, ["sapo"]),
        ({"loss_type": "vespo"}, ["vespo"]),
        ({"loss_type": "luspo"}, ["luspo"]),
        ({"importance_sampling_level": "sequence"}, ["importance_sampling_level"]),
        ({"delta": 3.0}, ["delta", "clip_c"]),
        ({"steer_method": "w_reinforce", "scale_rewards": "batch"}, ["scale_rewards='batch'"]),
        (
            {"steer_method": "opo", "multi_objective_aggregation": "normalize_then_sum"},
            ["multi_objective_aggregation"],
        ),
        (
            {
                "steer_method": "w_reinforce",
                "scale_rewards": "none",
                "steer_method_kwargs": {"norm_adv_by_std": True},
            },
            ["norm_adv_by_std"],
        ),
        (
            {
                "steer_method_kwargs": {"scope": "minibatch"},
                "gradient_accumulation_steps": 2,
                "steps_per_generation": 3,
            },
            ["steps_per_generation", "gradient_accumulation_steps"],
        ),
        ({"steer_method_kwargs": {"scope": "global"}}, ["scope='global'", "minibatch"]),
    ],
)
def test_refused_settings_name_the_key(kw, words):
    with pytest.raises(ValueError) as e:
        cfg(**kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_accepted_combinations():
    cfg(steer_method="dr_grpo", loss_type="dr_grpo", scale_rewards="none")
    c = cfg(steer_method="w_reinforce", scale_rewards="none")
    assert method_overrides(c, "w_reinforce", {})["norm_adv_by_std"] is False
    cfg(
        steer_method="steer",
        steer_method_kwargs={"scope": "microbatch"},
        gradient_accumulation_steps=2,
        steps_per_generation=3,
    )
    cfg(steer_method="steer", gradient_accumulation_steps=2)
    cfg(steer_method="gtpo", steer_method_kwargs='{"alpha1": 0.5, "alpha2": 0.5}')
    cfg(steer_method="grpo", top_entropy_quantile=0.2, beta=0.01, entropy_coef=0.001)


def test_trainer_refuses_a_plain_grpo_config(tokenizer):
    from trl import GRPOConfig

    from tests.trl.helpers import tiny_model

    with pytest.raises(TypeError, match="SteerGRPOConfig"):
        SteerGRPOTrainer(model=tiny_model(tokenizer), reward_funcs=lambda **k: [], args=GRPOConfig(**BASE))


def test_async_trainer_is_refused():
    with pytest.raises(AttributeError, match="async"):
        steer_trl.SteerAsyncGRPOTrainer  # noqa: B018

    import os
    import warnings

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.async_grpo import AsyncGRPOTrainer

    class Mixed(SteerGRPOTrainer, AsyncGRPOTrainer):
        pass

    with pytest.raises(TypeError, match="async"):
        Mixed(model=None, args=cfg())
