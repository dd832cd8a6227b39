"""steer's verl integration: STEER and the loss-level entropy interventions as verl policy losses.

Install ``steer[verl]``; the ``verl.plugins`` entry point (:mod:`steer.integrations.verl.plugin`)
registers the loss modes in every verl process. Switch a GRPO recipe to STEER with

    actor_rollout_ref.actor.policy_loss.loss_mode=steer actor_rollout_ref.actor.calculate_entropy=True

and set STEER's parameters through :class:`SteerPolicyLossConfig`
(``actor_rollout_ref.actor.policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig``).
docs/verl.md has the details. Importing this package needs verl installed.
"""

from steer.integrations.verl.config import SteerPolicyLossConfig
from steer.integrations.verl.losses import LOSS_MODES, ensure_installed, method_for

__all__ = ["LOSS_MODES", "SteerPolicyLossConfig", "ensure_installed", "method_for"]
