"""The structural reading of an answer as math-verify's parser builds it, without sympy.

:func:`_shape` reads a normalised answer string as a tree of nodes (below): intervals, tuples,
finite sets, unions, ``\\pm``, assignments, equations, percentages, degrees, matrices and plain
expressions, whose values :mod:`steer.rewards.quick` computes. Anything it does not know for sure
gives None, and the caller leaves the answer to math-verify. Sizes are bounded
(:data:`MAX_STRUCT_CHARS`, :data:`MAX_ITEMS`, :data:`MAX_STRUCT_DEPTH`). The comparison of two
readings is :mod:`steer.rewards.mv_verdict`.
"""

from __future__ import annotations

import re
from functools import cache

import mpmath

from steer.rewards import quick
from steer.rewards.extract import split_top_level

_ASSIGN_RE = re.compile(
    r"\s*([A-Za-z](?:_\{?\w{1,3}\}?|_\{[\w+\-]{1,6}\})?(?:\([a-z](?:,\s*[a-z])*\))?)\s*=\s*([^=]+)"
)
_CMD_RE = re.compile(r"\\[a-zA-Z]+")
_SPACING_RE = re.compile(r"^(?:\\quad|\\qquad|\\[,;: !])+")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_INF = {"\\infty": 1, "+\\infty": 1, "-\\infty": -1}
#: Relations other than "=" (and "=" inside them), and separators the pre-check does not read.
_RELATION_RE = re.compile(
    r"[<>;:|]|\\(?:le|ge|ne|neq|leq|geq|leqslant|geqslant|approx|equiv|sim|to|in|cup|cap|pm|mp)(?![a-zA-Z])"
)
#: Bounds of the structural pre-check: longer answers, more items or deeper nesting are left to
#: math-verify.
MAX_STRUCT_CHARS = 1000
MAX_ITEMS = 64
MAX_STRUCT_DEPTH = 4


def _letters(s: str) -> set[str]:
    """Lower-cased letters of ``s`` outside LaTeX command names (``\\frac`` has none)."""
    return {c.lower() for c in _CMD_RE.sub(" ", s) if c.isalpha()}


def _top_split(s: str, sep: str) -> list[str]:
    """``s`` cut at the occurrences of ``sep`` outside brackets and braces."""
    return split_top_level(s, _literal(sep))


@cache
def _literal(sep: str) -> re.Pattern:
    return re.compile(re.escape(sep))


def _encloses(s: str, open_len: int, close_len: int) -> bool:
    """True when the bracket opening ``s`` closes at its very end (``(1,2)`` but not
    ``(1,2)\\cup(3,4)``)."""
    depth = 0
    for i, ch in enumerate(s):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and i < len(s) - close_len:
            return False
    return depth == 0 and len(s) >= open_len + close_len


# Nodes of the structural reading of an answer, as math-verify's parser builds it:
#   ("leaf", s)  an expression (compared by value with the quick evaluator)
#   ("inf", +1 | -1)
#   ("pct", x)  a percentage; ("zoo", s) an expression ending in a division by zero
#   ("iv", lo, hi, left_open, right_open)  an interval with constant ends, lo < hi
#   ("tup", [nodes])  a tuple (ordered)
#   ("set", [nodes], order)  a finite set; ``order`` True when the written order is kept
#                             (a plain list or \{...\}), False for a ± expansion or a
#                             scalar seen as a one-element set
#   ("union", [nodes])  a union of intervals and \{...\} sets
#   ("eq", lhs, node)  an assignment ``name = ...``
_SETS = ("iv", "tup", "set", "union")


_DEGREES_RE = re.compile(r"(.+?)\s*\^\s*(?:\{\s*\\circ\s*\}|\\circ)")
_PERCENT_RE = re.compile(r"(.+?)\s*\\?%")


