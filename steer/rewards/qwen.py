"""Qwen-style grader (spec evaluation.md §2), written anew from the published rules.

Extraction (one answer string per response): the Minerva form ``final answer is $X$. I hope``;
else the last ``\\boxed{}``; else the text after the last ``he answer is`` / ``final answer is``;
else the last ``Answer:`` line (the DAPO/AIME prompts ask for one; an addition); else the last
number in the text. Both sides then go through :func:`normalize` (``\\text{}``/``\\left``/
``\\right``/degrees/dollars/percent/spaces removed, ``\\dfrac`` -> ``\\frac``, ``\\frac12`` ->
``\\frac{1}{2}``, short ``x=`` prefixes dropped, thousands separators removed, unit words at the end
removed).

Comparison (:func:`answers_equal`), in order: case-insensitive string equality; both plain
numbers -> exact values (:func:`to_number`): an integer reference matches only that integer,
other values within :data:`REL_TOL` relative, against ``ref`` and, with the percentage leniency
(on by default, as in the published grader; ``qwen_strict`` has it off), ``ref/100`` and
``ref*100``; bracketed tuples/intervals and ``pmatrix`` rows element-wise (same bracket kinds,
same length, order-sensitive); single ``=`` equations as ``lhs - rhs`` up to sign; symbolic:
parse with the LaTeX grammar only (latex2sympy, never ``parse_expr``/``sympify``, which evaluate
Python), equal if ``a == b``; constants by value to 30 digits (no float overflow); anything
with an infinity or NaN only if structurally identical; otherwise ``simplify(a - b) == 0``.

Differences from the published grader (deliberate): integers exact, constants written without
a decimal point on both sides exact (rational arithmetic, or a precision that grows with the
magnitude: :func:`steer.rewards.quick.exact_compare`), 1e-6 instead of 1e-4 for decimals,
non-finite values never close to anything finite, no Python-expression parser, a gold that
carries its own ``\\boxed{}`` is unwrapped.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

import mpmath

from steer.rewards import quick
from steer.rewards.extract import (
    clean_gold,
    hopeless_answer,
    last_answer_line,
    last_boxed,
    split_top_level,
    strip_math_delims,
)

#: Relative tolerance for non-integer values (the published grader uses 1e-4, which accepts
#: 0.3333 for 1/3; 1e-6 is math-verify's six-decimal rounding). Integers compare exactly.
REL_TOL = 1e-6
#: Digits used to evaluate constant expressions (mpmath: no float overflow, 10^{400} stays finite).
EVAL_DIGITS = 30

_UNIT_WORDS = (
    "degrees",
    "degree",
    "units",
    "unit",
    "cm",
    "km",
    "meters",
    "meter",
    "inches",
    "inch",
    "feet",
    "foot",
    "ft",
    "hours",
    "hour",
    "minutes",
    "seconds",
    "dollars",
    "cents",
    "mph",
    "square",
    "sq",
)
_NUM_RE = re.compile(r"-?\d[\d,]*\.?\d*|-?\.\d+")


def extract_answer(response: str) -> str | None:
    """One answer string from a response (rules in the module docstring), not yet normalised."""
    m = re.findall(r"final answer is \$(.+?)\$\. I hope", response)
    if m:
        return m[-1]
    if "boxed" in response or "\\fbox" in response:
        b = last_boxed(response)
        if b is not None:
            return b
    for key in ("he answer is", "final answer is"):
        if key in response:
            ans = response.rsplit(key, 1)[1].strip().split("\n")[0].strip()
            return strip_math_delims(ans)
    line = last_answer_line(response)
    if line is not None:
        return strip_math_delims(line)
    nums = _NUM_RE.findall(response.replace("$", " "))
    if nums:
        return nums[-1]
    return None


def _fix_fracs(s: str) -> str:
    s = re.sub(r"\\frac\s*(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\sqrt\s*(\d+|[a-zA-Z])", r"\\sqrt{\1}", s)
    return s


def normalize(ans: str) -> str:
    """Heavy string normalisation of one answer (Qwen ``strip_string`` rules, re-expressed)."""
    s = str(ans).strip().replace("\n", "")
    s = strip_math_delims(s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\:", "")
    s = s.replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ", "", s)
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    for cmd in ("\\text", "\\textbf", "\\mathrm", "\\mbox", "\\mathbf"):
        s = re.sub(re.escape(cmd) + r"\s*\{([^{}]*)\}", r"\1", s)
    s = s.strip()
    # unit words at the end ("12 cm", "30 degrees")
    for _ in range(2):
        for u in _UNIT_WORDS:
            s = re.sub(r"(?<=[\d}\s])\s*" + re.escape(u) + r"(\^\d|\^\{\d\})?\s*$", "", s)
    s = s.strip()
    # short assignment prefix: "x = 5", "k=3"
    if s.count("=") == 1:
        lhs, rhs = s.split("=")
        if len(lhs.strip()) <= 2:
            s = rhs
    s = _fix_fracs(s)
    s = s.replace(" ", "")
    s = re.sub(r"(^|[^\d])\.(\d)", r"\g<1>0.\2", s)  # .5 -> 0.5
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = s.rstrip(".")
    if s.endswith(".0") and re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


#: Plain numbers: integers, decimals (optional exponent, short), ``a/b`` and ``\\frac{a}{b}``.
_DEC_RE = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d{1,3})?")
_RATIO_RE = re.compile(r"(-?\d+)/(\d+)|(-?)\\frac\{(-?\d+)\}\{(\d+)\}")
#: Longest digit string turned into an exact number (beyond it: not a plain number).
MAX_NUMBER_CHARS = 400


def to_number(s: str) -> Fraction | None:
    """Exact value of a plain number string (``12``, ``-0.5``, ``1,000``, ``3/4``, ``\\frac{3}{4}``,
    ``1e5``), else None. Never infinite or NaN: ``inf``/``nan`` are not numbers here."""
    if len(s) > MAX_NUMBER_CHARS:
        return None
    t = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    if _DEC_RE.fullmatch(t):
        return Fraction(t)
    m = _RATIO_RE.fullmatch(t)
    if not m:
        return None
    if m.group(1) is not None:
        num, den = int(m.group(1)), int(m.group(2))
    else:
        num, den = int(m.group(4)) * (-1 if m.group(3) else 1), int(m.group(5))
    return Fraction(num, den) if den else None


def numbers_equal(p: Fraction, r: Fraction, *, rel_tol: float = REL_TOL) -> bool:
    """An integer reference matches only the same integer; any other exact value matches a
    prediction within ``rel_tol`` (relative)."""
    if r.denominator == 1 or p == r:
        return p == r
    return abs(p - r) <= Fraction(rel_tol) * max(abs(p), abs(r))


_COMMA_RE = re.compile(",")


def _split_top(s: str) -> list[str]:
    """The items of ``s`` between its top-level commas, stripped."""
    return [p.strip() for p in split_top_level(s, _COMMA_RE)]


def _brackets(s: str) -> tuple[str, str, str] | None:
    if len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}":
        # make sure the outer pair encloses the whole string
        depth = 0
        for i, ch in enumerate(s):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth == 0 and i < len(s) - 1:
                return None
        return s[0], s[1:-1], s[-1]
    return None


def _matrix_rows(s: str) -> list[list[str]] | None:
    m = re.fullmatch(r"\\begin\{[pb]matrix\}(.*)\\end\{[pb]matrix\}", s)
    if not m:
        return None
    rows = [r for r in m.group(1).split("\\") if r.strip()]
    return [[c.strip() for c in r.split("&")] for r in rows]


@lru_cache(maxsize=4096)
def parse_latex(s: str):
    """sympy object for a normalised answer through the LaTeX grammar (latex2sympy) only, else None.

    Never sympy's ``parse_expr``/``sympify`` on text: those evaluate Python.
    """
    from latex2sympy2_extended import latex2sympy

    try:
        return latex2sympy(s)
    except Exception:
        return None


def _has_nonfinite(e) -> bool:
    import sympy

    try:
        return bool(e.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan))
    except Exception:
        return True


def _misparsed(e) -> bool:
    """True when a parse holds ``zoo`` or ``nan`` (a written answer is never such a value)."""
    import sympy

    try:
        return bool(e.has(sympy.zoo, sympy.nan))
    except Exception:
        return True


def _constant_value(e):
    """High-precision complex value of a constant expression, or None (symbols, sets, not finite)."""
    import sympy

    if not isinstance(e, sympy.Expr) or e.free_symbols or not e.is_number:
        return None
    try:
        v = e.evalf(EVAL_DIGITS)
        re_, im_ = v.as_real_imag()
        if not (re_.is_Number and im_.is_Number) or not (re_.is_finite and im_.is_finite):
            return None
        return sympy.Float(re_, EVAL_DIGITS), sympy.Float(im_, EVAL_DIGITS)
    except Exception:
        return None


def _quick_equal(a: str, b: str, rel_tol: float) -> bool | None:
    """The comparison below for plain arithmetic, without sympy (:mod:`steer.rewards.quick`):
    constants by value (an integer reference exactly: rational arithmetic is exact there),
    expressions in variables by their values at three assignments; None when undecided."""
    va, vb = quick.values(a), quick.values(b)
    if va is not None and vb is None and quick.is_huge(a):
        return False  # a gigantic constant against a reference outside the subset
    if va is None or vb is None:
        return None
    (xa, na, ea, _), (xb, nb, eb, _) = va, vb
    if not na and not nb:
        q = quick.exact_compare(a, b)  # both written exactly: no tolerance
        if q is not None:
            return q
        x, y = xa[0], xb[0]
        if ea and eb:
            if y.denominator == 1 or x == y:
                return x == y
            return abs(x - y) <= Fraction(rel_tol) * max(abs(x), abs(y))
        with mpmath.workdps(quick.DPS):
            x, y = mpmath.mpmathify(x), mpmath.mpmathify(y)
            d, scale = abs(x - y), max(abs(x), abs(y))
            if mpmath.im(y) == 0 and abs(mpmath.re(y) - mpmath.nint(mpmath.re(y))) <= mpmath.mpf(10) ** (
                5 - quick.DPS
            ):
                return bool(d <= mpmath.mpf(10) ** (5 - quick.DPS) * max(1, scale))
            return bool(d <= rel_tol * scale) if scale else bool(d == 0)
    return quick.compare(a, b)


#: Values given to the free symbols (the k-th symbol in name order gets ``a + k * step``) when
#: two expressions are evaluated before ``simplify``: one assignment positive, one negative.
_TEST_POINTS = ((0.7390851332151607, 0.1732050807568877), (-0.5671432904097838, -0.1414213562373095))


def _differ_at_points(x, y) -> bool:
    """True when ``x`` and ``y`` (sympy expressions in the same or other symbols) take values
    that differ by more than 1e-6 (relative) at one of :data:`_TEST_POINTS`: then ``x - y`` is
    not identically zero and ``simplify`` cannot make it 0, so its (often slow) run is skipped.
    Anything that does not evaluate to two finite numbers there says nothing (False)."""
    import sympy

    try:
        syms = sorted(x.free_symbols | y.free_symbols, key=str)
        if not syms:
            return False
        for a, step in _TEST_POINTS:
            subs = {s: sympy.Float(a + k * step, EVAL_DIGITS) for k, s in enumerate(syms)}
            vx, vy = x.evalf(EVAL_DIGITS, subs=subs), y.evalf(EVAL_DIGITS, subs=subs)
            if not (vx.is_number and vy.is_number) or _has_nonfinite(vx) or _has_nonfinite(vy):
                continue
            cx, cy = complex(vx), complex(vy)
            if abs(cx - cy) > REL_TOL * max(1.0, abs(cx), abs(cy)):
                return True
    except Exception:
        return False
    return False


def _symbolic_equal(a: str, b: str, *, rel_tol: float = REL_TOL) -> bool:
    """``a`` (prediction) equals ``b`` (reference) after parsing both with the LaTeX grammar.

    An infinity, NaN or ``zoo`` on either side matches only the structurally same object. An
    integer reference matches only a value that is that integer to :data:`EVAL_DIGITS` digits.
    Constant expressions are compared by value (no ``simplify``); others by ``==`` or
    ``simplify(a - b) == 0``, which is skipped when the two differ at a test point
    (:func:`_differ_at_points`).
    """
    import sympy

    q = _quick_equal(a, b, rel_tol)
    if q is not None:
        return q
    x, y = parse_latex(a), parse_latex(b)
    if x is None or y is None:
        return False
    if _misparsed(x) or _misparsed(y):
        return False  # zoo/nan: a misreading (\\gamma^{2}-1), equal to every other one
    try:
        if x == y:
            return True
        if getattr(x, "is_Rational", False) and getattr(y, "is_Rational", False):
            return False  # two different rationals (an integer of 1,200 digits and its near miss)
    except Exception:
        return False
    if _has_nonfinite(x) or _has_nonfinite(y):
        return False
    try:
        if isinstance(x, sympy.MatrixBase) or isinstance(y, sympy.MatrixBase):
            if not (isinstance(x, sympy.MatrixBase) and isinstance(y, sympy.MatrixBase)):
                return False
            return x.shape == y.shape and bool(sympy.Matrix(x).equals(sympy.Matrix(y)))
    except Exception:
        return False
    vx, vy = _constant_value(x), _constant_value(y)
    if vx is not None and vy is not None:
        dx = abs(sympy.Float(vx[0] - vy[0], EVAL_DIGITS)) + abs(sympy.Float(vx[1] - vy[1], EVAL_DIGITS))
        scale = max(abs(vx[0]) + abs(vx[1]), abs(vy[0]) + abs(vy[1]))
        if isinstance(y, sympy.Integer) or (y.is_integer and vy[1] == 0):
            return bool(dx <= sympy.Float(10) ** (5 - EVAL_DIGITS) * max(1, scale))
        return bool(dx <= rel_tol * scale) if scale else bool(dx == 0)
    if (vx is None) != (vy is None):
        return False  # a constant against an expression with symbols (or a set, a tuple)
    if _differ_at_points(x, y):
        return False
    try:
        return bool(sympy.simplify(x - y) == 0)
    except Exception:
        return False


_CMD_RE = re.compile(r"\\[a-zA-Z]+")
_CUP_RE = re.compile(r"\\cup(?![a-zA-Z])")


def _letters(s: str) -> set[str]:
    return {c for c in _CMD_RE.sub(" ", s) if c.isalpha()}


def _same_left_side(pl: str, pr: str, rl: str, rr: str) -> bool | None:
    """Two equations with the same left side (``f(x)=...``), compared by their right sides
    without sympy, or None. The rule below compares ``pl-pr`` with ``rl-rr`` and with its
    negative: with one left side on both, the first is ``pr`` against ``rr``, and the second
    (``2 f(x) = pr + rr``) cannot hold when a letter of the left side (``f``) appears on neither
    right side; so the quick evaluator's verdict on the right sides is the verdict."""
    if pl.strip() != rl.strip() or not _letters(pl) - _letters(pr) - _letters(rr):
        return None
    return quick.compare(pr, rr)


