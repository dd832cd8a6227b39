"""Assets of the CPU end-to-end runs: a tiny Qwen2 policy built locally and a tiny math data set in
verl's parquet schema (no download), the `main_ppo` overrides of a 2-step GRPO run with
loss_mode=steer on the test-only CPU backend, and the run itself. Used by test_verl_e2e.py and
test_verl_e2e_smol.py; runnable as a script:

    .venv-verl/bin/python tests_verl/e2e_assets.py OUT_DIR
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LAMBDA_MIN = 0.8


def build_policy(out: Path) -> Path:
    """The project's testbed tokenizer (byte level: "\\n" is one token, as verl requires) and
    its 124k-parameter ``micro`` Qwen2 model, saved with ``save_pretrained``."""
    from steer.testbed.model import build_model, save_policy
    from steer.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, preset="micro", seed=0)
    return save_policy(model, tok, out)


def build_data(out_dir: Path, n_train: int = 32, n_val: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """Tiny addition problems: prompt "a+b=" as a chat message, ground truth the sum."""
    import pandas as pd

    rng = random.Random(seed)

    def rows(n: int, split: str) -> list[dict]:
        out = []
        for i in range(n):
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            out.append(
                {
                    "data_source": "steer_tiny_add",
                    "prompt": [{"role": "user", "content": f"{a}+{b}="}],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": str(a + b)},
                    "extra_info": {"split": split, "index": i, "scorer": "math_verify"},
                }
            )
        return out

    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = out_dir / "train.parquet", out_dir / "val.parquet"
    pd.DataFrame(rows(n_train, "train")).to_parquet(train)
    pd.DataFrame(rows(n_val, "test")).to_parquet(val)
    return train, val


def main_ppo_overrides(d: Path, **changes) -> list[str]:
    """``key=value`` overrides of a 2-step GRPO run with loss_mode=steer (lambda_min
    :data:`LAMBDA_MIN`, the mini-batch scope) on the CPU platform and ``hf_cpu`` rollout, data in
    ``d/data``, the tiny policy in ``d/policy``; ``changes`` replace or add keys (a run on another
    model or data)."""
    base = {
        "algorithm.adv_estimator": "grpo",
        "data.train_files": f"{d}/data/train.parquet",
        "data.val_files": f"{d}/data/val.parquet",
        "data.train_batch_size": 4,
        "data.max_prompt_length": 16,
        "data.max_response_length": 8,
        "data.dataloader_num_workers": 0,
        "actor_rollout_ref.model.path": f"{d}/policy",
        "+actor_rollout_ref.model.override_config.attn_implementation": "sdpa",
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "actor_rollout_ref.actor.fsdp_config.dtype": "float32",
        "actor_rollout_ref.actor.optim.lr": "1e-3",
        "actor_rollout_ref.actor.ppo_mini_batch_size": 2,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 2,
        "actor_rollout_ref.actor.use_kl_loss": "false",
        "actor_rollout_ref.actor.clip_ratio_low": 0.2,
        "actor_rollout_ref.actor.clip_ratio_high": 0.28,
        "actor_rollout_ref.actor.clip_ratio_c": 10,
        # the switch (docs/verl.md): one loss_mode, entropy on, steer's config class for lambda_min
        "actor_rollout_ref.actor.policy_loss.loss_mode": "steer",
        "actor_rollout_ref.actor.calculate_entropy": "true",
        "actor_rollout_ref.actor.policy_loss._target_": "steer.integrations.verl.SteerPolicyLossConfig",
        "+actor_rollout_ref.actor.policy_loss.lambda_min": LAMBDA_MIN,
        "+actor_rollout_ref.actor.policy_loss.scope": "minibatch",  # the exact Eq. 10 scope pass
        "actor_rollout_ref.rollout.name": "hf_cpu",
        "actor_rollout_ref.rollout.n": 2,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": 4,
        "actor_rollout_ref.rollout.checkpoint_engine.backend": "naive",
        "actor_rollout_ref.rollout.agent.num_workers": 1,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": 4,
        "transfer_queue.backend.SimpleStorage.num_data_storage_units": 1,
        "reward.custom_reward_function.path": f"{HERE}/e2e_reward.py",
        "reward.custom_reward_function.name": "compute_score",
        "reward.num_workers": 1,
        "trainer.device": "cpu",
        "trainer.n_gpus_per_node": 1,
        "trainer.nnodes": 1,
        "trainer.logger": "[console]",
        "trainer.total_training_steps": 2,
        "trainer.test_freq": -1,
        "trainer.val_before_train": "false",
        "trainer.save_freq": -1,
        "trainer.project_name": "steer_e2e",
        "trainer.experiment_name": "steer_cpu",
        "trainer.default_local_dir": f"{d}/ckpt",
        "+ray_kwargs.ray_init.num_gpus": 1,
        "+ray_kwargs.ray_init.num_cpus": 16,
    }
    return [f"{k}={v}" for k, v in {**base, **changes}.items()]


def run_main_ppo(overrides: list[str], log: Path, *, timeout: int) -> tuple[str, list[str], float]:
    """``python -m verl.trainer.main_ppo`` with ``overrides`` on the test-only CPU platform; its
    output is written to ``log``. Returns the output, verl's step lines and the wall time; the run
    must succeed and log two steps."""
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
        [sys.executable, "-m", "verl.trainer.main_ppo", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=timeout,
    )
    out = r.stdout + r.stderr
    log.write_text(out)
    elapsed = time.time() - t0
    assert r.returncode == 0, out[-6000:]
    steps = [ln for ln in out.splitlines() if re.search(r"\bstep:\d+ - ", ln)]
    assert len(steps) == 2, out[-4000:]
    return out, steps, elapsed


def metric(line: str, key: str) -> float:
    """The value of ``key`` in one of verl's console step lines."""
    m = re.search(re.escape(key) + r":([-0-9.eE+]+)", line)
    assert m, f"{key} not in the step line"
    return float(m.group(1))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print(build_policy(out / "policy"))
    print(*build_data(out / "data"))
