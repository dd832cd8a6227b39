"""END TO END on a real pretrained LM: verl's `python -m verl.trainer.main_ppo` GRPO run with
loss_mode=steer on SmolLM2-135M-Instruct (`smollm2-135m-instruct`, docs/models.md), on CPU.

The same engine path as test_verl_e2e.py (Ray workers, FSDP2 on gloo, the test-only CPU platform
and `hf_cpu` rollout of tests_verl/cpu_backend), but with the real model, the task of
`steer train --config smol` (reasoning-gym chain_sum, two one-digit terms, the qwen_boxed prompt)
written as verl parquet, and steer's own verl reward (`steer.integrations.verl.reward`,
math-verify in steer's verifier pool). Two steps of 4 prompts x 4 rollouts, 96 new tokens. Slow
(minutes on a CPU) and skipped where the model's package is not installed."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from e2e_assets import LAMBDA_MIN, main_ppo_overrides, metric, run_main_ppo

MODEL = "smollm2-135m-instruct"

pytestmark = pytest.mark.slow


def _model_folder() -> str:
    from steer.models import ModelNotAvailable, check_available, resolve

    try:
        check_available(MODEL)
    except ModelNotAvailable as exc:
        pytest.skip(str(exc))
    return resolve(MODEL, log=lambda *a: None)


def _build_data(out: Path) -> None:
    """The smol config's training / held-out problems in verl's parquet schema."""
    import pandas as pd

    from steer.data import Problem, apply_template
    from steer.train.config import load_config
    from steer.train.tasks import build_task

    task_cfg = load_config("smol", [f"model.name_or_path={out}"]).task
    task = build_task(dataclasses.replace(task_cfg, train_size=32, heldout_size=8))

    def rows(problems, split):
        out_rows = []
        for i, p in enumerate(problems):
            msgs = apply_template(
                Problem(id=str(i), problem=p.prompt, gold=p.answer, prompt=[]), "qwen_boxed"
            )
            out_rows.append(
                {
                    "data_source": "reasoning_gym_chain_sum",
                    "prompt": msgs,
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": p.answer},
                    "extra_info": {"split": split, "index": i, "scorer": "math_verify"},
                }
            )
        return out_rows

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows(task.train_problems(), "train")).to_parquet(out / "train.parquet")
    pd.DataFrame(rows(task.heldout_problems(), "test")).to_parquet(out / "val.parquet")


def _overrides(d: Path, model: str) -> list[str]:
    """The tiny run's overrides (e2e_assets) with the real model, longer prompts and responses, 4
    rollouts, steer's own reward file and a learning rate for a pretrained model."""
    import steer.integrations.verl.reward as reward

    return main_ppo_overrides(
        d,
        **{
            "data.max_prompt_length": 64,
            "data.max_response_length": 96,
            "actor_rollout_ref.model.path": model,
            "actor_rollout_ref.actor.optim.lr": "1e-6",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 4,
            "actor_rollout_ref.rollout.n": 4,
            "reward.custom_reward_function.path": reward.__file__,
            "+reward.custom_reward_function.reward_kwargs.pool_workers": 1,
            "trainer.experiment_name": "steer_cpu_smol",
        },
    )


@pytest.mark.timeout(1500)
def test_main_ppo_grpo_run_with_loss_mode_steer_on_the_real_model(tmp_path):
    model = _model_folder()
    _build_data(tmp_path / "data")
    log = Path(os.environ.get("STEER_E2E_LOG", tmp_path / "run.log"))
    out, steps, elapsed = run_main_ppo(_overrides(tmp_path, model), log, timeout=1400)
    assert re.search(r"\(WorkerDict pid=\d+\).*running loss_mode='steer'", out), out[-4000:]
    for line in steps:
        w_min, w_mean = metric(line, "actor/steer/weight_min"), metric(line, "actor/steer/weight_mean")
        assert LAMBDA_MIN - 1e-6 <= w_min <= w_mean <= 1
        assert metric(line, "actor/steer/tokens") > 0
        shares = [metric(line, f"actor/steer/quadrant/{q}/share") for q in ("I", "II", "III", "IV")]
        assert abs(sum(shares) - 1) < 1e-6
        assert metric(line, "actor/grad_norm") > 0
        acc = metric(line, "critic/score/mean")
        assert 0 <= acc <= 1
    print(f"main_ppo 2-step steer run on {MODEL}: {elapsed:.0f} s")
    for line in steps:
        print(line)