_PM_RE = re.compile(r"\\pm(?![a-zA-Z])")
_SET_WORDS = re.compile(r"\\(?:in|mid|setminus|cap|mp|emptyset|varnothing)(?![a-zA-Z])|[:|]")


def _interval(s: str) -> tuple | None:
    """``(lo, hi, left bracket, right bracket)`` of an interval with plain ends, or None."""
    b = _brackets(s)
    if b is None or b[0] not in "([" or b[2] not in ")]":
        return None
    items = _split_top(b[1])
    if len(items) != 2 or any(quick.values(x) is None and x.lstrip("+-") != "\\infty" for x in items):
        return None
    inf = [x.lstrip("+-") == "\\infty" for x in items]
    # sympy makes an infinite end open: [-\infty, 2) is (-\infty, 2)
    return (items[0], items[1], "(" if inf[0] else b[0], ")" if inf[1] else b[2])


def _ends_differ(a: str, b: str) -> bool:
    """True when two interval ends (plain expressions or infinities) certainly differ."""
    ia, ib = a.lstrip("+-") == "\\infty", b.lstrip("+-") == "\\infty"
    if ia or ib:
        return ia != ib or a.startswith("-") != b.startswith("-")
    return quick.compare(a, b) is False


def _shape_verdict(p: str, r: str) -> bool | None:
    """Answers that the symbolic comparison below can only find equal when latex2sympy builds
    the same object (sets, unions, ``a \\pm b``), decided without it where certain; None otherwise.

    * an equation against an expression without ``=``: never equal (an ``Eq`` is no expression
      and ``simplify`` of their difference fails); a matrix, or a division by zero
      (:func:`steer.rewards.quick.divides_by_zero`), against a number: never equal;
    * a union (``\\cup``) or ``a \\pm b`` (a two-element set) against a plain expression: never
      equal; two unions whose intervals, or two ``\\pm`` forms whose two values, differ by value:
      not equal (equal objects have equal values).
    """
    if ("=" in p) != ("=" in r):
        return False
    if quick.divides_by_zero(p) != quick.divides_by_zero(r):
        other = r if quick.divides_by_zero(p) else p
        return False if quick.values(other) is not None else None  # zoo (or nan) is no number
    if (_matrix_rows(p) is None) != (_matrix_rows(r) is None):
        other = r if _matrix_rows(p) is not None else p
        return False if quick.values(other) is not None else None  # a matrix is no number
    if _SET_WORDS.search(p) or _SET_WORDS.search(r):
        return None
    cp, cr = split_top_level(p, _CUP_RE), split_top_level(r, _CUP_RE)
    if len(cp) > 1 or len(cr) > 1:
        if len(cp) == 1 or len(cr) == 1:
            other = p if len(cp) == 1 else r
            return False if quick.values(other) is not None else None
        ip, ir = [_interval(x.strip()) for x in cp], [_interval(x.strip()) for x in cr]
        if None in ip or None in ir:
            return None

        def same(a, b):
            return False if a[2:] != b[2:] or _ends_differ(a[0], b[0]) or _ends_differ(a[1], b[1]) else None

        if any(all(same(a, b) is False for b in ir) for a in ip) or any(
            all(same(a, b) is False for a in ip) for b in ir
        ):
            return False
        return None
    pp, pr_ = split_top_level(p, _PM_RE), split_top_level(r, _PM_RE)
    if len(pp) == 2 or len(pr_) == 2:
        if len(pp) > 2 or len(pr_) > 2:
            return None
        if len(pp) == 1 or len(pr_) == 1:
            other = p if len(pp) == 1 else r
            return False if quick.values(other) is not None else None
        vals = []
        for a, b in (pp, pr_):
            if not b or (a and quick.values(a) is None) or quick.values(b) is None:
                return None
            vals.append([f"{a}+({b})", f"{a}-({b})"])
        if any(all(quick.compare(x, y) is False for y in vals[1]) for x in vals[0]) or any(
            all(quick.compare(x, y) is False for x in vals[0]) for y in vals[1]
        ):
            return False
    return None


