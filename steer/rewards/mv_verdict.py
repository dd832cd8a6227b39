"""math-verify's verdict on two answers without latex2sympy or sympy (:func:`quick_verdict`).

Both answers get math-verify's own LaTeX normalisation (:func:`_mv_normal_form`), are read as
latex2sympy would build them (:func:`steer.rewards.mv_shape._shape`), and are compared as
math-verify's ``verify`` compares those objects (:func:`_cmp`): plain expressions by value with
:mod:`steer.rewards.quick`, sets, tuples, intervals and unions by their elements or ends. Every
verdict is certain or None (undecided: the caller runs math-verify).
"""

from __future__ import annotations

import re
from functools import lru_cache

from latex2sympy2_extended.math_normalization import normalize_latex
from math_verify import LatexExtractionConfig

from steer.rewards import quick
from steer.rewards.mv_shape import (
    _CMD_RE,
    _SETS,
    _const,
    _letters,
    _ordered,
    _shape,
)

#: math-verify's normalisation of LaTeX, as its parser applies it to the gold
#: (``LatexExtractionConfig(boxed_match_priority=0)``, the scorer's gold configuration).
_NORM = LatexExtractionConfig(boxed_match_priority=0).normalization_config


@lru_cache(maxsize=8192)
def _mv_normal_form(s: str) -> str:
    """``s`` after math-verify's own LaTeX normalisation (the one its parser applies first)."""
    try:
        return normalize_latex(s, _NORM)
    except Exception:
        return s


_DIGITS_RE = re.compile(r"\d")


def _digits_missing(text: str, got: str) -> bool:
    """True when ``text`` holds text (``\\text{...}``, ``\\mbox``, ``\\mathrm``), where math-verify's
    normalisation may cut it short, and a digit of ``text`` is missing from ``got`` (a reading of
    it). Without text the normalisation rewrites numbers (``0.5`` is ``\\frac{1}{2}``) but cuts
    nothing, so it is not checked."""
    if "\\text" not in text and "\\mbox" not in text and "\\mathrm" not in text:
        return False
    want: dict[str, int] = {}
    for d in _DIGITS_RE.findall(text):
        want[d] = want.get(d, 0) + 1
    return any(got.count(d) < n for d, n in want.items())


_SCALAR_CMDS = {
    "\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\pi", "\\cdot", "\\times", "\\div", "\\log", "\\ln",
    "\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\arcsin", "\\arccos", "\\arctan",
    "\\lfloor", "\\rfloor", "\\lceil", "\\rceil", "\\binom", "\\circ", "\\left", "\\right", "\\quad",
    "\\qquad", "\\max", "\\min", "\\exp", "\\theta", "\\alpha", "\\beta", "\\gamma", "\\lambda",
    "\\mu", "\\omega", "\\phi", "\\sigma", "\\rho", "\\tau", "\\delta", "\\epsilon", "\\varepsilon",
}  # fmt: skip
_SCALAR_RE = re.compile(r"[A-Za-z0-9\s+\-*/^_{}().!'%]*")


def _scalar_like(node) -> bool:
    """True for a leaf that math-verify's parser reads as a plain expression (never a set, a
    relation, a matrix or text): the quick evaluator's subset, or a whitelist of characters and
    commands."""
    if node[0] in ("inf", "pct", "zoo"):
        return True
    if node[0] != "leaf":
        return False
    s = node[1]
    if quick.values(s) is not None:
        return True
    return bool(_SCALAR_RE.fullmatch(_CMD_RE.sub(" ", s.replace("\\%", "%").replace("\\,", " ")))) and all(
        c in _SCALAR_CMDS for c in _CMD_RE.findall(s)
    )


def _candidates(n) -> list[str]:
    """The values math-verify may compare a leaf by: a percentage both as x and as x/100."""
    return [n[1], f"({n[1]})/100"] if n[0] == "pct" else [n[1]]


