"""Math-Verify scorer (spec evaluation.md §1).

* The gold is wrapped in ``\\boxed{}`` before parsing (raw gold strings mis-parse, spec §1
  "Gold-answer format pitfall").
* The response is parsed with ``boxed_match_priority=0`` so a ``\\boxed{}`` wins over every other
  candidate (the README's advice when the prompt asks for it); the last ``\\boxed{}`` is parsed on
  its own first (cheaper than scanning the whole text). When the response has no ``\\boxed{}``
  but an ``Answer: ...`` line (the AIME/AMC prompts ask for one), the text of the last such line
  is parsed as if it were boxed; if that yields nothing, the whole response is parsed with
  math-verify's priorities. An answer string equal to the gold (light canonicalisation) is
  correct without sympy.
* ``verify(gold, pred)``: gold first (the function is asymmetric).
* math-verify's own SIGALRM timeouts are switched off (``None``) inside pool workers: the hard
  limit is enforced by the process pool (``steer.rewards.pool``), which kills a worker that runs
  past it. Called directly (outside the pool) in a main thread, the 5 s alarm stays on as a
  partial safeguard; use the pool (``steer.rewards.score_responses``) for a real limit.

Runs inside pool workers; importing this module imports math_verify (about 1 s).
"""

from __future__ import annotations

import re
import threading
from functools import cache, lru_cache

import mpmath
from latex2sympy2_extended.math_normalization import normalize_latex
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from steer.rewards import quick
from steer.rewards.extract import (
    canonical_answer,
    clean_gold,
    hopeless_answer,
    last_answer_line,
    last_boxed,
    split_top_level,
    strip_math_delims,
)

_GOLD_CONFIG = (LatexExtractionConfig(boxed_match_priority=0),)
# The same LaTeX normalisation as the gold (malformed operators such as ``\\frac{270}7`` fixed
# on both sides, else a gold that needs the fix can never match its own string).
_PRED_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def _wrap_gold(gold: str) -> str:
    g = gold.strip()
    if "\\boxed" in g:
        return g
    return "\\boxed{" + clean_gold(g) + "}"


#: math-verify's own SIGALRM timeout (seconds) used when a scorer is called directly, outside
#: a pool worker, in a main thread: a partial safeguard only (it cannot interrupt long C-level
#: work; spec §1). Inside pool workers it is off: the pool's kill is the limit.
IN_PROCESS_ALARM_S = 5
_in_worker = False


def set_in_worker(flag: bool = True) -> None:
    """Called by the pool worker: the hard limit is the pool's kill, so no SIGALRM."""
    global _in_worker
    _in_worker = flag


def _alarm_timeout() -> int | None:
    if _in_worker or threading.current_thread() is not threading.main_thread():
        return None
    return IN_PROCESS_ALARM_S


_INT_RE = re.compile(r"-?\d+")
_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}|(-?\d+)/(\d+)")


def fast_number(s: str) -> list | None:
    """``[sympy number, s]`` for an integer or an integer fraction (``\\frac{a}{b}``, ``a/b``),
    the values math-verify's LaTeX parser gives them, without the (pure-Python antlr) parser;
    None for anything else."""
    import sympy

    if _INT_RE.fullmatch(s):
        return [sympy.Integer(int(s)), s]
    m = _FRAC_RE.fullmatch(s)
    if m:
        if m.group(2) is not None:
            num, den = int(m.group(2)) * (-1 if m.group(1) else 1), int(m.group(3))
        else:
            num, den = int(m.group(4)), int(m.group(5))
        if den != 0:
            return [sympy.Rational(num, den), s]
    return None


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> list:
    """Parse a raw gold answer string (wrapped in ``\\boxed{}`` first; integers and integer
    fractions directly, :func:`fast_number`)."""
    fast = fast_number(_canon(gold))
    if fast is not None:
        return fast
    return parse(_wrap_gold(gold), extraction_config=_GOLD_CONFIG, parsing_timeout=_alarm_timeout())


def _parse_pred(text: str) -> list:
    return parse(text, extraction_config=_PRED_CONFIG, parsing_timeout=_alarm_timeout())


_NORM = _GOLD_CONFIG[0].normalization_config


@lru_cache(maxsize=8192)
def _mv_normal_form(s: str) -> str:
    """``s`` after math-verify's own LaTeX normalisation (the one its parser applies first)."""
    try:
        return normalize_latex(s, _NORM)
    except Exception:
        return s


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