def answers_equal(pred: str, ref: str, *, include_percentage: bool = True, depth: int = 0) -> bool:
    """Compare two normalised answers (rules in the module docstring)."""
    if pred is None or ref is None:
        return False
    p, r = pred.strip(), ref.strip()
    if p.lower() == r.lower():
        return True
    fp, fr = to_number(p), to_number(r)
    if fp is not None and fr is not None:
        refs = [fr, fr / 100, fr * 100] if include_percentage else [fr]
        tol = REL_TOL if "." in p + r else 0.0  # numbers written exactly compare exactly
        return any(numbers_equal(fp, x, rel_tol=tol) for x in refs)
    if depth > 3:
        return False
    mp, mr = _matrix_rows(p), _matrix_rows(r)
    if mp is not None and mr is not None:
        if len(mp) != len(mr) or any(len(a) != len(b) for a, b in zip(mp, mr)):
            return False
        return all(
            answers_equal(a, b, include_percentage=include_percentage, depth=depth + 1)
            for ra, rb in zip(mp, mr)
            for a, b in zip(ra, rb)
        )
    bp, br = _brackets(p), _brackets(r)
    ip = _split_top(bp[1] if bp else p)
    ir = _split_top(br[1] if br else r)
    if len(ip) > 1 or len(ir) > 1:
        if bp and br and (bp[0], bp[2]) != (br[0], br[2]):
            return False
        if len(ip) != len(ir):
            return False
        return all(
            answers_equal(a, b, include_percentage=include_percentage, depth=depth + 1)
            for a, b in zip(ip, ir)
        )
    if p.count("=") == 1 and r.count("=") == 1:
        pl, pr_ = p.split("=")
        rl, rr = r.split("=")
        q = _same_left_side(pl, pr_, rl, rr)
        if q is not None:
            return q
        a, b = f"({pl})-({pr_})", f"({rl})-({rr})"
        return _symbolic_equal(a, b) or _symbolic_equal(a, f"-({b})")
    q = _shape_verdict(p, r)
    if q is not None:
        return q
    return _symbolic_equal(p, r)


