"""What more seeds would settle: the power of ``steer reproduce``'s verdict rule.

The rule (:func:`steer.analysis.reproduce.compare`) decides a comparison from the paired per-seed
differences ``d_1..d_n``: *reproduced* when their mean has the predicted sign, exceeds ``k = 2``
standard errors (sample sd / sqrt(n)) and every ``d_s`` has that sign; *contradicted* when the
same holds for the opposite sign. This module answers, for every comparison:

- the **paired sd** observed (the sample standard deviation of the ``d_s``);
- the **detectable difference** at the current ``n``: the smallest true mean difference the rule
  decides with probability :data:`POWER` (80%);
- the **seeds needed** for the rule to decide, with that power, the effect the paper reports in
  the comparison's metric (:attr:`Comparison.paper_effect`) or, where the paper gives no number,
  the observed mean difference.

The model: the ``d_s`` are independent normal with the observed sd as the true sd (an estimate
from few seeds: the figures are as uncertain as that sd). Under it the rule's decision depends
only on ``effect / sd`` and ``n``, and the probabilities have no closed form (the every-seed-sign
clause and the t-statistic are dependent), so they come from a fixed Monte-Carlo sample of
:data:`MC_DRAWS` standard-normal paths (seed :data:`MC_SEED`, float64). For one path ``z`` the rule
decides "reproduced" on ``z + e`` exactly when ``e`` exceeds ``max(k sd(z)/sqrt(n) - mean(z),
-min(z))``, so the power at ``e`` is the share of paths whose threshold is below ``e`` and the
detectable effect is a quantile of those thresholds: no root finding.

The every-seed-sign clause caps the rule's power: the chance that ``n`` seeds all share the sign
of an effect of ``e`` sd is at most ``Phi(e)^n``, which falls as ``n`` grows, so an effect below
about 1.6 sd never reaches 80% power, however many seeds. :func:`seeds_needed` then says so, with
the best power and the ``n`` where it peaks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

#: The standard-error multiple of the verdict rule (``steer.analysis.reproduce.compare``).
RULE_K = 2.0
#: The power the detectable difference and the seeds needed are stated at.
POWER = 0.8
#: Monte-Carlo paths and their seed (fixed: the figures are deterministic on a given machine).
MC_DRAWS = 100_000
MC_SEED = 20261206
#: The largest number of seeds :func:`seeds_needed` considers.
N_SEARCH = 20


@functools.lru_cache(maxsize=1)
def _paths() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running mean, sample sd and minimum of ``MC_DRAWS`` standard-normal paths of length
    ``N_SEARCH`` (column ``n - 1`` holds the statistics of the first ``n`` values)."""
    z = np.random.default_rng(MC_SEED).standard_normal((MC_DRAWS, N_SEARCH))
    n = np.arange(1, N_SEARCH + 1, dtype=np.float64)
    mean = np.cumsum(z, axis=1) / n
    # sample variance from the running sums of squared deviations (Welford-free: z is O(1))
    ss = np.cumsum(z * z, axis=1) - n * mean * mean
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.maximum(ss, 0.0) / (n - 1))
    return mean, sd, np.minimum.accumulate(z, axis=1)


def _check_n(n: int) -> None:
    if not 2 <= n <= N_SEARCH:
        raise ValueError(f"n must lie in [2, {N_SEARCH}], got {n}")


def thresholds(n: int, k: float = RULE_K, sign_clause: bool = True) -> np.ndarray:
    """Per Monte-Carlo path, the smallest effect (in sd units) the rule decides at ``n`` seeds
    (``sign_clause=False``: the mean-vs-k-se test alone, for comparison; not the rule)."""
    _check_n(n)
    mean, sd, mn = _paths()
    t = k * sd[:, n - 1] / math.sqrt(n) - mean[:, n - 1]
    return np.maximum(t, -mn[:, n - 1]) if sign_clause else t


def power(n: int, effect_sd: float, k: float = RULE_K, sign_clause: bool = True) -> float:
    """P(the rule decides a true mean difference of ``effect_sd`` sd, in its direction, at n seeds)."""
    return float(np.mean(thresholds(n, k, sign_clause) < abs(effect_sd)))


def false_verdict_rate(n: int, k: float = RULE_K) -> float:
    """P(reproduced or contradicted | no effect) at n seeds (both signs; symmetric)."""
    return 2.0 * float(np.mean(thresholds(n, k) < 0.0))


def detectable(n: int, p: float = POWER, k: float = RULE_K) -> float:
    """The smallest effect (sd units) decided with probability ``p`` at ``n`` seeds (inf when the
    rule's power at n never reaches ``p``)."""
    t = np.sort(thresholds(n, k))
    i = math.ceil(p * len(t)) - 1
    return float(t[i]) if 0 <= i < len(t) and math.isfinite(t[i]) else math.inf