@lru_cache(maxsize=16384)
def _cmp_leaves(g, p) -> bool | None:
    """Two plain expressions (leaves, infinities, percentages) by value; a division by zero
    (sympy's zoo or nan) equals no number."""
    if g[0] == "zoo" or p[0] == "zoo":
        other = p if g[0] == "zoo" else g
        return False if other[0] == "leaf" and quick.values(other[1]) is not None else None
    if g[0] == "pct" or p[0] == "pct":
        if "inf" in (g[0], p[0]):
            return None
        if all(quick.compare(b, a) is False for a in _candidates(g) for b in _candidates(p)):
            return False
        return None
    if g[0] == "inf" or p[0] == "inf":
        if g[0] == p[0]:
            return g[1] == p[1]
        other = p if g[0] == "inf" else g
        return False if quick.values(other[1]) is not None else None  # an infinity is no number
    return quick.compare(p[1], g[1])


def _cmp_eqs(g, p) -> bool | None:
    """Two assignments: the same left side compares the right sides; different unknowns on the
    left, neither of which appears on the other side, are different relations (math-verify's
    ``solve`` gives each in terms of its own unknown)."""
    if g[1] == p[1]:
        return _cmp(g[2], p[2])
    if g[2][0] != "leaf" or p[2][0] != "leaf":
        return None
    hg, hp = g[1][0].lower(), p[1][0].lower()
    if hg != hp and hg not in _letters(p[1] + " " + p[2][1]) and hp not in _letters(g[1] + " " + g[2][1]):
        return False
    return None


def _constant_node(n) -> bool:
    """True for an element whose place in a sorted set is fixed by its value (math-verify sorts
    set elements by their numeric value before comparing them in pairs)."""
    if n[0] in ("leaf", "inf"):
        return _const(n) is not None
    if n[0] in ("tup", "iv"):
        return all(_constant_node(x) for x in (n[1] if n[0] == "tup" else n[1:3]))
    return False


def _distinct(nodes) -> bool:
    """True when the elements are pairwise certainly different (so sympy keeps them all)."""
    return all(_cmp(nodes[i], nodes[j]) is False for i in range(len(nodes)) for j in range(i + 1, len(nodes)))


def _cmp_ordered(gs, ps) -> bool | None:
    if len(gs) != len(ps):
        return False
    r = [_cmp(a, b) for a, b in zip(gs, ps)]
    if False in r:
        return False
    return True if all(r) else None


def _cmp_matching(gs, ps, p_is_tuple: bool = False) -> bool | None:
    """math-verify's comparison of a finite set with a set or tuple: both sorted, then in
    pairs; here as a matching, decided only when certain."""
    m = [[_cmp(a, b) for b in ps] for a in gs]
    if any(all(m[i][j] is False for i in range(len(gs))) for j in range(len(ps))):
        return False
    if any(all(x is False for x in row) for row in m):
        return False
    if not (_distinct(gs) and (p_is_tuple or _distinct(ps))):
        return None  # sympy drops repeated elements of a set: the sizes are not known
    if len(gs) != len(ps):
        return False
    if all(_constant_node(x) for x in gs + ps):
        used = set()
        for row in m:
            js = [j for j, x in enumerate(row) if x is True and j not in used]
            if len(js) != 1:
                return None
            used.add(js[0])
        return True
    return None


def _points(node):
    """A union of intervals and finite sets as ``[(kind, ...)]`` for :func:`_same_set`."""
    if node[0] == "union":
        out = []
        for n in node[1]:
            sub = _points(n)
            if sub is None:
                return None
            out += sub
        return out
    if node[0] == "iv":
        return [node]
    if node[0] == "set":
        return [("pt", x) for x in node[1]] if all(x[0] == "leaf" for x in node[1]) else None
    return None