def _pred_str(parsed: list) -> str:
    return str(parsed[-1]) if len(parsed) > 1 else str(parsed[0])


def _canon(s: str) -> str:
    """Light canonical form for the exact-match shortcut (spacing, \\left/\\right, \\dfrac)."""
    s = clean_gold(s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\!", "")):
        s = s.replace(a, b)
    return "".join(s.split())


_RELATIONAL = (
    "=",
    "\\in",
    "\\cup",
    "\\cap",
    "\\{",
    "<",
    ">",
    "\\le",
    "\\ge",
    "\\neq",
    "\\pm",
    "\\mp",
    "\\text",
)


def _top_level_items(s: str) -> int:
    """Number of top-level comma-separated items (1 when there is no top-level comma)."""
    depth, n = 0, 1
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            n += 1
    return n


def _collection_size(s: str) -> int | None:
    """Size of a tuple/interval/list answer (``(a,b)``, ``[a,b)``, ``a,b,c``), else None."""
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,000 is a number
        return None
    inner = s
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
    n = _top_level_items(inner)
    return n if n > 1 else None


def _is_scalar_like(s: str) -> bool:
    return "," not in s and not any(r in s for r in _RELATIONAL)


def shapes_differ(gold_c: str, pred_c: str) -> bool:
    """Conservative structural pre-check on canonical strings: True only when one side is a
    tuple/interval/list of n items and the other a plain scalar expression or a tuple/interval of
    another size (sets written with ``\\{`` are never judged here). Such pairs never verify, and
    sympy can spend hundreds of milliseconds establishing it."""
    if "\\{" in gold_c or "\\{" in pred_c:
        return False
    g, p = _collection_size(gold_c), _collection_size(pred_c)
    if g is not None and p is not None:
        return g != p
    if g is not None:
        return _is_scalar_like(pred_c)
    if p is not None:
        return _is_scalar_like(gold_c)
    return False


def _non_finite(parsed: list) -> bool:
    """True when a parsed answer holds an infinity, ``zoo`` or NaN anywhere."""
    import sympy

    for x in parsed:
        if isinstance(x, (sympy.Basic, sympy.MatrixBase)):
            try:
                if x.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
                    return True
            except Exception:
                return True
    return False


_DIGITS_RE = re.compile(r"\d")
#: Annotations a gold may carry next to its values (``4122 \\text{ (min)}``, ``(max)``).
_ANNOTATION_RE = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mbox)\{[^{}\d]*\}|\((?:min|max|minimum|maximum)\)"
)


#: Text groups and command names, whose letters are no variables.
_TEXT_OR_CMD_RE = re.compile(r"\\(?:text|mathrm|mbox|textbf|textit|operatorname)\{[^{}]*\}|\\[a-zA-Z]+")


def _letters_dropped(text: str, parsed: list) -> bool:
    """True when math-verify read ``text`` as a bare number although its value side (after the
    last ``=``, after math-verify's normalisation, which removes unit words such as the ``m`` of
    ``6m`` on purpose) holds letters that are neither text nor command names:
    ``\\frac{1}{3}E_{1}+\\frac{2}{3}E_{2}`` is read as 2/3 (the expression fallback keeps the last
    number), so every answer with that number would match."""
    import sympy

    if not parsed or not isinstance(parsed[0], sympy.Basic) or not parsed[0].is_Number:
        return False
    # on math-verify's normal form: its normalisation drops unit words on purpose (``6m`` is 6 m)
    return bool(re.search(r"[A-Za-z]", _TEXT_OR_CMD_RE.sub(" ", _mv_normal_form(text).split("=")[-1])))


def _read_in_part(text: str, parsed: list) -> bool:
    """True when math-verify read only part of ``text``: a digit of ``text`` is missing from the
    string its parser extracted (``4122 \\text{ (min)}, 6049 \\text{ (max)}`` is read as 4122
    alone, ``\\lambda_{\\text{red}}/\\sqrt{2}`` as the string ``\\lambda_{``). Comparing such a
    reading compares part of the answer: every value of a multi-part answer must count."""
    if _letters_dropped(text, parsed):
        return True
    if not parsed or not isinstance(parsed[-1], str):
        return False
    return _digits_missing(text, parsed[-1])


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


