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
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "smollm2-135m-instruct"
LAMBDA_MIN = 0.8

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
    import steer.integrations.verl.reward as reward

    return [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={d}/data/train.parquet",
        f"data.val_files={d}/data/val.parquet",
        "data.train_batch_size=4",
        "data.max_prompt_length=64",
        "data.max_response_length=96",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={model}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.dtype=float32",
        "actor_rollout_ref.actor.optim.lr=1e-6",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.clip_ratio_low=0.2",
        "actor_rollout_ref.actor.clip_ratio_high=0.28",
        "actor_rollout_ref.actor.clip_ratio_c=10",
        "actor_rollout_ref.actor.policy_loss.loss_mode=steer",
        "actor_rollout_ref.actor.calculate_entropy=true",
        "actor_rollout_ref.actor.policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig",
        f"+actor_rollout_ref.actor.policy_loss.lambda_min={LAMBDA_MIN}",
        "+actor_rollout_ref.actor.policy_loss.scope=minibatch",
        "actor_rollout_ref.rollout.name=hf_cpu",
        "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.checkpoint_engine.backend=naive",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"reward.custom_reward_function.path={reward.__file__}",
        "reward.custom_reward_function.name=compute_score",
        "+reward.custom_reward_function.reward_kwargs.pool_workers=1",
        "reward.num_workers=1",
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "trainer.logger=[console]",
        "trainer.total_training_steps=2",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        "trainer.save_freq=-1",
        "trainer.project_name=steer_e2e",
        "trainer.experiment_name=steer_cpu_smol",
        f"trainer.default_local_dir={d}/ckpt",
        "+ray_kwargs.ray_init.num_gpus=1",
        "+ray_kwargs.ray_init.num_cpus=16",
    ]


def _metric(line: str, key: str) -> float:
    m = re.search(re.escape(key) + r":([-0-9.eE+]+)", line)
    assert m, f"{key} not in the step line"
    return float(m.group(1))


@pytest.mark.timeout(1500)
def test_main_ppo_grpo_run_with_loss_mode_steer_on_the_real_model(tmp_path):
    model = _model_folder()
    _build_data(tmp_path / "data")
    env = dict(os.environ)
    env.update(
        VERL_PLATFORM="cpu",
        VERL_ENGINE_DEVICE="cuda",
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        RAY_DEDUP_LOGS="0",
        PYTHONUNBUFFERED="1",
    )
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *_overrides(tmp_path, model)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=1400,
    )
    out = r.stdout + r.stderr
    log = Path(os.environ.get("STEER_E2E_LOG", tmp_path / "run.log"))
    log.write_text(out)
    elapsed = time.time() - t0
    assert r.returncode == 0, out[-6000:]
    steps = [ln for ln in out.splitlines() if re.search(r"\bstep:\d+ - ", ln)]
    assert len(steps) == 2, out[-4000:]
    assert re.search(r"\(WorkerDict pid=\d+\).*running loss_mode='steer'", out), out[-4000:]
    for line in steps:
        w_min, w_mean = _metric(line, "actor/steer/weight_min"), _metric(line, "actor/steer/weight_mean")
        assert LAMBDA_MIN - 1e-6 <= w_min <= w_mean <= 1
        assert _metric(line, "actor/steer/tokens") > 0
        shares = [_metric(line, f"actor/steer/quadrant/{q}/share") for q in ("I", "II", "III", "IV")]
        assert abs(sum(shares) - 1) < 1e-6
        assert _metric(line, "actor/grad_norm") > 0
        acc = _metric(line, "critic/score/mean")
        assert 0 <= acc <= 1
    print(f"main_ppo 2-step steer run on {MODEL}: {elapsed:.0f} s")
    for line in steps:
        print(line)