def gold_answer(gold: str) -> str:
    """The reference string of a gold: cleaned, and the content of its last ``\\boxed{}`` when it
    has one (some golds are whole solutions or carry their own box)."""
    g = clean_gold(str(gold))
    if "\\boxed" in g or "\\fbox" in g:
        b = last_boxed(g)
        if b is not None:
            g = clean_gold(b)
    return g


def score_qwen(response: str, gold: str, *, include_percentage: bool = True) -> tuple[bool, str | None, str]:
    """Return ``(correct, extracted prediction, reason)`` for one (response, gold) pair.

    ``include_percentage``: the published grader's percentage leniency (an answer equal to the
    reference times 100 or divided by 100 is right); :func:`score_qwen_strict` turns it off.
    """
    raw = extract_answer(response)
    if raw is None:
        return False, None, "no answer"
    ref = normalize(gold_answer(gold))
    why = hopeless_answer(raw, ref)
    if why:
        return False, raw[:200], why
    pred = normalize(raw)
    ok = answers_equal(pred, ref, include_percentage=include_percentage)
    return ok, pred, "ok" if ok else "mismatch"


def score_qwen_strict(response: str, gold: str) -> tuple[bool, str | None, str]:
    """:func:`score_qwen` without the percentage leniency."""
    return score_qwen(response, gold, include_percentage=False)