def _leaf(s: str):
    """A plain expression: an infinity, a percentage (``("pct", x)``: latex2sympy reads ``x%`` as
    x times an unevaluated 1/100, which math-verify compares both as x and as x/100), degrees
    of a constant (``30^{\\circ}`` is 30 there) or a leaf for the quick evaluator."""
    inf = _INF.get("".join(s.split()))
    if inf:
        return ("inf", inf)
    m = _DEGREES_RE.fullmatch(s)
    if m and quick.values(m.group(1)) is not None and not quick.values(m.group(1))[1]:
        return ("leaf", m.group(1))
    m = _PERCENT_RE.fullmatch(s)
    if m and quick.values(m.group(1)) is not None and not quick.values(m.group(1))[1]:
        return ("pct", m.group(1))
    if quick.divides_by_zero(s):
        return ("zoo", s)
    return ("leaf", s)


_MATRIX_RE = re.compile(r"\\begin\{([pb])matrix\}(.*)\\end\{\1matrix\}", re.S)


def _matrix(s: str):
    """``\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}`` (or bmatrix) of plain entries, or None."""
    m = _MATRIX_RE.fullmatch(s)
    if not m or "\\begin" in m.group(2):
        return None
    rows = m.group(2).split("\\\\")
    if rows and not rows[-1].strip():
        rows = rows[:-1]
    cells = [[c.strip() for c in r.split("&")] for r in rows]
    if not cells or len(cells) > MAX_ITEMS or len({len(r) for r in cells}) != 1:
        return None
    if any(quick.values(c) is None for r in cells for c in r):
        return None
    return ("mat", [[("leaf", c) for c in r] for r in cells])


def _const(node):
    """``(value, exact Fraction or None, text)`` of a constant leaf or infinity, else None."""
    if node[0] == "inf":
        return (mpmath.inf * node[1], None, "inf" if node[1] > 0 else "-inf")
    if node[0] != "leaf":
        return None
    v = quick.values(node[1])
    if v is None or v[1]:
        return None
    x = v[0][0]
    with mpmath.workdps(quick.DPS):
        val = mpmath.mpmathify(x)
    if isinstance(val, mpmath.mpc):
        return None
    return (val, x if v[2] else None, "".join(node[1].split()))


def _ordered(a, b) -> int | None:
    """-1, 0, 1 for constants ``a`` < = > ``b`` (from :func:`_const`) when certain, else None.
    Equal means the same text, both infinities of one sign, or the same exact rational written
    without a decimal point; a decimal is a float to sympy (``0.1`` is not 1/10 there), so it is
    ordered only when far from the other value."""
    (x, fx, tx), (y, fy, ty) = a, b
    if tx == ty:
        return 0
    if mpmath.isinf(x) or mpmath.isinf(y):
        if x == y:
            return 0
        return -1 if x < y else 1
    if fx is not None and fy is not None and "." not in tx + ty:
        return 0 if fx == fy else (-1 if fx < fy else 1)
    with mpmath.workdps(quick.DPS):
        if abs(x - y) > mpmath.mpf(10) ** -12 * max(1, abs(x), abs(y)):
            return -1 if x < y else 1
    return None


def _pair(lo: str, hi: str, left_open: bool, right_open: bool):
    """``(lo, hi)``, ``[lo, hi]``, ... as latex2sympy reads it: an interval when lo < hi; a tuple
    when the ends are reversed (or equal, with round brackets); ``[a, a]`` is ``{a}`` and a
    reversed half-open pair the empty set; ends in variables give None."""
    a, b = _leaf(lo), _leaf(hi)
    ca, cb = _const(a), _const(b)
    if ca is None or cb is None:
        return None
    o = _ordered(ca, cb)
    if o is None:
        return None
    if o < 0:
        # sympy makes an infinite end open
        return ("iv", a, b, left_open or a[0] == "inf", right_open or b[0] == "inf")
    if left_open and right_open:
        return ("tup", [a, b])
    if not left_open and not right_open:
        return ("tup", [a, b]) if o > 0 else ("set", [a], False)  # [a, a] is {a}
    return ("set", [], True)  # (a, b] with b <= a: sympy's empty interval


