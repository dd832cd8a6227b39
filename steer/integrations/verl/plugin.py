"""The ``verl.plugins`` entry point (verl >= 0.9) and the ``VERL_USE_EXTERNAL_MODULES`` module.

``import verl`` imports this module in every process (driver, workers, rollout actors); it
registers steer's policy losses and installs the entropy / scope / metric hooks
(:func:`steer.integrations.verl.losses.ensure_installed`). verl swallows a plugin's import errors
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
    from steer.integrations.verl import losses

    losses.ensure_installed()


try:
    load()
except Exception as _e:  # verl would hide it at DEBUG level
    if not _log.handlers:
        logging.basicConfig()
    _log.warning(
        "steer's verl plugin failed to load in pid %d: %s: %s. steer's loss modes are not registered "
        "in this process; a run with loss_mode=steer will fail (set policy_loss._target_ to "
        "steer.integrations.verl.SteerPolicyLossConfig to get the full error before training).",
        os.getpid(),
        type(_e).__name__,
        _e,
    )
    raise
else:
    from steer.integrations.verl.losses import LOSS_MODES as _MODES

    _log.info("steer verl plugin loaded in pid %d: loss modes %s", os.getpid(), ", ".join(_MODES))