def _same_set(a, b) -> bool | None:
    """Set equality of two unions of intervals and points (math-verify: an empty symmetric
    difference), decided on the ordered list of their distinct ends: membership is the same
    between consecutive ends, so it is checked at every end and in every gap."""
    pa, pb = _points(a), _points(b)
    if pa is None or pb is None:
        return None
    ends = []
    for comp in pa + pb:
        for leaf in comp[1:3] if comp[0] == "iv" else comp[1:2]:
            c = _const(leaf)
            if c is None:
                return None
            ends.append(c)
    classes: list = []
    index = []
    for c in ends:
        for k, rep in enumerate(classes):
            o = _ordered(c, rep)
            if o is None:
                return None
            if o == 0:
                index.append(k)
                break
        else:
            classes.append(c)
            index.append(len(classes) - 1)
    order = sorted(range(len(classes)), key=lambda k: classes[k][0])
    for u, v in zip(order, order[1:]):
        if _ordered(classes[u], classes[v]) != -1:
            return None
    rank = {k: r for r, k in enumerate(order)}
    it = iter(index)
    comps = []
    for comp in pa + pb:
        if comp[0] == "iv":
            lo, hi = rank[next(it)], rank[next(it)]
            comps.append((lo, hi, comp[3], comp[4]))
        else:
            r = rank[next(it)]
            comps.append((r, r, False, False))
    na = len(pa)

    def member(cs, probe):  # probe 2r+1: at end r; probe 2r: in the gap below end r
        for lo, hi, lopen, ropen in cs:
            if probe % 2:
                r = probe // 2
                if (lo < r or lo == r and not lopen) and (r < hi or r == hi and not ropen):
                    return True
            elif lo < probe // 2 <= hi and lo != hi:
                return True
        return False

    for probe in range(2 * len(classes) + 1):
        if member(comps[:na], probe) != member(comps[na:], probe):
            return False
    return True


def _single(n):
    """A non-set answer as math-verify's one-element set, or None when it may not be a plain
    expression."""
    return ("set", [n], False) if _scalar_like(n) else None


def _cmp_sets(g, p) -> bool | None:
    """math-verify's comparison when either side is an interval, tuple, finite set or union."""
    a = g if g[0] in _SETS else _single(g)
    b = p if p[0] in _SETS else _single(p)
    if a is None or b is None:
        return None
    if a[0] == "iv" and b[0] == "iv":
        if a[3:] != b[3:]:
            return False
        r = [_cmp(a[1], b[1]), _cmp(a[2], b[2])]
        return False if False in r else (True if all(r) else None)
    if a[0] == "union" or b[0] == "union":
        if a[0] == "tup" or b[0] == "tup":
            return False  # a tuple is no set: math-verify compares it with nothing but tuples and sets
        return _same_set(a, b)
    if a[0] == "iv" or b[0] == "iv":
        iv, other = (a, b) if a[0] == "iv" else (b, a)
        if other[0] not in ("set", "tup"):
            return None
        if not (iv[3] and iv[4]):
            return False  # only an open interval is also read as a pair
        if other[0] == "set" and not _distinct(other[1]):
            return None  # sympy drops repeated elements of a set
        if len(other[1]) != 2:
            return False
        ends = [iv[1], iv[2]]
        if a[0] == "iv":  # the gold pair against the answer in its written order
            return _cmp_ordered(ends, b[1]) if b[0] == "tup" or b[2] else None
        return _cmp_ordered(a[1], ends) if a[0] == "tup" else _cmp_matching(a[1], ends, True)
    if a[0] == "tup" and b[0] == "tup":
        return _cmp_ordered(a[1], b[1])
    if a[0] == "tup":  # a gold tuple against a set: in the set's written order
        if not b[2]:
            return False if len(b[1]) == 1 else None
        if not _distinct(b[1]):
            return None
        return _cmp_ordered(a[1], b[1])
    return _cmp_matching(a[1], b[1], b[0] == "tup")


