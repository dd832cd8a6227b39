"""pass@k and avg@k (spec evaluation.md §4).

* Unbiased pass@k (Chen et al. 2021): with ``n`` samples of which ``c`` are correct,
  ``pass@k = 1 - C(n-c, k) / C(n, k)``, computed in the numerically stable product form
  ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (1.0 when ``n - c < k``).
* avg@k: the mean accuracy over the k samples of a problem, averaged over problems (the paper's
  avg@32 for AIME/AMC, section 5.1; equals the unbiased pass@1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct (spec §4).

    Raises ValueError unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    n, c, k = int(n), int(c), int(k)
    if n < 1:
        raise ValueError(f"pass_at_k: n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k must be in [1, n={n}], got {k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems given as ``(n, c)`` pairs (spec §4)."""
    vals = [pass_at_k(n, c, k) for n, c in counts]
    if not vals:
        raise ValueError("mean_pass_at_k: no problems")
    return sum(vals) / len(vals)


def avg_at_k(correct: Sequence[Sequence[bool | float | int]]) -> float:
    """avg@k: per-problem mean accuracy over its samples, averaged over problems (spec §4).

    ``correct[p]`` holds the verdicts (bool or 0/1 score) of problem ``p``'s samples. A problem
    without samples raises ValueError (it would otherwise be dropped silently).
    """
    if len(correct) == 0:
        raise ValueError("avg_at_k: no problems")
    total = 0.0
    for p, samples in enumerate(correct):
        if len(samples) == 0:
            raise ValueError(f"avg_at_k: problem {p} has no samples")
        total += sum(float(bool(s)) for s in samples) / len(samples)
    return total / len(correct)
