"""The ``verl.plugins`` entry point (verl >= 0.9) and the ``VERL_USE_EXTERNAL_MODULES`` module.

``import verl`` imports this module in every process (driver, workers, rollout actors); it
installs :data:`steer.integrations.verl.bridge.BRIDGE`, which registers steer's policy losses and
puts the entropy / scope / metric / config-check patches in place (``BRIDGE.uninstall()`` takes
them all out again). verl swallows a plugin's import errors
at DEBUG level, so this module says itself what happened: one INFO line when it loaded, a WARNING
with the reason when it failed. A failed load cannot turn into a silent GRPO run either: selecting
``policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig`` (docs/verl.md) imports the
losses again when verl builds the actor config, and raises the real error there, before training.

For verl releases without entry points: ``VERL_USE_EXTERNAL_MODULES=steer.integrations.verl.plugin``.
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger("steer.integrations.verl")


def load() -> None:
    """Install steer into verl in this process (idempotent); raises on failure."""
    from steer.integrations.verl.bridge import BRIDGE

    BRIDGE.install()


def _register_failure(error: BaseException) -> None:
    """Register loss modes that raise ``error``'s story at the first step, so that a run with a
    broken install stops with the reason instead of verl's "Unsupported loss mode"."""
    from verl.trainer.ppo import core_algos

    from steer.integrations.verl.names import LOSS_MODE_NAMES

    reason = f"{type(error).__name__}: {error}"

    def make(mode: str):
        def failed_loss(*_args, **_kwargs):
            raise RuntimeError(
                f"loss_mode={mode!r}: steer's verl plugin failed to load in this process ({reason}); "
                "fix the installation (pip install 'steer[verl]')"
            )

        failed_loss._steer_failed = True  # type: ignore[attr-defined]
        return failed_loss

    for mode in LOSS_MODE_NAMES:
        if mode not in core_algos.POLICY_LOSS_REGISTRY:
            core_algos.register_policy_loss(mode)(make(mode))


try:
    load()
except Exception as _e:  # verl would hide it at DEBUG level
    if not _log.handlers:
        logging.basicConfig()
    _log.warning(
        "steer's verl plugin failed to load in pid %d: %s: %s. A run with a steer loss_mode stops at its "
        "first step with this reason (selecting policy_loss._target_="
        "steer.integrations.verl.SteerPolicyLossConfig shows the full error when the actor is built).",
        os.getpid(),
        type(_e).__name__,
        _e,
    )
    try:
        _register_failure(_e)
    except Exception:  # verl itself is broken: nothing can be registered
        pass
    raise
else:
    from steer.integrations.verl.losses import LOSS_MODES as _MODES

    _log.info("steer verl plugin loaded in pid %d: loss modes %s", os.getpid(), ", ".join(_MODES))
