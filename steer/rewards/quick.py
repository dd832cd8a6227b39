"""A small, safe evaluator for plain LaTeX arithmetic, used as a cheap pre-check before sympy.

It reads a subset of LaTeX: numbers, ``+ - * /``, ``\\cdot``, ``\\times``, ``\\div``, implicit
products, ``^`` (a group, a number or a letter), ``n!`` of a non-negative integer constant,
``\\frac``/``\\dfrac``/``\\tfrac``, mixed numbers (``2\\frac{1}{2}`` is 5/2, as latex2sympy reads
it), ``\\sqrt`` and ``\\sqrt[n]``, ``\\log``/``\\ln`` (base 10 and e, or ``_b``; the argument in
parentheses, a brace group, or a product run without functions), ``\\lfloor``/``\\lceil``,
``\\pi``, ``e`` (Euler's number), single-letter and Greek-letter variables (``i`` and ``j``
included: both parsers read them as plain symbols, not as the imaginary unit), parentheses and
brace groups. Anything else (relations, commas, sets, intervals, text, other functions,
factorials of anything else, percent, degrees, ``I``) makes it give up (None), and the caller
falls back to the full parser. The precedence follows latex2sympy's where they differ from school
algebra: an implicit product binds tighter than ``/`` (``1/2x`` is ``1/(2x)``) and ``a^b^c`` is
``(a^b)^c``; forms that latex2sympy reads oddly (``2(3)`` is 5 there) are refused.

It never builds code: a recursive-descent parser over a token list evaluates with mpmath at
:data:`DPS` digits (no float overflow: ``10^{400}`` is finite here), at fixed values of the
variables (three assignments, one negative). Sizes are bounded (length, depth, exponent magnitude), so a power
tower is refused, not computed. A floor or ceiling of an expression in variables is a step
function, and a factorial or binomial of one stands for identities sympy may know; three
assignments can tell such an expression apart from another, never prove it equal, so its values
are marked not smooth and :func:`compare` then decides only "different" (also at three larger
assignments, where floors of logarithms part).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

import mpmath

from steer.rewards.quick_parser import (  # noqa: F401  (MAX_*, _GLUABLE, _LONGER: read through this module)
    _GLUABLE,
    _LONGER,
    _TRIG,
    MAX_BITS,
    MAX_DEPTH,
    MAX_EXACT_FACTORIAL,
    MAX_MP_BITS,
    _GiveUp,
    _Inexact,
    _Parser,
    _tokens,
)

DPS = 30
MAX_CHARS = 200
#: Three assignments of the variables (by name, so both sides of a comparison use the same).
_POINTS = (0.7390851332151607, 1.3247179572447460, -0.5671432904097838)
#: Further assignments, larger, for expressions that are not smooth (floors, factorials): two
#: of them can agree at the three small ones (\\lfloor \\log_2 n \\rfloor and \\lfloor \\log_3 n \\rfloor).
_WIDE_POINTS = (7.3890560989306502, 23.140692632779269, 151.54262241479262)


def _value_at(name: str, x0: float):
    """The value of variable ``name`` at assignment ``x0``: a distinct value per name, with the
    sign of ``x0`` (one assignment is negative, so sqrt(x^2) and x differ)."""
    h = sum((j + 1) * ord(c) for j, c in enumerate(name)) % 97
    mag = mpmath.mpf(abs(x0)) + mpmath.mpf(h) / 61 + mpmath.mpf(1) / 7
    return mag if x0 > 0 else -mag


#: Letters that latex2sympy's own normalisation rewrites before parsing ("inf" is \\infty there,
#: "or" a comma, " sqrt" \\sqrt): a string holding them means something else to it.
_REWRITTEN_RE = re.compile(
    r"(?<!\\)inf|infinity|(?<!\\)sqrt|\bpercent|\bpct\b|(?<![a-zA-Z])(?:and|or)(?![a-zA-Z])"
)

_ERRORS = (_GiveUp, ValueError, ZeroDivisionError, OverflowError, RecursionError, TypeError)


def _evaluate(toks, exact: bool, points=_POINTS):
    out, names, smooth = [], frozenset(), True
    ctx = mpmath.workdps(DPS)
    with ctx:
        for k, x0 in enumerate(points):
            cache: dict = {}

            def env(name, cache=cache, x0=x0):
                if name not in cache:
                    v = _value_at(name, x0)
                    cache[name] = Fraction(mpmath.nstr(v, 25)) if exact else v
                return cache[name]

            p = _Parser(toks, env, exact)
            try:
                v = p.parse()
                if not exact:
                    v = mpmath.mpmathify(v)
                    if not mpmath.isfinite(v):
                        v = None
            except _Inexact:
                raise
            except _ERRORS:
                v = None
            if k == 0:
                if v is None:
                    return None
                names = frozenset(p.symbols)
            smooth = smooth and p.smooth
            out.append(v)
            if not names:
                break  # a constant: one evaluation is enough
    return tuple(out), names, smooth


@lru_cache(maxsize=8192)
def values(s: str) -> tuple[tuple, frozenset, bool, bool] | None:
    """``(values at the fixed assignments, variable names, exact, smooth)`` of a plain LaTeX
    expression, or None when it is outside the subset or undefined at the first assignment.
    Rational arithmetic is exact (``Fraction`` values, ``exact`` True); with ``\\pi``, ``e``, a
    logarithm or an irrational root the values are mpmath numbers at :data:`DPS` digits. A
    constant has one value; for an expression in variables, an assignment where it is undefined
    (a root or logarithm of a negative number, a division by zero) gives None in its place.
    ``smooth`` is False for a floor, ceiling, factorial or binomial of something in variables:
    equal values at the assignments then prove nothing."""
    if not s or len(s) > MAX_CHARS or _REWRITTEN_RE.search(s):
        return None
    try:
        toks = _tokens(s)
    except _GiveUp:
        return None
    if not toks:
        return None
    try:
        r = _evaluate(toks, True)
        return None if r is None else (r[0], r[1], True, r[2])
    except _Inexact:
        pass
    except _ERRORS:
        return None
    try:
        r = _evaluate(toks, False)
    except (_Inexact, *_ERRORS):
        return None
    return None if r is None else (r[0], r[1], False, r[2])


@lru_cache(maxsize=4096)
def _wide_values(s: str) -> tuple | None:
    """Values of ``s`` at :data:`_WIDE_POINTS` (mpmath numbers, None where undefined), or None."""
    try:
        toks = _tokens(s)
    except _GiveUp:
        return None
    out = []
    for x0 in _WIDE_POINTS:  # one at a time: undefined at one of them is no reason to stop
        try:
            r = _evaluate(toks, False, (x0,))
        except (_Inexact, *_ERRORS):
            r = None
        out.append(None if r is None else r[0][0])
    return tuple(out)


#: Most decimal digits :func:`precise_constant` works at (beyond it: undecided).
MAX_PRECISE_DPS = 20_000
#: Commands whose conditioning :func:`precise_constant` does not track (a value near a zero of a
#: sine or a logarithm, a floor at an integer): constants holding them are not compared exactly.
_UNTRACKED = {*_TRIG, "\\log", "\\ln", "\\lfloor", "\\lceil"}


def _no_variables(name):
    raise _GiveUp


@lru_cache(maxsize=1024)
def precise_constant(s: str, min_dps: int = DPS) -> tuple | None:
    """``(value, relative error bound, digits)`` of a constant expression, or None.

    A rational constant is exact (a ``Fraction``, error 0). Otherwise the expression is evaluated
    with mpmath at a precision that grows with what floating point would lose: the spans of the
    operands of every sum (``2^{2019}-9`` needs 608 digits to keep the 9), the digits cancelled by
    a sum (``2^{1006}\\sqrt{2^{2010}+2}-2^{2011}`` is about 2 from two terms of 606 digits), the
    digits of literals and of large exponents; it is evaluated again until the precision covers
    them with :data:`DPS` digits to spare (at least ``min_dps``). None for an expression in variables, outside the
    subset, with a function whose conditioning is not tracked (trigonometric, logarithm, floor),
    or needing more than :data:`MAX_PRECISE_DPS` digits (an exact zero reached through floating
    point never settles)."""
    v = values(s)
    if v is None or v[1]:
        return None
    if v[2]:
        return (v[0][0], 0, DPS)
    toks = _tokens(s)
    if any(t[0] == "cmd" and t[1] in _UNTRACKED for t in toks):
        return None
    dps = max(DPS, min_dps)
    for _ in range(12):
        with mpmath.workdps(dps):
            p = _Parser(toks, _no_variables, False)
            try:
                val = mpmath.mpmathify(p.parse())
            except (_Inexact, *_ERRORS):
                return None
            if not mpmath.isfinite(val):
                return None
        need = DPS + 10 + math.ceil(p.span + p.lost)
        if need <= dps:
            return (val, mpmath.mpf(10) ** (math.ceil(p.lost) + 5 - dps), dps)
        if need > MAX_PRECISE_DPS:
            return None
        dps = min(MAX_PRECISE_DPS, max(need, 2 * dps))
    return None


def exact_compare(a: str, b: str) -> bool | None:
    """Two constants written exactly (no decimal point on either side) compared exactly: rational
    values by rational arithmetic, others at the precision :func:`precise_constant` finds
    (equal when they agree within its error bounds). No absolute tolerance: ``0`` is not
    ``\\frac{1}{2004!}``, and one digit changed in ``(2^{2019}-9)^{2018}`` is another value.
    None when either side is not such a constant (the tolerant comparison applies then)."""
    if "." in a or "." in b:
        return None
    pa = precise_constant(a)
    if pa is None:
        return None
    pb = precise_constant(b)
    if pb is None:
        return None
    if isinstance(pa[0], Fraction) and isinstance(pb[0], Fraction):
        return pa[0] == pb[0]
    first = _agree(pa, pb)
    if not first:
        return first
    # equal so far: equal values stay equal as the precision grows, near misses part
    more = 2 * max(pa[2], pb[2])
    if more > MAX_PRECISE_DPS:
        return first
    qa, qb = precise_constant(a, more), precise_constant(b, more)
    return first if qa is None or qb is None else _agree(qa, qb)


def _agree(pa, pb) -> bool | None:
    (x, ex, da), (y, ey, db) = pa, pb
    with mpmath.workdps(max(da, db)):
        x, y = mpmath.mpmathify(x), mpmath.mpmathify(y)
        if isinstance(x, mpmath.mpc) or isinstance(y, mpmath.mpc):
            return None
        ulp = mpmath.mpf(10) ** (5 - max(da, db))
        tol = (ex + ulp) * abs(x) + (ey + ulp) * abs(y)
        return bool(abs(x - y) <= tol)


def _scale(a, b):
    return max(mpmath.mpf(1), abs(a), abs(b))


def compare(a: str, b: str, *, tol_differ: float = 1e-6, tol_equal: float = 1e-20) -> bool | None:
    """Compare two plain LaTeX expressions by value, or None (undecided).

    ``False`` when they differ by more than ``tol_differ`` (relative to ``max(1, |a|, |b|)``) at
    some assignment of the variables (each name has its own value, so different variables, or a
    constant against a non-constant, differ). ``True`` when they are equal at every assignment
    (one constant value; or all three assignments, one of them negative, with the same
    variables on both sides, both smooth): exactly when both are rational, else to ``tol_equal``.
    An expression that is not smooth is also compared at three larger assignments, for
    "different" only. None otherwise: outside the subset, undefined somewhere, or close but not
    equal. Two constants written without a decimal point are compared exactly instead
    (:func:`exact_compare`): the tolerances are for decimals a human rounds.
    """
    va, vb = values(a), values(b)
    if va is None or vb is None:
        return None
    (xa, na, ea, sa), (xb, nb, eb, sb) = va, vb
    if not na and not nb:
        q = exact_compare(a, b)
        if q is not None:
            return q
    if len(xa) != len(xb):  # a constant (one value) against an expression in variables
        xa = xa * len(xb) if len(xa) == 1 else xa
        xb = xb * len(xa) if len(xb) == 1 else xb
    exact = ea and eb
    equal_everywhere = na == nb and (sa and sb or not na)
    with mpmath.workdps(DPS):
        for x, y in zip(xa, xb):
            if x is None or y is None:
                equal_everywhere = False
                continue
            if exact:
                if x == y:
                    continue
                equal_everywhere = False
                if abs(x - y) > Fraction(tol_differ) * max(1, abs(x), abs(y)):
                    return False
                continue
            x, y = mpmath.mpmathify(x), mpmath.mpmathify(y)
            d = abs(x - y)
            if d > tol_differ * _scale(x, y):
                return False
            if d > tol_equal * _scale(x, y) or _scale(x, y) > 1e15:
                equal_everywhere = False  # beyond 1e15, DPS digits cannot tell n from n + 1
    if equal_everywhere:
        return True
    if na and nb and na == nb and not (sa and sb):
        wa, wb = _wide_values(a), _wide_values(b)
        if wa is not None and wb is not None:
            with mpmath.workdps(DPS):
                for x, y in zip(wa, wb):
                    if x is not None and y is not None and abs(x - y) > tol_differ * _scale(x, y):
                        return False
    return None


_ZERO_DIV_RE = re.compile(r"(-?)\s*\\[dt]?frac\{(.*)\}\{\s*0+(?:\.0*)?\s*\}|(.*)/\s*0+(?:\.0*)?")


@lru_cache(maxsize=4096)
def divides_by_zero(s: str) -> bool:
    """True when ``s`` is ``\\frac{x}{0}`` (optionally negated) or ends in ``/0``, ``x`` in the
    subset: latex2sympy's value is then zoo or nan (an infinite or undefined number; nothing
    later in the expression can cancel it), which equals no number."""
    if len(s) > MAX_CHARS:
        return False
    m = _ZERO_DIV_RE.fullmatch(s.strip())
    if not m:
        return False
    x = m.group(2) if m.group(3) is None else m.group(3)
    if m.group(3) is not None and x.rstrip().endswith(("^", "_", "{", "(")):
        return False
    return values(x) is not None


#: Constants beyond this magnitude are compared by this module only (see :func:`is_huge`).
HUGE = mpmath.mpf(10) ** 100


def is_huge(s: str) -> bool:
    """True when ``s`` is a constant whose magnitude exceeds 10^100 (``100000!``, ``10^{400}``).
    Such an answer is compared here or not at all: against a gold outside the subset it is
    wrong, since sympy could spend seconds (a factorial of 10^10) establishing that."""
    v = values(s)
    if v is None or v[1]:
        return False
    x = v[0][0]
    with mpmath.workdps(DPS):
        return bool(abs(mpmath.mpmathify(x)) > HUGE)
