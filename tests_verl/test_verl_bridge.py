"""The bridge (``steer.integrations.verl.bridge.BRIDGE``) installs every patch of verl and takes
each one out again: after ``uninstall()`` every patched attribute is verl's own object again
(``is``), the registry holds exactly its old entries and no import hook is left; installing twice
is installing once. Checked on verl's real modules, in this process (where the entry point installed
it) and in fresh interpreters with verl's plugin loading off, where verl's own objects are recorded
before steer is imported."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import verl  # noqa: F401  (loads steer's plugin through verl's entry point, as in every verl process)

from steer.integrations.verl import LOSS_MODES
from steer.integrations.verl.bridge import BRIDGE, VerlBridge

#: every verl attribute steer replaces (written out here, not read from the bridge)
TARGETS = (
    ("verl.workers.utils.losses", "ppo_loss"),
    ("verl.workers.engine.base", "BaseEngine.train_batch"),
    ("verl.workers.engine_workers", "ppo_loss"),
    ("verl.workers.engine_workers", "TrainingWorker.train_mini_batch"),
    ("verl.workers.engine_workers", "ActorRolloutRefWorker.init_model"),
)

# shared by the in-process test and the fresh interpreters
HELPERS = f"""
import importlib, sys

TARGETS = {TARGETS!r}


def owner_attr(module, target):
    obj = importlib.import_module(module)
    *path, attr = target.split(".")
    for part in path:
        obj = getattr(obj, part)
    return obj, attr


def get(module, target):
    owner, attr = owner_attr(module, target)
    return vars(owner)[attr]  # the owner's own entry, not an inherited one


def is_steers(module, target, value):
    from steer.integrations.verl import losses

    if target == "ppo_loss":
        return value is losses.ppo_loss
    # functools.wraps copies verl's names onto a wrap; its code is steer's
    code = getattr(value, "__code__", None)
    return code is not None and code.co_filename.endswith("steer/integrations/verl/losses.py")


def hooks():
    from steer.integrations.verl.bridge import _PostImportFinder

    return [f for f in sys.meta_path if isinstance(f, _PostImportFinder)]
