"""steer's verl integration: STEER and the loss-level entropy interventions as verl policy losses.

Install ``steer[verl]``; the ``verl.plugins`` entry point (:mod:`steer.integrations.verl.plugin`)
registers the loss modes in every verl process. Switch a GRPO recipe to STEER with

    actor_rollout_ref.actor.policy_loss.loss_mode=steer actor_rollout_ref.actor.calculate_entropy=True

and set STEER's parameters through :class:`SteerPolicyLossConfig`
(``actor_rollout_ref.actor.policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig``).
docs/verl.md has the details. The names below need verl installed; they are imported on first
use, so that importing this package itself never fails (the plugin module reports failures).
"""

from __future__ import annotations

__all__ = ["BRIDGE", "LOSS_MODES", "SteerPolicyLossConfig", "VerlBridge", "ensure_installed", "method_for"]


def __getattr__(name: str):
    if name == "SteerPolicyLossConfig":
        from steer.integrations.verl.config import SteerPolicyLossConfig

        return SteerPolicyLossConfig
    if name in ("BRIDGE", "VerlBridge", "ensure_installed"):
        from steer.integrations.verl import bridge

        return getattr(bridge, name)
    if name in ("LOSS_MODES", "method_for"):
        from steer.integrations.verl import losses

        return getattr(losses, name)
    raise AttributeError(f"module 'steer.integrations.verl' has no attribute {name!r}")
