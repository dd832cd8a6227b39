"""Reward entry points for trainers and verl (spec integrations.md "Rewards").

* :func:`compute_score` has verl's custom-reward signature
  ``(data_source, solution_str, ground_truth, extra_info) -> dict`` with ``"score"`` (plus
  ``acc``, ``pred`` and ``verify_error``: 1.0 when verification timed out or errored, whose mean
  over a batch is the verify-error fraction); use it as ``reward.custom_reward_function.path=<steer/rewards/api.py>``
  ``.name=compute_score``.
* :func:`score_responses` scores a list of responses in one batch (the trainer's path).

Both go through the process-wide :class:`~steer.rewards.pool.VerifierPool`; the scorer is taken
from ``extra_info["scorer"]`` / the ``scorer`` argument, else from the data source
(:func:`~steer.rewards.registry.default_scorer`).

One rule at every entry point (trainer, verl, TRL, ``steer eval``): a response whose verification
errors or times out gets the scorer's wrong-answer reward, never a neutral one, and is counted
(``reward/verify_error_frac``).
"""

from __future__ import annotations

from collections.abc import Sequence

from steer.rewards.pool import ScoreItem, Verdict, VerifierPool, get_default_pool, is_verify_error
from steer.rewards.registry import default_scorer


def _pick(data_source: str | None, extra_info: dict | None, scorer: str | None) -> str:
    if scorer:
        return scorer
    if isinstance(extra_info, dict) and extra_info.get("scorer"):
        return str(extra_info["scorer"])
    return default_scorer(data_source)


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    *,
    scorer: str | None = None,
    pool: VerifierPool | None = None,
    **_: object,
) -> dict:
    """Score one response (verl custom reward signature). Returns ``{"score", "acc", "pred",
    "verify_error"}``; a timeout or an error scores as a wrong answer (``verify_error`` 1.0)."""
    v = (pool or get_default_pool()).score_batch(
        [ScoreItem(solution_str or "", str(ground_truth), _pick(data_source, extra_info, scorer))]
    )[0]
    return {
        "score": v.score,
        "acc": float(v.correct),
        "pred": v.pred or "",
        "verify_error": float(is_verify_error(v)),
    }


def compute_score_float(data_source, solution_str, ground_truth, extra_info=None, **kw) -> float:
    """As :func:`compute_score` but returns the reward as a float."""
    return compute_score(data_source, solution_str, ground_truth, extra_info, **kw)["score"]


def score_responses(
    responses: Sequence[str],
    golds: Sequence[str],
    *,
    data_sources: Sequence[str | None] | str | None = None,
    scorer: str | None = None,
    pool: VerifierPool | None = None,
) -> list[Verdict]:
    """Score ``responses[i]`` against ``golds[i]`` in one batch; one :class:`Verdict` each.

    ``scorer`` (a registry name) applies to all items; otherwise the scorer follows
    ``data_sources`` (one per item, or one for all).
    """
    if len(responses) != len(golds):
        raise ValueError(f"score_responses: {len(responses)} responses but {len(golds)} golds")
    if data_sources is None or isinstance(data_sources, str):
        data_sources = [data_sources] * len(responses)
    if len(data_sources) != len(responses):
        raise ValueError("score_responses: data_sources must match responses in length")
    items = [
        ScoreItem(r, str(g), _pick(ds, None, scorer)) for r, g, ds in zip(responses, golds, data_sources)
    ]
    return (pool or get_default_pool()).score_batch(items)