def _pm(item: str):
    """The two values of ``a \\pm b`` (latex2sympy: a set element ``a+b``, ``a-b``), or None."""
    parts = _top_split(item, "\\pm")
    if len(parts) != 2 or "\\mp" in item:
        return None
    a, b = parts[0].strip(), parts[1].strip()
    if not b or b[0] in "+-":
        return None
    if a and quick.values(a) is None or quick.values(b) is None:
        return None
    return [("leaf", f"{a}+({b})"), ("leaf", f"{a}-({b})")]


def _elements(items: list[str], depth: int):
    out, order = [], True
    for it in items:
        it = it.replace("$", "").strip()
        if "\\pm" in it:
            two = _pm(it)
            if two is None:
                return None
            out += two
            order = False
            continue
        n = _shape(it, depth + 1)
        if n is None:
            return None
        out.append(n)
    return out, order


def _shape(s: str, depth: int = 0):
    """The structural reading of a normalised answer (node types above), or None when it is not
    one this pre-check knows (anything in doubt is left to math-verify)."""
    s = _SPACING_RE.sub("", s.strip()).strip()
    if not s or len(s) > MAX_STRUCT_CHARS or depth > MAX_STRUCT_DEPTH:
        return None
    if depth <= 1:
        m = _ASSIGN_RE.fullmatch(s)
        if m:
            # latex2sympy reads N as n: "N = n" is a degenerate relation there, left to math-verify
            if set(m.group(1).split("(")[0].lower()) & _letters(m.group(2)):
                return None
            rhs = _shape(m.group(2), 2)
            return None if rhs is None else ("eq", "".join(m.group(1).split()), rhs)
    if s.startswith("\\begin"):
        return _matrix(s)
    if depth <= 1 and s.count("=") == 1 and not _RELATION_RE.search(s) and "," not in s:
        lhs, rhs = s.split("=")
        if _ASSIGN_RE.fullmatch(s) or not lhs.strip() or not rhs.strip():
            return None  # a degenerate assignment (above), or no side
        # another equation (5x-7y+4=0, a+b=3): sympy's Eq, an assignment to math-verify when
        # its left side holds only symbols (a+b), else no assignment
        return ("rel", lhs.strip(), _shape(rhs, 2))
    parts = _top_split(s, "\\cup")
    if len(parts) > 1:
        if len(parts) > MAX_ITEMS:
            return None
        nodes = [_shape(p, depth + 1) for p in parts]
        # latex2sympy turns a tuple inside a union into the set of its elements
        nodes = [("set", n[1], True) if n is not None and n[0] == "tup" else n for n in nodes]
        if all(n is not None and (n[0] == "iv" or n[0] == "set" and n[2]) for n in nodes):
            return ("union", nodes)
        return None
    if "\\cap" in s or "\\setminus" in s:
        return None
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s[1:-2] + "}", 1, 1):
        items = _top_split(s[2:-2], ",")
        if len(items) > MAX_ITEMS or not s[2:-2].strip():
            return None
        el = _elements(items, depth)
        return None if el is None else ("set", el[0], el[1])
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s, 1, 1):
        items = _top_split(s[1:-1], ",")
        if len(items) == 1:
            return _leaf(s) if s[0] == "(" and s[-1] == ")" else None
        if len(items) > MAX_ITEMS or any("\\pm" in it or "\\mp" in it for it in items):
            return None
        items = [it.strip() for it in items]
        if len(items) == 2:
            return _pair(items[0], items[1], s[0] == "(", s[-1] == ")")
        if s[0] != "(" or s[-1] != ")":
            return None
        nodes = [_shape(it, MAX_STRUCT_DEPTH) for it in items]  # plain expressions only
        if any(n is None or n[0] not in ("leaf", "inf") for n in nodes):
            return None
        return ("tup", nodes)
    if depth == 0 and not _THOUSANDS_RE.fullmatch(s):
        items = _top_split(s, ",")
        if len(items) > 1:
            if len(items) > MAX_ITEMS:
                return None
            el = _elements(items, depth)
            return None if el is None else ("set", el[0], el[1])
    if "\\pm" in s:
        if depth > 1:
            return None
        two = _pm(s)
        return None if two is None else ("set", two, False)
    if "," in s:
        return None
    return _leaf(s)