def _misparsed(parsed: list) -> bool:
    """True when a parse holds sympy's ``zoo`` or ``nan``: a written answer is never such a value
    (``\\gamma^{2}-1`` is read as the gamma function's pole), and every such reading equals every
    other one however the rest of the answer differs."""
    import sympy

    for x in parsed:
        if isinstance(x, sympy.Basic):
            try:
                if x.has(sympy.zoo, sympy.nan):
                    return True
            except Exception:
                return True
    return False


def _parse_gold_whole(gold: str) -> list | None:
    """The gold's parse when it reads the whole gold (after dropping annotations such as
    ``\\text{ (min)}`` if needed) and holds no ``zoo``/``nan``; None when no reading covers it:
    then only the gold's own string (the canonical comparison before) is right."""
    parsed = parse_gold(gold)
    if parsed and not _read_in_part(gold, parsed) and not _misparsed(parsed):
        return parsed
    bare = _ANNOTATION_RE.sub(" ", gold).strip()
    if bare != gold and bare:
        parsed = parse_gold(bare)
        if parsed and not _read_in_part(bare, parsed) and not _misparsed(parsed):
            return parsed
    return None


def score_math_verify(response: str, gold: str) -> tuple[bool, str | None, str]:
    """Return ``(correct, extracted prediction, reason)`` for one (response, gold) pair.

    Order: (1) the last ``\\boxed{}`` whose text equals the gold after light canonicalisation
    (spacing, ``\\left``/``\\right``, ``\\dfrac``) is correct without sympy (what math-verify
    would conclude for identical strings, minus its cost); (2) the last ``\\boxed{}`` alone, else the
    last ``Answer:`` line, is parsed as a boxed expression; (3) the whole response with
    math-verify's priorities (boxed first). The first candidate that parses is compared with
    ``verify(gold, pred)``. A tuple/interval against a scalar or a tuple of another size
    (:func:`shapes_differ`) is wrong without sympy.
    """
    gold = str(gold)
    if "\\boxed" in gold or "\\fbox" in gold:
        inner = last_boxed(gold)
        gold = inner if inner is not None else gold
    gold = canonical_answer(clean_gold(gold))
    candidates: list[str] = []
    answer_text = None
    boxed = last_boxed(response)
    if boxed is not None:
        why = hopeless_answer(boxed, gold)
        if why:
            return False, boxed[:200], why
        boxed = canonical_answer(boxed)
        cb, cg = _canon(boxed), _canon(gold)
        if cb == cg:
            return True, boxed, "ok"
        if shapes_differ(cg, cb):
            return False, boxed, "mismatch"
        q = quick_verdict(gold, boxed)
        if q is not None:
            return q, boxed, "ok" if q else "mismatch"
        answer_text = cb
        candidates.append("\\boxed{" + boxed + "}")
    else:
        line = last_answer_line(response)
        if line is not None:
            why = hopeless_answer(line, gold)
            if why:
                return False, line[:200], why
            ans = canonical_answer(strip_math_delims(line))
            ca, cg = _canon(ans), _canon(gold)
            if ca == cg:
                return True, ans, "ok"
            if shapes_differ(cg, ca):
                return False, ans, "mismatch"
            q = quick_verdict(gold, ans)
            if q is not None:
                return q, ans, "ok" if q else "mismatch"
            answer_text = ca
            candidates.append("\\boxed{" + ans + "}")
    candidates.append(response)
    gold_parsed = parse_gold(gold)
    if not gold_parsed:
        return False, None, "error: gold answer does not parse"
    gold_parsed = _parse_gold_whole(gold)
    if gold_parsed is None:
        return False, answer_text, "mismatch"  # the gold reads only in part: its own string only
    fast = fast_number(answer_text) if answer_text is not None else None
    if fast is not None:
        ok = bool(verify(gold_parsed, fast, timeout_seconds=_alarm_timeout()))
        return ok, answer_text, "ok" if ok else "mismatch"
    for text in candidates:
        if text is response:
            why = hopeless_answer(response, gold, whole_response=True)
            if why:
                return False, answer_text, why
        pred = _parse_pred(text)
        if pred and text is not response and (_read_in_part(text[7:-1], pred) or _misparsed(pred)):
            return False, _pred_str(pred), "mismatch"  # the answer was read only in part
        if pred:
            if _non_finite(pred) and not _non_finite(gold_parsed):
                return False, _pred_str(pred), "mismatch"  # an infinity is never a finite gold
            ok = bool(verify(gold_parsed, pred, timeout_seconds=_alarm_timeout()))
            return ok, _pred_str(pred), "ok" if ok else "mismatch"
    return False, None, "no answer"
