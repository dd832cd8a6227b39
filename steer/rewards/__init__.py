"""Math rewards: math-verify, DAPO and Qwen-style scorers run in a process pool with a hard
per-item wall-clock limit (spec evaluation.md §1-§2).

Trainer-facing API: :func:`score_responses` (batch), :func:`compute_score` (verl signature),
:class:`VerifierPool` / :func:`score_batch` / :class:`Verdict`, the registry functions
:func:`list_scorers`, :func:`get_scorer`, :func:`default_scorer`; :func:`is_verify_error` /
:func:`verify_error_frac` (a timeout or an error scores as a wrong answer everywhere, and is
counted). Importing this package does
not import math_verify (the workers do). Answer text is never evaluated as code (security model
in docs/evaluation.md).
"""

from steer.rewards.api import compute_score, compute_score_float, score_responses
from steer.rewards.pool import (
    ScoreItem,
    Verdict,
    VerifierPool,
    get_default_pool,
    is_verify_error,
    score_batch,
    verify_error_frac,
)
from steer.rewards.registry import default_scorer, get_scorer, list_scorers, register_scorer

__all__ = [
    "ScoreItem",
    "Verdict",
    "VerifierPool",
    "compute_score",
    "compute_score_float",
    "default_scorer",
    "get_default_pool",
    "get_scorer",
    "is_verify_error",
    "list_scorers",
    "register_scorer",
    "score_batch",
    "score_responses",
    "verify_error_frac",
]
