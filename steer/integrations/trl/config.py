"""``SteerGRPOConfig``: TRL's ``GRPOConfig`` plus the fields that pick a method of the registry.

Everything TRL already has keeps its TRL meaning and is not duplicated: the clip range is TRL's
``epsilon`` / ``epsilon_high``, the aggregation is TRL's ``loss_type``, the KL penalty is TRL's
``beta``, the entropy bonus is TRL's ``entropy_coef`` / ``use_adaptive_entropy``. The method's own
values for those are derived from TRL's (:func:`method_overrides`), and a method override that would
contradict them is refused. Settings under which the method's token weights would not reach the
update are refused in ``__post_init__`` with a message that names the setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from steer.core.registry import build_method, list_methods, method_config_class, row_requirements

__all__ = [
    "LOSS_TYPE_AGG_MODE",
    "SUPPORTED_LOSS_TYPES",
    "SteerGRPOConfig",
    "method_overrides",
    "steer_method_help",
    "trl_methods",
]

# TRL loss_type -> the core's name for the same aggregation. All four share TRL's clipped objective
# -min(r A, clip(r) A), which is the objective the core's methods weight.
LOSS_TYPE_AGG_MODE = {
    "dapo": "token-mean",  # over the global accumulated batch (TRL's num_items_in_batch)
    "bnpo": "token-mean",  # over the local micro-batch
    "grpo": "seq-mean-token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",  # divided by max_completion_length
}
SUPPORTED_LOSS_TYPES = tuple(LOSS_TYPE_AGG_MODE)

# Method fields that TRL's own settings decide (set them there, not in steer_method_kwargs).
_TRL_OWNED = {
    "eps_low": "epsilon",
    "eps_high": "epsilon_high",
    "loss_scale_factor": "max_completion_length (loss_type='dr_grpo')",
    "entropy_coef": "entropy_coef / use_adaptive_entropy",
    "kl_coef": "beta",
    "kl_type": "beta (TRL's KL is k3)",
}
# Registry methods that are only GRPO plus a regulariser TRL implements itself.
_TRL_NATIVE = {
    "entropy_bonus": "set TRL's entropy_coef (e.g. 0.001) with steer_method='grpo'",
    "adaptive_entropy": "set TRL's use_adaptive_entropy=True (with entropy_target, ...) and steer_method='grpo'",
    "kl_penalty": "set TRL's beta (e.g. 0.001) with steer_method='grpo'",
}


#: what SteerGRPOTrainer cannot give a method: each token's cause of the entropy change (a model
#: pass before the loss) and the ``exact`` estimator's sums (TRL's fused head returns neither)
_UNAVAILABLE = frozenset({"cause", "sums"})


def trl_methods() -> list[str]:
    """The registered methods ``steer_method`` accepts with their defaults, in method-table order
    (derived from the table: every method but TRL's own regularisers and those that read what TRL
    does not compute)."""
    return [n for n in list_methods() if n not in _TRL_NATIVE and not (row_requirements(n) & _UNAVAILABLE)]


def steer_method_help() -> str:
    """The ``--steer_method`` help text, listing :func:`trl_methods` as they are when it is read."""
    names = ", ".join(f"'{n}'" for n in trl_methods())
    return (
        "Name of the method of steer's registry whose token weights (or advantages) shape the loss "
        f"(default 'steer'; 'grpo' is TRL's loss exactly): {names}. See docs/methods.md."
    )


class _MethodHelp(dict):
    """Field metadata whose ``help`` is :func:`steer_method_help` at the time it is read, so a
    method defined later (``define_method``) is listed too."""

    def __init__(self) -> None:
        super().__init__(help="")

    def __getitem__(self, key):
        return steer_method_help() if key == "help" else super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        return {k: self[k] for k in self}.items()

    def values(self):
        return {k: self[k] for k in self}.values()

    def copy(self) -> dict:
        return {k: self[k] for k in self}


def _parse_kwargs(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"steer_method_kwargs must be a JSON object, got {value!r}: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"steer_method_kwargs must be a dict (or a JSON object string), got {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ValueError(f"steer_method_kwargs keys must be strings, got {bad!r}")
    return dict(value)


def method_overrides(args: GRPOConfig, name: str, kwargs: dict) -> dict:
    """The ``build_method`` overrides for method ``name`` under the TRL settings ``args``.

    TRL decides the clip range (``epsilon``, ``epsilon_high``), the aggregation (``loss_type``;
    for ``dr_grpo`` the constant is ``max_completion_length``) and, for methods with their own
    advantage estimator, whether advantages are divided by the group std (``scale_rewards``).
    ``kwargs`` (the user's ``steer_method_kwargs``) may set anything else; setting one of the
    TRL-owned fields raises ValueError naming the TRL setting to use instead.
    """
    cls = method_config_class(name)
    owned = sorted(k for k in kwargs if k in _TRL_OWNED)
    if owned:
        hints = ", ".join(f"{k} -> TRL's {_TRL_OWNED[k]}" for k in owned)
        raise ValueError(f"steer_method_kwargs may not set {owned}: TRL's own settings decide them ({hints})")
    over = dict(kwargs)
    over["eps_low"] = float(args.epsilon)
    over["eps_high"] = float(args.epsilon if args.epsilon_high is None else args.epsilon_high)
    mode = LOSS_TYPE_AGG_MODE.get(args.loss_type)
    if "loss_agg_mode" in over and over["loss_agg_mode"] != mode:
        raise ValueError(
            f"steer_method_kwargs loss_agg_mode={over['loss_agg_mode']!r} contradicts TRL's "
            f"loss_type={args.loss_type!r} (which aggregates {mode!r}); choose the aggregation with loss_type"
        )
    default_mode = next(f.default for f in cls.__dataclass_fields__.values() if f.name == "loss_agg_mode")
    if default_mode != "token-mean" and default_mode != mode:
        want = [lt for lt, m in LOSS_TYPE_AGG_MODE.items() if m == default_mode]
        raise ValueError(
            f"method {name!r} aggregates {default_mode!r} but TRL's loss_type={args.loss_type!r} aggregates "
            f"{mode!r}; set loss_type={want[0]!r}" + (f" (or one of {want})" if len(want) > 1 else "")
        )
    over["loss_agg_mode"] = mode
    if mode == "seq-mean-token-sum-norm":
        over["loss_scale_factor"] = float(args.max_completion_length)
    by_std = args.scale_rewards != "none"
    if "norm_adv_by_std" in over and bool(over["norm_adv_by_std"]) != by_std:
        raise ValueError(
            f"steer_method_kwargs norm_adv_by_std={over['norm_adv_by_std']!r} contradicts TRL's "
            f"scale_rewards={args.scale_rewards!r}; set scale_rewards instead ('group' divides by the group std, "
            "'none' does not)"
        )
    default_std = next(f.default for f in cls.__dataclass_fields__.values() if f.name == "norm_adv_by_std")
    if default_std is False and by_std and "norm_adv_by_std" not in over:
        raise ValueError(
            f"method {name!r} does not divide advantages by the group std, but TRL's "
            f"scale_rewards={args.scale_rewards!r} does; set scale_rewards='none'"
        )
    over["norm_adv_by_std"] = by_std
    over.setdefault("seed", int(args.seed))
    return over


@dataclass
class SteerGRPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig`` plus the method of steer's registry that shapes the loss.

    Use it with :class:`steer.integrations.trl.SteerGRPOTrainer`. The defaults train STEER
    (``steer_method='steer'``: the paper's Eq. 10 weights with lambda_min 0.7, max|Omega| over the
    optimiser step, dual clip c = 10).
    ``steer_method='grpo'`` reproduces TRL's own loss exactly.
    """

    steer_method: str = field(default="steer", metadata=_MethodHelp())
    steer_method_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Overrides of the method's parameters (a dict, or a JSON object on the command line), e.g. "
            '\'{"lambda_min": 0.8}\' for steer or \'{"alpha1": 0.5, "alpha2": 0.5}\' for gtpo. The clip range, '
            "aggregation, KL and entropy bonus are TRL's settings (epsilon, epsilon_high, loss_type, beta, "
            "entropy_coef) and may not be set here."
        },
    )
    steer_log_metrics: bool = field(
        default=True,
        metadata={
            "help": "Log steer's metrics (token-weight mean/min, clip fractions low/high/dual, quadrant counts, "
            "shares and summed Omega) under the 'steer/' prefix in TRL's logs."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.steer_method_kwargs = _parse_kwargs(self.steer_method_kwargs)
        name = self.steer_method
        if not isinstance(name, str) or name not in list_methods():
            raise ValueError(f"steer_method must be one of {list_methods()}, got {name!r}")
        if name in _TRL_NATIVE:
            raise ValueError(
                f"steer_method={name!r} is a regulariser TRL implements itself: {_TRL_NATIVE[name]}"
            )
        if self.loss_type not in SUPPORTED_LOSS_TYPES:
            raise ValueError(
                f"loss_type={self.loss_type!r} is not supported by SteerGRPOTrainer: the method's token weights "
                f"apply to the clipped objective -min(r A, clip(r) A), which TRL uses for loss_type in "
                f"{list(SUPPORTED_LOSS_TYPES)}; {self.loss_type!r} optimises a different objective"
            )
        if self.importance_sampling_level != "token":
            raise ValueError(
                f"importance_sampling_level={self.importance_sampling_level!r} (GSPO) is not supported: the "
                "methods weight tokens with token-level ratios; use importance_sampling_level='token'"
            )
        if self.delta is not None:
            raise ValueError(
                f"delta={self.delta!r} (TRL's two-sided clip of the ratio) is not supported: the method computes "
                "the clipped objective itself. For a dual clip (loss capped at -c A for A < 0) set "
                'steer_method_kwargs={"clip_c": c} (steer and steer_* default to c = 10)'
            )
        if self.epsilon_high is not None and self.epsilon_high < 0:
            raise ValueError(f"epsilon_high must be >= 0, got {self.epsilon_high!r}")
        over = method_overrides(self, name, self.steer_method_kwargs)
        method = build_method(name, **over)  # validates every value (ValueError naming the field)
        c = method.config
        if "cause" in method.requires:
            raise ValueError(
                f"steer_method={name!r} needs each token's cause of the mini-batch's entropy change (a "
                "backward of the entropy and a forward-mode pass through the model before the loss), which "
                "SteerGRPOTrainer does not compute; it runs in steer's own trainer (`steer train`)"
            )
        if getattr(c, "estimator", None) == "exact":
            raise ValueError(
                "estimator='exact' needs sum_v pi^2 and sum_v pi^2 log pi per token, which TRL's fused LM head "
                "does not compute (it returns log-probs and entropy only); use estimator='paper' or 'reference'"
            )
        scope = getattr(c, "scope", "microbatch")
        if scope == "global":
            raise ValueError(
                "scope='global' is not supported: the policy changes between the optimiser steps of a "
                "generation batch, so no max|Omega| over all of them exists before the first update; use "
                "'minibatch' (Eq. 10: the optimiser step over every rank) or 'microbatch' (the released code)"
            )
        if scope == "minibatch" and self.steps_per_generation % self.gradient_accumulation_steps != 0:
            raise ValueError(
                f"scope='minibatch' takes max|Omega| over every micro-batch of an optimiser step before "
                f"the first backward, so the step must lie inside one generation batch: "
                f"steps_per_generation ({self.steps_per_generation}) must be a multiple of "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps}); or use scope='microbatch'"
            )
        if c.advantage != "grpo":
            if self.scale_rewards == "batch":
                raise ValueError(
                    f"scale_rewards='batch' does not apply to steer_method={name!r}: its advantage estimator "
                    f"({c.advantage!r}) normalises within each prompt group; use scale_rewards='group' or 'none'"
                )
            if self.multi_objective_aggregation != "sum_then_normalize":
                raise ValueError(
                    f"multi_objective_aggregation={self.multi_objective_aggregation!r} does not apply to "
                    f"steer_method={name!r}: its advantage estimator receives the weighted sum of the reward "
                    "functions; use multi_objective_aggregation='sum_then_normalize'"
                )
