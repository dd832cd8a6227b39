"""A small, safe evaluator for plain LaTeX arithmetic, used as a cheap pre-check before sympy.

It reads a subset of LaTeX: numbers, ``+ - * /``, ``\\cdot``, ``\\times``, ``\\div``, implicit
products, ``^`` (a group, a number or a letter), ``\\frac``/``\\dfrac``/``\\tfrac``, ``\\sqrt``
and ``\\sqrt[n]``, ``\\pi``, ``e`` (Euler's number), single-letter and Greek-letter variables,
parentheses and brace groups. Anything else (relations, commas, sets, intervals, text,
functions, factorials, percent, degrees, ``i``) makes it give up (None), and the caller falls
back to the full parser. The precedence follows latex2sympy's where they differ from school
algebra: an implicit product binds tighter than ``/`` (``1/2x`` is ``1/(2x)``) and ``a^b^c`` is
``(a^b)^c``; forms that latex2sympy reads oddly (``2(3)`` is 5 there) are refused.

It never builds code: a recursive-descent parser over a token list evaluates with mpmath at
:data:`DPS` digits (no float overflow: ``10^{400}`` is finite here), at fixed values of the
variables (two assignments). Sizes are bounded (length, depth, exponent magnitude), so a power
tower is refused, not computed.
"""

from __future__ import annotations

import re
from functools import lru_cache

import mpmath

DPS = 30
MAX_CHARS = 200
MAX_DEPTH = 40
#: Largest |exponent * log2|base|| evaluated; beyond it the value is refused.
MAX_BITS = 100_000

_TOKEN_RE = re.compile(r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|(\\[a-zA-Z]+|\\[,;:! ])|([a-zA-Z])|([-+*/^(){}\[\]]))")
_GREEK = {
    "alpha", "beta", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "varphi", "chi", "psi",
    "omega", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}  # fmt: skip
_SPACES = {"\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad", "\\left", "\\right"}
_TIMES = {"\\cdot", "\\times"}
#: Two assignments of the variables (by name, so both sides of a comparison use the same).
_POINTS = (0.7390851332151607, 1.3247179572447460)


class _GiveUp(Exception):
    pass


