"""Correlation helpers of the analysis tools: Pearson, Spearman (tie-averaged ranks) and the
agreement summary of an estimate against a measured change (paper Fig. 2).

Plain float64 torch on flattened tensors; no model, no I/O. They summarise results and so live
in the analysis package, not in the core (which only produces per-token tensors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from steer.core.types import check_same_shape

__all__ = ["agreement", "pearson", "rank", "spearman"]


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two equal-size tensors (flattened, float64). NaN if either is constant."""
    check_same_shape(x=x, y=y)
    a = x.detach().double().flatten()
    b = y.detach().double().flatten()
    if a.numel() < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = a.norm() * b.norm()
    if float(den) == 0.0:
        return float("nan")
    return float((a @ b) / den)


def rank(x: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties get the average of their ranks (float64)."""
    v = x.detach().double().flatten()
    n = v.numel()
    order = torch.argsort(v, stable=True)
    sorted_v = v[order]
    ranks = torch.empty(n, dtype=torch.float64)
    if n == 0:
        return ranks
    # group equal values: start index of each run in sorted order
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = sorted_v[1:] != sorted_v[:-1]
    run_id = torch.cumsum(new_run.long(), 0) - 1
    starts = torch.nonzero(new_run).flatten().double()
    ends = torch.cat([starts[1:], torch.tensor([float(n)], dtype=torch.float64)])
    avg = (starts + ends - 1) / 2 + 1  # mean of 1-based positions start+1 .. end
    ranks[order] = avg[run_id]
    return ranks


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation = Pearson correlation of the (tie-averaged) ranks."""
    check_same_shape(x=x, y=y)
    return pearson(rank(x), rank(y))


def agreement(estimate: Tensor, measured: Tensor) -> dict[str, float]:
    """MSE, Pearson, Spearman and sign agreement of an estimate against a measured change (paper Fig. 2)."""
    check_same_shape(estimate=estimate, measured=measured)
    e = estimate.detach().double().flatten()
    m = measured.detach().double().flatten()
    return {
        "mse": float(((e - m) ** 2).mean()) if e.numel() else float("nan"),
        "pearson": pearson(e, m),
        "spearman": spearman(e, m),
        "sign_agreement": float((torch.sign(e) == torch.sign(m)).double().mean())
        if e.numel()
        else float("nan"),
    }