def seeds_needed(effect_sd: float, p: float = POWER, k: float = RULE_K, sign_clause: bool = True) -> dict:
    """The smallest n in [2, N_SEARCH] at which the rule decides ``effect_sd`` with probability
    ``p``: ``{"n": n or None, "best_power", "best_n"}`` (``n`` None: unreachable at any n)."""
    best, best_n = -1.0, 2
    for n in range(2, N_SEARCH + 1):
        pw = power(n, effect_sd, k, sign_clause)
        if pw > best:
            best, best_n = pw, n
        if pw >= p:
            return {"n": n, "best_power": pw, "best_n": n}
    return {"n": None, "best_power": best, "best_n": best_n}


# ---------------------------------------------------------------------------------------------
# per comparison


def _sd(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    m = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def comparison_power(
    diffs: Sequence[float],
    *,
    paper_effect: float | None = None,
    paper_source: str = "",
    p: float = POWER,
) -> dict:
    """The figures of one comparison from its paired differences (see the module docstring).
    ``detectable`` is in the metric's units; ``target`` is the effect the seeds-needed figure
    aims at, ``target_source`` "paper: ..." or "observed"."""
    d = [float(x) for x in diffs if isinstance(x, (int, float)) and math.isfinite(x)]
    n = len(d)
    out: dict = {"n": n, "sd": _sd(d), "power": p, "detectable": None, "seeds_needed": None}
    if paper_effect is not None:
        out.update(target=abs(float(paper_effect)), target_source=f"paper: {paper_source}")
    else:
        out.update(target=abs(math.fsum(d) / n) if n else float("nan"), target_source="observed")
    if n < 2:
        out["note"] = "fewer than 2 paired seeds: no sd"
        return out
    sd = out["sd"]
    if sd == 0.0:
        out["note"] = "every seed gives the same difference (no spread): nothing to estimate"
        return out
    if n <= N_SEARCH:
        out["detectable"] = detectable(n, p) * sd
    out["false_verdict_rate"] = false_verdict_rate(n) if n <= N_SEARCH else None
    if out["target"] == 0.0 or not math.isfinite(out["target"]):
        out["note"] = "zero effect to aim at"
        return out
    need = seeds_needed(out["target"] / sd, p)
    out["effect_sd"] = out["target"] / sd
    out["seeds_needed"] = need["n"]
    out["best_power"], out["best_n"] = need["best_power"], need["best_n"]
    # for comparison only (not the rule): the mean-vs-2-se test without the every-seed-sign clause
    out["seeds_needed_no_sign_clause"] = seeds_needed(out["effect_sd"], p, sign_clause=False)["n"]
    return out


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3g}"


def needed_text(f: dict) -> str:
    """The seeds-needed cell of one comparison's figures."""
    if f.get("note"):
        return f["note"]
    if f["seeds_needed"] is not None:
        return f"{f['seeds_needed']}"
    return (
        f"none up to {N_SEARCH}: the every-seed-sign clause caps the power at "
        f"{f['best_power']:.0%} (at {f['best_n']} seeds)"
    )


def no_sign_text(f: dict) -> str:
    """The seeds the mean-vs-2-se test alone would need (a comparison, not the rule)."""
    if "seeds_needed_no_sign_clause" not in f:
        return "-"
    n = f["seeds_needed_no_sign_clause"]
    return str(n) if n is not None else f"more than {N_SEARCH}"


def markdown(comparisons: Sequence[dict]) -> list[str]:
    """The "what more seeds would settle" table of a result (comparisons carrying ``power``)."""
    rows = [c for c in comparisons if c.get("power")]
    if not rows:
        return []
    n_any = next((c["power"]["n"] for c in rows if c["power"]["n"] >= 2), None)
    fv = false_verdict_rate(n_any) if n_any and n_any <= N_SEARCH else None
    lines = [
        "## What more seeds would settle",
        "",
        f"Under a normal model of the paired differences with the observed sd as the true one "
        f"(steer.analysis.power; Monte-Carlo over {MC_DRAWS:,} paths): the smallest true difference "
        f"the rule decides with {POWER:.0%} power at the current seeds, and the seeds it needs to decide "
        f"the effect the paper reports (or, where the paper gives no number in this metric, the observed "
        f"one) with {POWER:.0%} power."
        + (
            f" With no effect, the rule gives a false verdict at {n_any} seeds with probability {fv:.1%}."
            if fv
            else ""
        ),
        "",
        "| prediction | n | paired sd | detectable difference (80% power) | effect aimed at | "
        "effect / sd | seeds needed (80% power) | without the sign clause (not the rule) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        f = c["power"]
        lines.append(
            f"| {c['text']} | {f['n']} | {_fmt(f['sd'])} | {_fmt(f['detectable'])} | "
            f"{_fmt(f['target'])} ({f['target_source']}) | {_fmt(f.get('effect_sd'))} | {needed_text(f)} | "
            f"{no_sign_text(f)} |"
        )
    return lines + [""]
