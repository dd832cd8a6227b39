"""Metric keys of the core and how each one is reduced over micro-batches, mini-batches and ranks.

Every metric a core loss emits is computed on one (micro-)batch. To report a step, the caller
combines them; the combination must depend on what the number *is*, not on how its key happens to
end. This module declares one reduction per key:

- ``"sum"``: counts and sums (``tokens``, ``quadrant/I/count``, ``quadrant/I/omega_sum``, clip
  trigger counts): add them up (an all-reduce SUM across ranks).
- ``"token_mean"``: per-token averages (``pg_loss``, ``clipfrac_low``, ``ratio_mean``,
  ``weight_mean``, ...): the mean weighted by each micro-batch's valid-token count, i.e.
  ``sum(v_i * n_i) / sum(n_i)``.
- ``"mean"``: an unweighted mean over micro-batches (reserved for keys that are per-batch
  quantities; none of the core's keys uses it today).
- ``"min"`` / ``"max"``: extremes (``weight_min``, ``steer/omega_max``).

Derived keys are computed *after* the reduction from reduced sums, so that they stay exact over
any split: ``quadrant/{q}/share`` = count of q / the four counts, and
``clip_by_prob/{bucket}/{low,high,dual}_frac`` = trigger count / tokens of that bucket.

An undeclared key is an error (``reduction_of`` raises ``KeyError`` naming it), so renaming a key
can never silently change how it is averaged. A method's own keys (``steer/omega_max``,
``forking/selected_frac``, ...) are declared where its function is registered (``metrics=`` of
:func:`steer.core.parts.register_policy_loss` / ``register_weighting``); engines that add their own
keys declare them with :func:`register_reduction` or pass ``extra=`` to :func:`reduce_metrics`.

Key families (``*`` stands for one path segment):

- ``quadrant/{I,II,III,IV}/count``, ``.../omega_sum`` (sum); ``.../share`` (derived). Quadrants as
  in the paper (section 3.2.1), from sign(A) and sign(delta) of Eq. 8: I exploitation (A > 0,
  delta < 0: entropy decreases), II exploration (A > 0, delta > 0: increases), III suppression
  (A < 0, delta > 0: decreases), IV error correction (A < 0, delta < 0: increases).
- ``intervention/{q}/count`` (sum, declared by the ``quadrant`` weighting): the quadrant
  intervention's own counts.
- ``clip_by_prob/p{0..9}/tokens``, ``.../low``, ``.../high``, ``.../dual`` (sum): valid tokens
  whose rollout-policy probability pi_old(o|s) = exp(old_logp) falls in decile ``[k/10, (k+1)/10)``
  (p9 includes 1.0), and how many of them the lower, upper and dual clip blocked (paper Fig. 9);
  ``.../low_frac`` etc. (derived).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping

__all__ = [
    "DERIVED",
    "PATTERNS",
    "REDUCTION_KINDS",
    "REDUCTIONS",
    "MetricReducer",
    "derive_metrics",
    "reduce_metrics",
    "reduction_of",
    "register_reduction",
]

REDUCTION_KINDS = ("sum", "token_mean", "mean", "min", "max")
QUADRANT_NAMES = ("I", "II", "III", "IV")
PROB_BUCKETS = tuple(f"p{k}" for k in range(10))
CLIP_KINDS = ("low", "high", "dual")

#: exact key -> reduction
REDUCTIONS: dict[str, str] = {
    # every loss
    "tokens": "sum",
    "loss": "token_mean",
    "pg_loss": "token_mean",
    "clipfrac_low": "token_mean",
    "clipfrac_high": "token_mean",
    "clipfrac_dual": "token_mean",
    "ratio_mean": "token_mean",
    "entropy_mean": "token_mean",
    "weight_mean": "token_mean",
    "weight_min": "min",
    "old_nll_mean": "token_mean",
    # regularisers
    "entropy_coef": "token_mean",
    "entropy_loss": "token_mean",
    "kl_loss": "token_mean",
    "kl_mean": "token_mean",
    # the cause pass (any method given LossBatch.token_cause)
    "cause/pred_sum": "sum",
    "cause/pred_sum_unweighted": "sum",
    # a method's own keys are declared where its function is registered (``metrics=`` of
    # steer.core.parts.register_policy_loss / register_weighting)
}

#: fnmatch pattern (``*`` = one path segment here) -> reduction, for parametrised families
PATTERNS: dict[str, str] = {
    "quadrant/*/count": "sum",
    "quadrant/*/omega_sum": "sum",
    "clip_by_prob/*/tokens": "sum",
    "clip_by_prob/*/low": "sum",
    "clip_by_prob/*/high": "sum",
    "clip_by_prob/*/dual": "sum",
}

#: derived key families (computed from reduced sums, never reduced themselves)
DERIVED: dict[str, str] = {
    "quadrant/*/share": "count of the quadrant / sum of the four quadrant counts",
    "clip_by_prob/*/low_frac": "clip_by_prob/{bucket}/low / clip_by_prob/{bucket}/tokens",
    "clip_by_prob/*/high_frac": "clip_by_prob/{bucket}/high / clip_by_prob/{bucket}/tokens",
    "clip_by_prob/*/dual_frac": "clip_by_prob/{bucket}/dual / clip_by_prob/{bucket}/tokens",
}


def _check_kind(reduction: str, what: str) -> None:
    if reduction not in REDUCTION_KINDS:
        raise ValueError(f"reduction for {what!r} must be one of {list(REDUCTION_KINDS)}, got {reduction!r}")


def _match(key: str, pattern: str) -> bool:
    return key.count("/") == pattern.count("/") and fnmatch.fnmatchcase(key, pattern)


def register_reduction(key_or_pattern: str, reduction: str) -> None:
    """Declare how a key (or a ``*`` pattern) is reduced. Re-declaring with another reduction raises."""
    _check_kind(reduction, key_or_pattern)
    table = PATTERNS if "*" in key_or_pattern else REDUCTIONS
    old = table.get(key_or_pattern)
    if old is not None and old != reduction:
        raise ValueError(f"metric {key_or_pattern!r} is already reduced by {old!r}, not {reduction!r}")
    table[key_or_pattern] = reduction


def is_derived(key: str) -> bool:
    """True for keys that :func:`derive_metrics` computes (they are never reduced directly)."""
    return any(_match(key, p) for p in DERIVED)


def reduction_of(key: str, extra: Mapping[str, str] | None = None) -> str:
    """The declared reduction of ``key``: ``"sum" | "token_mean" | "mean" | "min" | "max"``.

    Looks at ``extra`` (caller-declared keys), then the exact table, then the patterns. An
    undeclared key raises ``KeyError`` naming it (declare it with :func:`register_reduction`).
    """
    if extra and key in extra:
        _check_kind(extra[key], key)
        return extra[key]
    if key in REDUCTIONS:
        return REDUCTIONS[key]
    for p, r in PATTERNS.items():
        if _match(key, p):
            return r
    if is_derived(key):
        raise KeyError(f"metric {key!r} is derived after the reduction (see steer.core.metrics.DERIVED)")
    raise KeyError(
        f"metric {key!r} has no declared reduction; declare it with "
        "steer.core.metrics.register_reduction(key, 'sum' | 'token_mean' | 'mean' | 'min' | 'max')"
    )


class MetricReducer:
    """Accumulates ``(metrics, n_tokens)`` pairs and reduces each key by its declared reduction.

    ``add`` in any order; ``result()`` returns the reduced dict plus the derived keys. Non-numeric
    values raise ValueError naming the key. For a distributed run, all-reduce the accumulators
    before ``result()``: ``sums``, ``weights``, ``counts`` and ``totals`` by SUM, ``mins`` by MIN,
    ``maxs`` by MAX.
    """

    def __init__(self, extra: Mapping[str, str] | None = None) -> None:
        self.extra = dict(extra or {})
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.mins: dict[str, float] = {}
        self.maxs: dict[str, float] = {}
        self.totals: dict[str, float] = {}

    def add(self, metrics: Mapping[str, float], n_tokens: float) -> None:
        n = float(n_tokens)
        if not (math.isfinite(n) and n >= 0):
            raise ValueError(f"n_tokens must be a finite number >= 0, got {n_tokens!r}")
        for k, v in metrics.items():
            if is_derived(k):
                continue  # recomputed from the reduced sums
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"metric {k!r} must be a number, got {v!r}") from None
            r = reduction_of(k, self.extra)
            if r == "sum":
                self.totals[k] = self.totals.get(k, 0.0) + v
            elif r == "min":
                self.mins[k] = min(self.mins.get(k, math.inf), v)
            elif r == "max":
                self.maxs[k] = max(self.maxs.get(k, -math.inf), v)
            elif r == "token_mean":
                self.sums[k] = self.sums.get(k, 0.0) + v * n
                self.weights[k] = self.weights.get(k, 0.0) + n
            else:  # mean
                self.sums[k] = self.sums.get(k, 0.0) + v
                self.counts[k] = self.counts.get(k, 0) + 1

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, s in self.sums.items():
            if k in self.counts:
                out[k] = s / self.counts[k]
            elif self.weights[k] > 0:
                out[k] = s / self.weights[k]
        out.update(self.mins)
        out.update(self.maxs)
        out.update(self.totals)
        out.update(derive_metrics(out))
        return out


def derive_metrics(reduced: Mapping[str, float]) -> dict[str, float]:
    """The derived keys (:data:`DERIVED`) computable from already reduced metrics."""
    out: dict[str, float] = {}
    counts = {q: reduced[f"quadrant/{q}/count"] for q in QUADRANT_NAMES if f"quadrant/{q}/count" in reduced}
    total = sum(counts.values())
    if total > 0:
        for q, v in counts.items():
            out[f"quadrant/{q}/share"] = v / total
    for b in PROB_BUCKETS:
        n = reduced.get(f"clip_by_prob/{b}/tokens")
        if n is None:
            continue
        for c in CLIP_KINDS:
            v = reduced.get(f"clip_by_prob/{b}/{c}")
            if v is not None:
                out[f"clip_by_prob/{b}/{c}_frac"] = v / n if n > 0 else 0.0
    return out


def reduce_metrics(
    items: Iterable[tuple[Mapping[str, float], float]], *, extra: Mapping[str, str] | None = None
) -> dict[str, float]:
    """Reduce ``[(metrics, n_tokens), ...]`` (one pair per micro-batch) by the declared reductions.

    ``n_tokens`` is the micro-batch's number of valid tokens (the token-mean weight). Returns the
    reduced metrics plus the derived keys. An undeclared key raises ``KeyError``.
    """
    acc = MetricReducer(extra)
    for metrics, n in items:
        acc.add(metrics, n)
    return acc.result()