def _cmp(g, p) -> bool | None:
    """math-verify's verdict on two structural readings (gold first), or None when uncertain."""
    eqs = ("eq", "rel")
    if g[0] in eqs and p[0] in eqs:
        return _cmp_eqs(g, p) if g[0] == p[0] == "eq" else None
    if p[0] in eqs:  # an equation answer against a gold that is none: its right side
        return None if p[2] is None else _cmp(g, p[2])
    if g[0] == "eq":
        return _cmp(g[2], p)  # an assignment gold against an answer that is no equation
    if g[0] == "rel":
        # an equation gold against a plain expression: False unless math-verify reads it as an
        # assignment (its left side only symbols), and then its right side is compared
        if p[0] not in ("leaf", "inf", "pct", "zoo") or not _scalar_like(p) or g[2] is None:
            return None
        return False if _cmp(g[2], p) is False else None
    if g[0] == "mat" or p[0] == "mat":
        return _cmp_matrices(g, p)
    if g[0] in _SETS or p[0] in _SETS:
        return _cmp_sets(g, p)
    return _cmp_leaves(g, p)


def _cmp_matrices(g, p) -> bool | None:
    if g[0] == p[0] == "mat":
        if len(g[1]) != len(p[1]) or len(g[1][0]) != len(p[1][0]):
            return False  # math-verify: shapes differ
        return _cmp_ordered([x for r in g[1] for x in r], [x for r in p[1] for x in r])
    other = p if g[0] == "mat" else g
    if other[0] == "leaf" and quick.values(other[1]) is not None:
        return False  # a matrix is no number
    return None


def _known(node) -> bool:
    """True when every expression in an answer's reading is in the quick evaluator's subset, so
    math-verify's parser reads the answer as this structure (an answer it cannot parse is
    extracted otherwise, and then nothing here applies)."""
    k = node[0]
    if k == "leaf":
        return quick.values(node[1]) is not None
    if k in ("inf", "pct", "zoo", "iv", "mat"):
        return True
    if k in ("tup", "set", "union"):
        return all(_known(n) for n in node[1])
    if k == "eq":
        return _known(node[2])
    if k == "rel":
        return node[2] is not None and quick.values(node[1]) is not None and _known(node[2])
    return False


def _quick(gold: str, pred: str) -> bool | None:
    """The structural pre-check: both answers read (:func:`_shape`), the answer entirely in the
    known subset, then :func:`_cmp`. A gold with parts outside it is still read: if math-verify
    cannot parse such a gold, every answer but the same string is wrong there too."""
    if _PLAIN_NUMBER_RE.fullmatch(gold) and _PLAIN_NUMBER_RE.fullmatch(pred):
        return _cmp_leaves(("leaf", gold), ("leaf", pred))  # what the reading gives, at once
    g, p = _shape(gold), _shape(pred)
    if g is None or p is None or not _known(p):
        return None
    return _cmp(g, p)


_PLAIN_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def quick_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict without latex2sympy or sympy, or None (undecided).

    Both strings get math-verify's normalisation and are read as latex2sympy would build them
    (:func:`_shape`: intervals, tuples, finite sets, unions, ``\\pm``, assignments, equations,
    percentages, degrees, matrices, plain expressions), then compared as math-verify's
    ``verify`` compares those objects (:func:`_cmp`). Plain expressions go to
    :func:`steer.rewards.quick.compare`: values that differ beyond 1e-6 (relative to
    ``max(1, |x|)``) are wrong (math-verify needs equality to six decimals or a zero
    ``simplify``), constants equal to 20 digits are right; expressions in variables are right
    when equal at every assignment (and smooth). Anything uncertain is undecided.
    """
    g, a = _mv_normal_form(gold), _mv_normal_form(answer)
    if _digits_missing(gold, g) or _digits_missing(answer, a):
        return None  # the normalisation kept part of it (``4122 \\text{ (min)}, 6049`` -> ``4122``)
    q = _quick(g, a)
    if q is None and quick.is_huge(a) and quick.values(g) is None:
        return False  # a gigantic constant against a gold outside the subset (see quick.is_huge)
    return q
