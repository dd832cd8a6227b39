"""The plugin loads through verl's own mechanisms in a fresh interpreter, and verl's own CPU tests
of its losses and core algorithms still pass with it installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from steer.integrations.verl import LOSS_MODES

PROBE = (
    "import verl\n"
    "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY as R\n"
    "print('MODES', ' '.join(sorted(k for k in R if getattr(R[k], '_steer_loss_mode', None) == k)))\n"
)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300)


def _modes(out: str) -> set[str]:
    line = next(ln for ln in out.splitlines() if ln.startswith("MODES"))
    return set(line.split()[1:])


def test_fresh_import_verl_registers_every_loss_mode_through_the_entry_point():
    r = _python(PROBE)
    assert r.returncode == 0, r.stderr
    assert _modes(r.stdout) == set(LOSS_MODES)
    assert "steer verl plugin loaded" in r.stderr  # the INFO line verl itself would not show


def test_external_modules_route_for_older_verl():
    # entry points off: nothing registered; VERL_USE_EXTERNAL_MODULES brings the plugin back
    r = _python(PROBE, VERL_USE_EXTERNAL_PLUGINS="none")
    assert r.returncode == 0, r.stderr
    assert _modes(r.stdout) == set()
    r = _python(
        PROBE, VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="steer.integrations.verl.plugin"
    )
    assert r.returncode == 0, r.stderr
    assert _modes(r.stdout) == set(LOSS_MODES)


def test_a_failing_load_warns_instead_of_staying_silent():
    code = (
        "import sys, types\n"
        "sys.modules['steer.core.registry'] = None  # make the plugin's import fail\n"
        "import verl\n"
        "from verl.trainer.ppo.core_algos import get_policy_loss_fn\n"
        "try:\n"
        "    get_policy_loss_fn('steer')()\n"
        "except RuntimeError as e:\n"
        "    print('RAISED', e)\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert "steer's verl plugin failed to load" in r.stderr and "WARNING" in r.stderr
    # the first step stops with the reason, not verl's "Unsupported loss mode" nor a GRPO run
    assert "RAISED loss_mode='steer': steer's verl plugin failed to load" in r.stdout
    assert "steer.core.registry" in r.stdout


def test_loss_mode_names_match():
    from steer.integrations.verl.names import LOSS_MODE_NAMES

    assert tuple(LOSS_MODES) == LOSS_MODE_NAMES


def test_the_config_class_fails_loudly_when_the_plugin_cannot_load():
    code = (
        "import sys\n"
        "import verl\n"
        "sys.modules['steer.core.registry'] = None\n"
        "for m in [k for k in sys.modules if k.startswith('steer.integrations.verl')]: del sys.modules[m]\n"
        "from omegaconf import OmegaConf\n"
        "from verl.utils.config import omega_conf_to_dataclass\n"
        "omega_conf_to_dataclass(OmegaConf.create({'_target_': 'steer.integrations.verl.SteerPolicyLossConfig', 'loss_mode': 'steer'}))\n"
    )
    r = _python(code, VERL_USE_EXTERNAL_PLUGINS="none")
    assert r.returncode != 0
    assert "steer.core.registry" in r.stderr


def _verl_tests_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("verl")
    site = Path(spec.origin).parent.parent
    return site / "tests"


def test_verls_own_cpu_tests_of_losses_and_core_algorithms_pass_with_the_plugin():
    d = _verl_tests_dir()
    files = [
        d / "trainer/ppo/test_core_algos_on_cpu.py",
        d / "trainer/ppo/test_loss_aggregation_on_cpu.py",
        d / "trainer/ppo/test_dynamic_policy_losses_on_cpu.py",
        d / "trainer/ppo/test_value_loss_normalization_on_cpu.py",
    ]
    for f in files:
        assert f.exists(), f"verl's test file {f} is missing from the wheel"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(d),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(d),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