"""

_ns: dict = {}
exec(HELPERS, _ns)
get, is_steers, hooks = _ns["get"], _ns["is_steers"], _ns["hooks"]


def _registry():
    from verl.trainer.ppo import core_algos

    return core_algos.POLICY_LOSS_REGISTRY


def test_the_bridge_lists_exactly_the_patched_attributes():
    assert BRIDGE.installed
    assert {(p.module, p.target) for p in BRIDGE.patches} == set(TARGETS)
    assert set(BRIDGE.registered) == set(LOSS_MODES)


def test_uninstall_restores_verls_functions_and_install_twice_is_once_in_this_process():
    for module in dict.fromkeys(m for m, _ in TARGETS):
        importlib.import_module(module)
    assert BRIDGE.installed  # the entry point installed it when verl was imported
    for m, t in TARGETS:
        assert is_steers(m, t, get(m, t)), (m, t)
    wrapped = {(m, t): get(m, t) for m, t in TARGETS}
    try:
        BRIDGE.uninstall()
        assert not BRIDGE.installed and BRIDGE.applied == () and hooks() == []
        own = {(m, t): get(m, t) for m, t in TARGETS}
        import verl.workers.utils.losses as verl_losses

        assert own[TARGETS[0]].__module__ == "verl.workers.utils.losses"
        assert own[TARGETS[2]] is own[TARGETS[0]] is verl_losses.ppo_loss
        for key in TARGETS[1:2] + TARGETS[3:]:
            assert not hasattr(own[key], "_steer_wrapped") and wrapped[key].__wrapped__ is own[key]
        assert not set(LOSS_MODES) & set(_registry())
        before = dict(_registry())

        BRIDGE.install()
        first = {(m, t): get(m, t) for m, t in TARGETS}
        reg_first = {mode: _registry()[mode] for mode in LOSS_MODES}
        for m, t in TARGETS:
            assert is_steers(m, t, first[(m, t)]) and first[(m, t)] is not own[(m, t)]
            assert BRIDGE.original(m, t) is own[(m, t)]
        BRIDGE.install()  # twice = once: the same objects, nothing wrapped twice
        for m, t in TARGETS:
            assert get(m, t) is first[(m, t)]
            if t != "ppo_loss":
                assert first[(m, t)].__wrapped__ is own[(m, t)]
        assert all(_registry()[mode] is fn for mode, fn in reg_first.items())
        assert len(BRIDGE.applied) == len(TARGETS)

        BRIDGE.uninstall()
        BRIDGE.uninstall()  # a no-op
        for m, t in TARGETS:
            assert get(m, t) is own[(m, t)], (m, t)
        assert _registry() == before and all(_registry()[k] is v for k, v in before.items())
    finally:
        BRIDGE.install()
    assert BRIDGE.installed
    for m, t in TARGETS:
        assert is_steers(m, t, get(m, t))


def test_a_name_verl_already_has_is_refused_and_nothing_changes():
    before = dict(_registry())

    def vanilla(*_a, **_k):
        raise AssertionError("never called")

    other = VerlBridge(patches=lambda: (), registrations=lambda: {"steer_new": vanilla, "vanilla": vanilla})
    with pytest.raises(RuntimeError, match="already has a policy loss named 'vanilla'"):
        other.install()
    assert not other.installed
    assert _registry() == before and all(_registry()[k] is v for k, v in before.items())


def _fresh(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, VERL_USE_EXTERNAL_PLUGINS="none")  # verl's own objects until steer installs
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    script = HELPERS + textwrap.dedent(code) + "\nprint('OK')\n"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )


def test_uninstall_restores_the_objects_verl_had_before_steer_was_imported():
    r = _fresh(
        """
        from verl.trainer.ppo import core_algos
        for module in dict.fromkeys(m for m, _ in TARGETS):
            importlib.import_module(module)
        assert not any(m.startswith("steer") for m in sys.modules)
        own = {(m, t): get(m, t) for m, t in TARGETS}
        reg = dict(core_algos.POLICY_LOSS_REGISTRY)

        from steer.integrations.verl.bridge import BRIDGE
        BRIDGE.install()
        BRIDGE.install()
        assert hooks() == []  # every module was imported: nothing left to wait for
        for m, t in TARGETS:
            assert is_steers(m, t, get(m, t)) and BRIDGE.original(m, t) is own[(m, t)], (m, t)
            if t != "ppo_loss":
                assert get(m, t).__wrapped__ is own[(m, t)]
        BRIDGE.uninstall()
        for m, t in TARGETS:
            assert get(m, t) is own[(m, t)], (m, t)
        assert core_algos.POLICY_LOSS_REGISTRY == reg
        assert all(core_algos.POLICY_LOSS_REGISTRY[k] is v for k, v in reg.items())
        """
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout[-2000:] + r.stderr[-3000:]


def test_the_import_hook_patches_modules_imported_later_and_goes_with_uninstall():
    r = _fresh(
        """
        import verl
        from steer.integrations.verl.bridge import BRIDGE
        BRIDGE.install()
        # installing imports no engine code: the hook waits for it
        assert "verl.workers.engine.base" not in sys.modules
        assert "verl.workers.engine_workers" not in sys.modules
        assert len(hooks()) == 1
        BRIDGE.uninstall()
        assert hooks() == []
        base = importlib.import_module("verl.workers.engine.base")
        assert not hasattr(base.BaseEngine.train_batch, "_steer_wrapped")  # no hook left behind
        own_train_batch = get("verl.workers.engine.base", "BaseEngine.train_batch")

        BRIDGE.install()
        BRIDGE.install()
        assert len(hooks()) == 1
        assert "verl.workers.engine_workers" not in sys.modules
        workers = importlib.import_module("verl.workers.engine_workers")  # patched by the hook
        patched = {(m, t): get(m, t) for m, t in TARGETS}
        for m, t in TARGETS:
            assert is_steers(m, t, patched[(m, t)]), (m, t)
        verls_ppo_loss = BRIDGE.original("verl.workers.utils.losses", "ppo_loss")
        assert verls_ppo_loss.__module__ == "verl.workers.utils.losses"
        assert BRIDGE.original("verl.workers.engine_workers", "ppo_loss") is verls_ppo_loss
        BRIDGE.uninstall()
        assert hooks() == []
        import verl.workers.utils.losses as L
        assert L.ppo_loss is verls_ppo_loss and workers.ppo_loss is verls_ppo_loss
        assert get("verl.workers.engine.base", "BaseEngine.train_batch") is own_train_batch
        for m, t in TARGETS[3:]:
            assert get(m, t) is patched[(m, t)].__wrapped__ and not hasattr(get(m, t), "_steer_wrapped")
        """
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout[-2000:] + r.stderr[-3000:]
