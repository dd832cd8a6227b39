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

import re

import pytest
from e2e_assets import LAMBDA_MIN, build_data, build_policy, main_ppo_overrides, metric, run_main_ppo


@pytest.mark.timeout(1000)
def test_main_ppo_grpo_run_with_loss_mode_steer_on_cpu(tmp_path):
    build_policy(tmp_path / "policy")
    build_data(tmp_path / "data")
    out, steps, elapsed = run_main_ppo(main_ppo_overrides(tmp_path), tmp_path / "run.log", timeout=900)
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
        w_min = metric(line, "actor/steer/weight_min")
        assert abs(w_min - LAMBDA_MIN) < 1e-6  # the mini-batch's largest |Omega| gets lambda_min
        assert 0 < metric(line, "actor/steer/weight_mean") <= 1
        assert metric(line, "actor/steer/tokens") > 0
        shares = [metric(line, f"actor/steer/quadrant/{q}/share") for q in ("I", "II", "III", "IV")]
        assert abs(sum(shares) - 1) < 1e-6
        assert metric(line, "actor/steer/omega_max") > 0
        # verl's own names, and a real update
        for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower", "actor/pg_loss"):
            metric(line, key)
        assert metric(line, "actor/grad_norm") > 0
    print(f"main_ppo 2-step steer run: {elapsed:.0f} s")