def _tokens(s: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    s = s.strip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m or m.end() == pos:
            raise _GiveUp
        pos = m.end()
        num, cmd, letter, op = m.groups()
        if num is not None:
            out.append(("num", num))
        elif cmd is not None:
            if cmd in _SPACES:
                continue
            if cmd in _TIMES:
                out.append(("op", "*"))
            elif cmd == "\\div":
                out.append(("op", "/"))
            elif cmd in ("\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\pi") or cmd[1:] in _GREEK:
                out.append(("cmd", cmd))
            else:
                raise _GiveUp
        elif letter is not None:
            if letter in "ijIE":  # imaginary units, and letters latex2sympy may read as constants
                raise _GiveUp
            out.append(("var", letter.lower()))  # latex2sympy reads X as x
        else:
            out.append(("op", op))
    return out


class _Parser:
    def __init__(self, toks, env):
        self.t = toks
        self.i = 0
        self.env = env
        self.depth = 0
        self.symbols: set[str] = set()

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, kind=None, val=None):
        k, v = self.peek()
        if k is None or (kind and k != kind) or (val and v != val):
            raise _GiveUp
        self.i += 1
        return v

    def parse(self):
        v = self.expr()
        if self.i != len(self.t):
            raise _GiveUp
        return v

    def _enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _GiveUp

    def expr(self):
        self._enter()
        v = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()
            w = self.term()
            v = v + w if op == "+" else v - w
        self.depth -= 1
        return v

    def term(self):
        v = self.product()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()
            w = self.product()
            if op == "*":
                v = v * w
            else:
                if w == 0:
                    raise _GiveUp
                v = v / w
        return v

    def _starts_atom(self):
        k, v = self.peek()
        return k in ("num", "var", "cmd") or (k == "op" and v in ("(", "{"))

    def product(self):
        # implicit products bind tighter than "/" (latex2sympy: 1/2x = 1/(2x))
        prev = self.peek()
        v, _ = self.unary()
        while self._starts_atom():
            nxt = self.peek()
            if prev[0] == "num" and nxt[0] == "cmd" and nxt[1].endswith("frac"):
                raise _GiveUp  # 1\frac{4}{5} is a mixed number in latex2sympy
            if (
                prev[0] in ("var", "cmd")
                and nxt == ("op", "(")
                and self.t[self.i - 1] == prev
                and self.t[self.i + 2 : self.i + 3] == [("op", ")")]
            ):
                raise _GiveUp  # u(t), \delta(t), n(2): function applications in latex2sympy
            w, numeric_literal = self.unary()
            if numeric_literal:
                raise _GiveUp  # "2 3", "2(3)": latex2sympy does not read these as products
            v = v * w
            prev = nxt
        return v

    def unary(self):
        if self.peek() == ("op", "-"):
            self.take()
            v, _ = self.unary()
            return -v, False
        if self.peek() == ("op", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        v, lit = self.atom()
        while self.peek() == ("op", "^"):
            self.take()
            k, tv = self.peek()
            if k == "num":
                e = mpmath.mpf(self.take())
            elif k == "var":
                e = self.atom()[0]
            elif (k, tv) == ("op", "{"):
                e = self.group()
            else:
                raise _GiveUp
            v = _pow(v, e)
            lit = False
        return v, lit

    def group(self):
        self.take("op", "{")
        v = self.expr()
        self.take("op", "}")
        return v

    def atom(self):
        k, v = self.peek()
        if k == "num":
            self.take()
            return mpmath.mpf(v), True
        if k == "var":
            self.take()
            if v == "e":
                return mpmath.e, False
            self.symbols.add(v)
            return self.env(v), False
        if k == "cmd":
            self.take()
            if v == "\\pi":
                return mpmath.pi, False
            if v in ("\\frac", "\\dfrac", "\\tfrac"):
                a, b = self.group(), self.group()
                if b == 0:
                    raise _GiveUp
                return a / b, False
            if v == "\\sqrt":
                n = 2
                if self.peek() == ("op", "["):
                    self.take()
                    n = int(self.take("num")) if self.peek()[0] == "num" and self.peek()[1].isdigit() else None
                    self.take("op", "]")
                    if not n or n > 100:
                        raise _GiveUp
                a = self.group()
                return _root(a, n), False
            self.symbols.add(v)
            return self.env(v), False
        if (k, v) == ("op", "("):
            self.take()
            inner_start = self.i
            val = self.expr()
            self.take("op", ")")
            literal = all(t[0] == "num" or t[1] in "+-*/" for t in self.t[inner_start : self.i - 1])
            return val, literal
        if (k, v) == ("op", "{"):
            start = self.i
            val = self.group()
            literal = all(t[0] == "num" for t in self.t[start + 1 : self.i - 1])
            return val, literal
        raise _GiveUp


def _pow(base, e):
    if base == 0:
        if mpmath.re(e) <= 0:
            raise _GiveUp
        return mpmath.mpf(0)
    mag = abs(mpmath.log(abs(base), 2)) if abs(base) != 1 else 0
    if abs(e) * mag > MAX_BITS or abs(e) > MAX_BITS:
        raise _GiveUp
    return mpmath.power(base, e)


def _root(a, n):
    if isinstance(a, mpmath.mpc) or a < 0:
        if n % 2 == 1 and not isinstance(a, mpmath.mpc):
            return -mpmath.root(-a, n)
        raise _GiveUp  # complex roots: branch conventions differ
    return mpmath.root(a, n)


@lru_cache(maxsize=8192)
def values(s: str) -> tuple[tuple, frozenset] | None:
    """``(values at the fixed assignments, variable names)`` of a plain LaTeX expression, or
    None when it is outside the subset, not finite, or too large."""
    if not s or len(s) > MAX_CHARS:
        return None
    try:
        toks = _tokens(s)
        if not toks:
            return None
        out, names = [], frozenset()
        with mpmath.workdps(DPS):
            for k, x0 in enumerate(_POINTS):
                base = {}

                def env(name, base=base, x0=x0):
                    if name not in base:
                        # a distinct value per name: x0 plus a name-dependent offset
                        h = sum((j + 1) * ord(c) for j, c in enumerate(name)) % 97
                        base[name] = mpmath.mpf(x0) + mpmath.mpf(h) / 61 + mpmath.mpf(1) / 7
                    return base[name]

                p = _Parser(toks, env)
                v = mpmath.mpmathify(p.parse())
                if not mpmath.isfinite(v):
                    return None
                out.append(v)
                names = frozenset(p.symbols)
                if not names:
                    break  # a constant: one evaluation is enough
        return tuple(out), names
    except (_GiveUp, ValueError, ZeroDivisionError, OverflowError, RecursionError, TypeError):
        return None


def _scale(a, b):
    return max(mpmath.mpf(1), abs(a), abs(b))


def compare(a: str, b: str, *, tol_differ: float = 1e-6, tol_equal: float = 1e-20) -> bool | None:
    """``False`` when both strings evaluate and differ by more than ``tol_differ`` (relative to
    ``max(1, |a|, |b|)``) at some assignment of the variables (each name has its own value, so
    different variables, or a constant against a non-constant, differ); ``True`` when both are
    constants that agree to ``tol_equal``; None otherwise (undecided: outside the subset, or
    equal values with variables)."""
    va, vb = values(a), values(b)
    if va is None or vb is None:
        return None
    (xa, na), (xb, nb) = va, vb
    if len(xa) != len(xb):  # a constant (one value) against an expression in variables
        xa = xa * len(xb) if len(xa) == 1 else xa
        xb = xb * len(xa) if len(xb) == 1 else xb
    with mpmath.workdps(DPS):
        for x, y in zip(xa, xb):
            if abs(x - y) > tol_differ * _scale(x, y):
                return False
        if not na and not nb and abs(xa[0] - xb[0]) <= tol_equal * _scale(xa[0], xb[0]):
            return True
    return None
