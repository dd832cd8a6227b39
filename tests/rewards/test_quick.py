"""The quick evaluator (steer.rewards.quick): it reads what it reads like latex2sympy, and the
verdicts math_verify takes from it agree with math-verify's own ``verify``."""

from __future__ import annotations

import mpmath
import pytest
import sympy
from latex2sympy2_extended import latex2sympy

from steer.data import load_benchmark
from steer.rewards import math_verify_scorer as mvs
from steer.rewards import quick
from steer.rewards.extract import canonical_answer, clean_gold


@pytest.mark.parametrize(
    "a,b,want",
    [
        ("x^2+2x+1", "(x+1)^2", True),
        (r"\sqrt{x^2}", "x", False),  # a negative assignment tells |x| from x
        ("2n+1", "2m+1", False),
        ("3", "2+1", True),
        (r"\frac{1}{3}", "0.3333333", None),  # close, not equal: left to the full comparison
        (r"\sqrt{8}", r"2\sqrt{2}", True),
        ("1/2x", r"\frac{1}{2x}", True),  # latex2sympy: 1/(2x)
        ("100000!", "5", False),
        ("10^{10^{10}}", "5", False),
        ("10^{10^{10}}", "10^{10^{10}}+1", None),  # too large to tell apart
        ("2042222+10^{-30}", "2042222", False),  # written exactly: compared exactly
        ("2(3)", "6", None),  # latex2sympy reads 2(3) as 5: refused
        (r"1\frac{4}{5}", r"\frac{9}{5}", True),  # a mixed number, as latex2sympy reads it
        (r"-2\frac{1}{2}", r"-\frac{5}{2}", True),  # -(2 + 1/2), not -2 * 1/2
        (r"-2\frac{1}{2}", "-1", False),
        (r"(2)\frac{1}{2}", "1", None),  # 5/2 in latex2sympy: an integer, then a rational last
        (r"2\frac{1}{2}x", "x", None),
        ("u(t)", "u t", None),  # a function application there: refused
        (r"\infty", "5", None),
        ("x_1", "x", None),
        ("2^{2^{2^{2^{2^{2}}}}}", "1", None),
    ],
)
def test_compare(a, b, want):
    assert quick.compare(a, b) is want


def test_no_code_paths():
    for s in ("__import__('os')", "open('x','w')", "x.__class__", "lambda: 1", "eval(1)"):
        assert quick.values(s) is None


def _golds(limits):
    out = set()
    for name, n in limits.items():
        for p in load_benchmark(name)[:n]:
            out.add(mvs._mv_normal_form(canonical_answer(clean_gold(p.gold))))
    return sorted(out)


def _agrees_with_latex2sympy(s: str) -> bool:
    v = quick.values(s)
    if v is None:
        return True
    xs, names, exact, _ = v
    e = latex2sympy(s)
    syms = {str(x): x for x in e.free_symbols}
    for k, x0 in enumerate(quick._POINTS[: len(xs)]):
        if xs[k] is None:
            continue
        sub = {}
        for nm in names:
            val = quick._value_at(nm, x0)
            if exact:
                val = mpmath.mpf(mpmath.nstr(val, 25))
            sub[syms[nm.lstrip("\\")]] = sympy.Float(str(val), 30)
        ev = complex(e.subs(sub).evalf(30))
        if abs(ev - complex(xs[k])) > 1e-9 * max(1, abs(ev)):
            return False
    return True


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"math500": 200, "olympiad": 150, "minerva": 60}, id="sample"),
        pytest.param(
            {n: None for n in ("aime24", "aime25", "amc23", "math500", "minerva", "olympiad")},
            id="every-gold",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_values_agree_with_latex2sympy(limits):
    golds = _golds(limits)
    assert sum(quick.values(g) is not None for g in golds) > len(golds) // 3
    assert [g for g in golds if not _agrees_with_latex2sympy(g)] == []


def test_verdicts_agree_with_math_verify():
    """Cross-gold pairs and near misses: wherever the quick check decides, math-verify's own
    verify (no shortcuts) says the same."""
    probs = load_benchmark("math500")[:80] + load_benchmark("olympiad")[:60]
    pairs = []
    for i, p in enumerate(probs):
        g = canonical_answer(clean_gold(p.gold))
        other = canonical_answer(clean_gold(probs[(i + 7) % len(probs)].gold))
        digits = [j for j, c in enumerate(g) if c.isdigit()]
        pairs.append((g, other))
        if digits:
            j = digits[-1]
            pairs.append((g, g[:j] + str((int(g[j]) + 1) % 10) + g[j + 1 :]))
    decided, bad = 0, []
    for g, a in pairs:
        q = mvs.quick_verdict(g, a)
        if q is None:
            continue
        decided += 1
        full = bool(
            mvs.verify(mvs.parse_gold(g), mvs._parse_pred("\\boxed{" + a + "}"), timeout_seconds=None)
        )
        if full != q:
            bad.append((g, a, q, full))
    assert decided > len(pairs) // 3
    assert bad == []
