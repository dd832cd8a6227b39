"""``SteerPolicyLossConfig``: verl's ``PolicyLossConfig`` plus the parameters of steer's methods.

verl's own ``PolicyLossConfig`` is a strict dataclass (``+...policy_loss.lambda_min=0.8`` fails
with ``TypeError: ... unexpected keyword argument``), so the plugin ships a subclass, selected with

    actor_rollout_ref.actor.policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig
    actor_rollout_ref.actor.policy_loss.loss_mode=steer
    +actor_rollout_ref.actor.policy_loss.lambda_min=0.8

verl builds it inside each worker when the actor is initialised (before the first step). Building
it validates every value through the core (``steer.core.registry.build_method``): an unknown
parameter or a bad value raises ``ValueError`` naming it, so a wrong key fails before training.

Every steer field defaults to None, meaning "the method's published default" (docs/methods.md;
docs/verl.md lists the STEER ones). The clip range and the dual clip come from verl's own actor
keys (``clip_ratio_low``, ``clip_ratio_high``, ``clip_ratio_c``) unless ``use_verl_clip`` is False,
so that switching ``loss_mode`` changes only the token weighting of a recipe; the aggregation mode
is always verl's ``loss_agg_mode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verl.workers.config.actor import PolicyLossConfig

__all__ = ["STEER_FIELDS", "SteerPolicyLossConfig"]

#: the explicit fields that map 1:1 to a core method parameter of the same name
STEER_FIELDS = (
    "lambda_min",
    "estimator",
    "mapping",
    "lambda_max",
    "quantile",
    "scope",
    "max_floor",
    "omega_lr",
)


@dataclass
class SteerPolicyLossConfig(PolicyLossConfig):
    """verl's policy-loss config with steer's method parameters (all optional).

    - ``steer_method``: the core method to run; "" (default) = the one the ``loss_mode`` names
      (see ``steer.integrations.verl.LOSS_MODES``).
    - ``lambda_min``, ``estimator``, ``mapping``, ``lambda_max``, ``quantile``, ``scope``,
      ``max_floor``, ``omega_lr``: STEER's parameters (``steer.core.steer.SteerParams``); None =
      the method's default (``steer``: 0.7, 'paper', 'exp', 1.2, 0.8, 'minibatch', 0, None).
    - ``method_params``: any other parameter of the core method by its core name (``rho`` for
      forking tokens, ``target`` / ``action`` / ``fraction`` for quadrant interventions, ``alpha`` /
      ``kappa`` for the entropy advantage, ``seed``, ...).
    - ``use_verl_clip``: take ``eps_low`` / ``eps_high`` / ``clip_c`` from verl's
      ``clip_ratio_low`` / ``clip_ratio_high`` / ``clip_ratio_c`` (True, default) or from the
      method's published defaults (False).
    """

    steer_method: str = ""
    lambda_min: float | None = None
    estimator: str | None = None
    mapping: str | None = None
    lambda_max: float | None = None
    quantile: float | None = None
    scope: str | None = None
    max_floor: float | None = None
    omega_lr: float | None = None
    method_params: dict = field(default_factory=dict)
    use_verl_clip: bool = True

    def __post_init__(self) -> None:
        # Importing the loss module registers steer's losses in verl's registry in this process
        # (also when the entry point was disabled) and puts the entropy hook in place.
        from steer.integrations.verl import losses
        from steer.integrations.verl.bridge import ensure_installed

        ensure_installed()
        if self.loss_mode in losses.LOSS_MODES:
            losses.validate_policy_loss_config(self)

    def steer_overrides(self) -> dict[str, Any]:
        """The core-method parameters set here (explicit fields, then ``method_params``)."""
        out: dict[str, Any] = {}
        for name in STEER_FIELDS:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        params = dict(self.method_params or {})
        both = sorted(set(out) & set(params))
        if both:
            raise ValueError(
                f"policy_loss: {both} given both as a field and in method_params; set each parameter once"
            )
        out.update(params)
        return out
