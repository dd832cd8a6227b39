"""END TO END: a real `python -m verl.trainer.main_ppo` GRPO run with loss_mode=steer on CPU.

A tiny Qwen2 policy built locally (tests_verl/e2e_assets.py), 2 steps, Ray workers, verl's FSDP2
engine on gloo, verl's v1 trainer. verl has no CPU platform and no CPU rollout backend: the
test-only distribution tests_verl/cpu_backend adds both through verl's own plugin registries
(`VERL_PLATFORM=cpu`, `rollout.name=hf_cpu`). The run proves that the integration runs on verl's
distributed engine: the entry point loads in the worker processes, the SteerPolicyLossConfig
subclass reaches them, the current and old entropies reach the loss, the mini-batch scope pass
runs, and steer's metrics appear in verl's logged output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

LAMBDA_MIN = 0.8


def _overrides(d: Path) -> list[str]:
    return [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={d}/data/train.parquet",
        f"data.val_files={d}/data/val.parquet",
        "data.train_batch_size=4",
        "data.max_prompt_length=16",
        "data.max_response_length=8",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={d}/policy",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.dtype=float32",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.clip_ratio_low=0.2",
        "actor_rollout_ref.actor.clip_ratio_high=0.28",
        "actor_rollout_ref.actor.clip_ratio_c=10",
        # the switch (docs/verl.md): one loss_mode, entropy on, steer's config class for lambda_min
        "actor_rollout_ref.actor.policy_loss.loss_mode=steer",
        "actor_rollout_ref.actor.calculate_entropy=true",
        "actor_rollout_ref.actor.policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig",
        f"+actor_rollout_ref.actor.policy_loss.lambda_min={LAMBDA_MIN}",
        "+actor_rollout_ref.actor.policy_loss.scope=minibatch",  # the exact Eq. 10 scope pass
        "actor_rollout_ref.rollout.name=hf_cpu",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.checkpoint_engine.backend=naive",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"reward.custom_reward_function.path={HERE}/e2e_reward.py",
        "reward.custom_reward_function.name=compute_score",
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
        "trainer.experiment_name=steer_cpu",
        f"trainer.default_local_dir={d}/ckpt",
        "+ray_kwargs.ray_init.num_gpus=1",
        "+ray_kwargs.ray_init.num_cpus=16",
    ]


def _metric(line: str, key: str) -> float:
    m = re.search(re.escape(key) + r":([-0-9.eE+]+)", line)
    assert m, f"{key} not in the step line"
    return float(m.group(1))


@pytest.mark.timeout(1000)
def test_main_ppo_grpo_run_with_loss_mode_steer_on_cpu(tmp_path):
    import e2e_assets

    e2e_assets.build_policy(tmp_path / "policy")
    e2e_assets.build_data(tmp_path / "data")
    env = dict(os.environ)
    env.update(
        VERL_PLATFORM="cpu",
        VERL_ENGINE_DEVICE="cuda",  # verl registers its FSDP engine for cuda/npu; the platform is cpu
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        RAY_DEDUP_LOGS="0",
        PYTHONUNBUFFERED="1",
    )
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *_overrides(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=900,
    )
    out = r.stdout + r.stderr
    (tmp_path / "run.log").write_text(out)
    elapsed = time.time() - t0
    assert r.returncode == 0, out[-6000:]
    steps = [ln for ln in out.splitlines() if re.search(r"\bstep:\d+ - ", ln)]
    assert len(steps) == 2, out[-4000:]
    # the plugin loaded in the Ray worker processes (through the entry point, at `import verl`),
    # and steer's loss ran there with both entropies
    ran = re.findall(
        r"\(WorkerDict pid=(\d+)\).*running loss_mode='steer' \(core method 'steer', scope=minibatch\) "
        r"in pid \d+; entropy in the micro-batch: current=True old=True",
        out,
    )
    assert ran, "steer's loss did not run in a WorkerDict process:\n" + out[-4000:]
    loaded = set(re.findall(r"steer verl plugin loaded in pid (\d+)", out))
    assert set(ran) <= loaded
    assert len(loaded) > 1  # driver and Ray workers
    for line in steps:
        # steer's metrics in verl's logged output, reduced over the step
        w_min = _metric(line, "actor/steer/weight_min")
        assert abs(w_min - LAMBDA_MIN) < 1e-6  # the mini-batch's largest |Omega| gets lambda_min
        assert 0 < _metric(line, "actor/steer/weight_mean") <= 1
        assert _metric(line, "actor/steer/tokens") > 0
        shares = [_metric(line, f"actor/steer/quadrant/{q}/share") for q in ("I", "II", "III", "IV")]
        assert abs(sum(shares) - 1) < 1e-6
        assert _metric(line, "actor/steer/omega_max") > 0
        # verl's own names, and a real update
        for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower", "actor/pg_loss"):
            _metric(line, key)
        assert _metric(line, "actor/grad_norm") > 0
    print(f"main_ppo 2-step steer run: {elapsed:.0f} s")
