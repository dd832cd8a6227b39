"""The forward-mode (JVP) primitives now live in :mod:`steer.train.jvp` (the trainer's cause pass
needs them, and training does not import analysis). This name re-exports them for the one caller
left, ``steer.train.trainer``; new code imports :mod:`steer.train.jvp`."""

from steer.train.jvp import (
    entropy_gradient,
    jvp_response_stats,
    linearised_entropy_change,
    per_token_cause,
    require_eager_attention,
    trainable_parameters,
)

__all__ = [
    "entropy_gradient",
    "jvp_response_stats",
    "linearised_entropy_change",
    "per_token_cause",
    "require_eager_attention",
    "trainable_parameters",
]
