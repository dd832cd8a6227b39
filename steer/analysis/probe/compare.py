"""Estimates against the measured change: agreement, probability buckets, binned curves and the
verdict."""

from __future__ import annotations

import torch
from torch import Tensor

from steer.analysis.correlation import agreement
from steer.analysis.probe.settings import LINEAR_OK, PER_TOKEN_ESTIMATORS, PROB_BUCKETS, TRACKS, WEAK


def _flat_valid(x: Tensor, mask: Tensor) -> Tensor:
    return x.detach().double().cpu()[mask]


def _agreement(est: Tensor, meas: Tensor) -> dict:
    if est.numel() < 2:
        return {
            "mse": float("nan"),
            "pearson": float("nan"),
            "spearman": float("nan"),
            "sign_agreement": float("nan"),
            "tokens": int(est.numel()),
        }
    out = dict(agreement(est, meas))
    out["tokens"] = int(est.numel())
    return out


def _bucket_name(lo: float, hi: float) -> str:
    return f"[{lo:g},{hi:g}{']' if hi >= 1.0 else ')'}"


def _buckets(p: Tensor) -> list[tuple[str, Tensor]]:
    out = []
    edges = PROB_BUCKETS
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        sel = (p >= lo) & ((p <= hi) if hi >= 1.0 else (p < hi))
        out.append((_bucket_name(lo, hi), sel))
    return out


def _verdict(res: dict) -> str:
    ag = res["agreement"]
    lin = ag["jvp"]["spearman"]
    per_tok = {k: ag[k]["spearman"] for k in PER_TOKEN_ESTIMATORS}
    finite = {k: v for k, v in per_tok.items() if v == v}
    best_name = max(finite, key=finite.get) if finite else None
    best = finite.get(best_name, float("nan")) if best_name else float("nan")
    cause_vs_jvp = res["cause_vs_jvp"]["spearman"]
    parts = []
    if not (lin == lin) or lin < LINEAR_OK:
        parts.append(
            f"the step is not in its linear regime (JVP-linearised vs measured Spearman {lin:.2f} < {LINEAR_OK}): "
            "lower the learning rate before judging the estimators"
        )
    if best_name is None:
        parts.append("no per-token estimator gave a finite correlation (constant estimates)")
    elif best >= TRACKS:
        parts.append(
            f"the per-token estimators track the measured change (best: {best_name}, Spearman {best:.2f})"
        )
    elif best >= WEAK:
        parts.append(
            f"the per-token estimators track the measured change only weakly (best: {best_name}, Spearman {best:.2f})"
        )
    else:
        msg = f"the per-token estimators do not track the measured change (best: {best_name}, Spearman {best:.2f})"
        if lin == lin and lin >= LINEAR_OK:
            msg += f" although the JVP linearisation does ({lin:.2f}): Assumption 1 fails here, cross-token effects dominate"
        parts.append(msg)
    if cause_vs_jvp == cause_vs_jvp:
        parts.append(f"own-gradient cause c_t vs per-state linearised change: Spearman {cause_vs_jvp:.2f}")
    t = res["totals"]
    rel = t.get("sum_cause_rel_error", float("nan"))
    if rel == rel:
        parts.append(
            f"sum of c_t {t['cause']:.4g} vs measured total change {t['measured']:.4g} ({100 * rel:.0f}% off)"
        )
    return "; ".join(parts)


def _binned(x: Tensor, ys: dict[str, Tensor], bins: int, lo_q: float = 0.01, hi_q: float = 0.99) -> dict:
    """Equal-width bins of ``x`` between its ``lo_q`` and ``hi_q`` quantiles: count and mean of
    ``x`` and of every ``ys`` series per bin (tokens outside the range are counted, not binned)."""
    if x.numel() == 0:
        return {"edges": [], "count": [], "x_mean": [], "series": {}, "outside": 0}
    lo, hi = float(torch.quantile(x, lo_q)), float(torch.quantile(x, hi_q))
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max()) + 1e-12
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    inside = (x >= lo) & (x <= hi)
    idx = torch.bucketize(x, edges[1:-1], right=True)
    count, x_mean = [], []
    series: dict[str, list[float]] = {k: [] for k in ys}
    for b in range(bins):
        sel = inside & (idx == b)
        c = int(sel.sum())
        count.append(c)
        x_mean.append(float(x[sel].mean()) if c else float("nan"))
        for k, y in ys.items():
            series[k].append(float(y[sel].mean()) if c else float("nan"))
    return {
        "edges": edges.tolist(),
        "count": count,
        "x_mean": x_mean,
        "series": series,
        "outside": int((~inside).sum()),
    }
