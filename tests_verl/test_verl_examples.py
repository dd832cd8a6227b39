"""The launch scripts in examples/verl compose into a valid verl 0.9.1 config (Hydra, verl's own
ppo_trainer.yaml) whose actor config verl can build, with the paper's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "verl"


def _args(script_env: dict) -> list[str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(script_env)
    r = subprocess.run(
        ["bash", "-c", f"source {EXAMPLES}/common.sh && steer_args"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln]


def _compose(args: list[str]):
    import verl
    from hydra import compose, initialize_config_dir

    cfg_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=args)


@pytest.mark.parametrize("loss_mode", ["steer", "vanilla"])
def test_paper_recipe_composes_and_the_actor_config_builds(loss_mode, tmp_path):
    from verl.utils.config import omega_conf_to_dataclass

    args = _args({"MODEL": "Qwen/Qwen2.5-Math-7B", "LOSS_MODE": loss_mode, "DATA_DIR": str(tmp_path)})
    cfg = _compose(args)
    a = cfg.actor_rollout_ref.actor
    assert (a.clip_ratio_low, a.clip_ratio_high, a.clip_ratio_c) == (0.2, 0.28, 10)
    assert a.optim.lr == 1e-6 and a.ppo_mini_batch_size == 32 and a.calculate_entropy
    assert cfg.data.train_batch_size == 512 and cfg.actor_rollout_ref.rollout.n == 8
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (1024, 3072)
    assert cfg.trainer.save_freq == 10
    assert cfg.actor_rollout_ref.rollout.val_kwargs.top_p == 0.7
    assert not a.use_kl_loss and a.entropy_coeff == 0
    actor = omega_conf_to_dataclass(a)
    assert actor.policy_loss.loss_mode == loss_mode
    if loss_mode == "steer":
        from steer.integrations.verl import SteerPolicyLossConfig, method_for

        assert isinstance(actor.policy_loss, SteerPolicyLossConfig)
        assert actor.policy_loss.lambda_min == 0.7 and actor.policy_loss.scope == "minibatch"
        m = method_for("steer", actor)
        assert (m.config.eps_low, m.config.eps_high, m.config.clip_c) == (0.2, 0.28, 10.0)
        assert m.config.lambda_min == 0.7


def test_extreme_setting_clips():
    args = _args({"MODEL": "Qwen/Qwen2.5-Math-7B", "CLIP_LOW": "0.99", "CLIP_HIGH": "5"})
    cfg = _compose(args)
    assert (cfg.actor_rollout_ref.actor.clip_ratio_low, cfg.actor_rollout_ref.actor.clip_ratio_high) == (
        0.99,
        5,
    )


def test_every_script_parses():
    for f in sorted(EXAMPLES.glob("*.sh")):
        r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, (f, r.stderr)
