"""A math reward for verl's ``reward.custom_reward_function`` that scores through steer's verifier
pool (math-verify, DAPO and Qwen-style scorers in worker processes with a hard per-item time
limit; ``steer.rewards``)::

    reward.custom_reward_function.path=$(python -c "import steer.integrations.verl.reward as r; print(r.__file__)")
    reward.custom_reward_function.name=compute_score

The scorer follows ``extra_info["scorer"]`` when given, else the data source (``math_dapo`` ->
``dapo``, which scores +1 / -1 like verl's own; anything else -> ``math_verify``, 1 / 0); see
docs/evaluation.md. Options through ``+reward.custom_reward_function.reward_kwargs.<name>=...``:

- ``scorer``: force one registered scorer for every item;
- ``pool_workers``: verification processes per reward worker (default 2: verl starts
  ``reward.num_workers`` reward workers, 8 by default, each with its own pool);
- ``timeout``: the hard per-item limit in seconds (default: the pool's).

Returns ``{"score", "acc", "pred", "verify_error"}`` (verl logs the extra keys). A response whose
verification times out or errors scores as a wrong answer (0, or -1 with dapo), never better, and
has ``verify_error`` 1.0: its mean over a batch is the verify-error fraction
(``reward/verify_error_frac`` in steer's trainer and TRL).
"""

from __future__ import annotations

import threading

from steer.rewards import VerifierPool
from steer.rewards import compute_score as _compute_score

__all__ = ["compute_score"]

_POOLS: dict[tuple, VerifierPool] = {}
_LOCK = threading.Lock()


def _pool(pool_workers: int | None, timeout: float | None) -> VerifierPool:
    key = (pool_workers, timeout)
    with _LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool._closed:
            kwargs = {"num_workers": int(pool_workers) if pool_workers else 2}
            if timeout is not None:
                kwargs["timeout"] = float(timeout)
            pool = VerifierPool(**kwargs)
            _POOLS[key] = pool
        return pool


def compute_score(
    data_source,
    solution_str,
    ground_truth,
    extra_info=None,
    *,
    scorer: str | None = None,
    pool_workers: int | None = None,
    timeout: float | None = None,
    **_: object,
) -> dict:
    """verl's custom-reward signature; one response scored in the verifier pool."""
    return _compute_score(
        data_source, solution_str, ground_truth, extra_info, scorer=scorer, pool=_pool(pool_workers, timeout)
    )
