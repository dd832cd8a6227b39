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

DPS = 30
MAX_CHARS = 200
MAX_DEPTH = 40
#: Largest |exponent * log2|base|| evaluated; beyond it the value is refused.
MAX_BITS = 100_000
#: The same bound for mpmath values (their exponent is a Python int: 10^{10^{10}} is cheap).
MAX_MP_BITS = 10**15
#: Largest n for which n! is computed exactly; beyond it, mpmath's gamma function.
MAX_EXACT_FACTORIAL = 1000

_TOKEN_RE = re.compile(
    r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|(\\[a-zA-Z]+|\\[,;:! ])|([a-zA-Z])|([-+*/^(){}\[\]!_]))"
)
_GREEK = {
    "alpha", "beta", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "varphi", "chi", "psi",
    "omega", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}  # fmt: skip
_SPACES = {"\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad", "\\left", "\\right"}
_TIMES = {"\\cdot", "\\times"}
_FRACS = ("\\frac", "\\dfrac", "\\tfrac")
_BINOMS = ("\\binom", "\\dbinom", "\\tbinom")
_TRIG = ("\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc")
_COMMANDS = {
    *_FRACS,
    *_BINOMS,
    *_TRIG,
    "\\sqrt",
    "\\pi",
    "\\log",
    "\\ln",
    "\\lfloor",
    "\\rfloor",
    "\\lceil",
    "\\rceil",
}
#: Tokens a function argument written without parentheses may hold besides numbers and letters.
_RUN_OPS = {("op", "*"), ("op", "/"), ("op", "^"), ("op", "!")}
#: Tokens that end a function argument written without parentheses (``\\log 2 + 1``).
_ARG_END = {
    ("op", "+"),
    ("op", "-"),
    ("op", ")"),
    ("op", "}"),
    ("op", "]"),
    ("cmd", "\\rfloor"),
    ("cmd", "\\rceil"),
}
#: Three assignments of the variables (by name, so both sides of a comparison use the same).
_POINTS = (0.7390851332151607, 1.3247179572447460, -0.5671432904097838)
#: Further assignments, larger, for expressions that are not smooth (floors, factorials): two
#: of them can agree at the three small ones (\\lfloor \\log_2 n \\rfloor and \\lfloor \\log_3 n \\rfloor).
_WIDE_POINTS = (7.3890560989306502, 23.140692632779269, 151.54262241479262)


class _GiveUp(Exception):
    pass


class _Inexact(Exception):
    """Raised in exact mode by a constant or an operation without an exact rational value."""


def _command(cmd: str, out: list) -> None:
    if cmd in _TIMES:
        out.append(("op", "*"))
    elif cmd == "\\div":
        out.append(("op", "/"))
    elif cmd[1:] in _GREEK:
        out.append(("cmd", cmd.lower()))  # latex2sympy reads \\Delta as the symbol delta, as \\delta
    else:
        out.append(("cmd", cmd))


def _letter(letter: str, out: list) -> None:
    if letter in "IE":  # the imaginary unit, and a letter latex2sympy may read as a constant
        raise _GiveUp
    out.append(("var", letter.lower()))  # latex2sympy reads X as x


#: Commands that may be glued to the letters after them (``\\pik``, ``\\lfloorm``: qwen's
#: normalisation removes spaces). latex2sympy's lexer reads the longest command it knows, then
#: single letters; none of its commands starts with one of these and goes on with a letter.
_GLUABLE = sorted(
    {"\\pi", "\\log", "\\ln", "\\lfloor", "\\rfloor", "\\lceil", "\\rceil", "\\cdot", "\\times", "\\div"}
    | {"\\" + g for g in _GREEK}
    | set(_TRIG),
    key=len,
    reverse=True,
)
#: Functions: one ends the argument run of another (latex2sympy: \\log 2\\sqrt{3} is log(2) sqrt(3)).
_FUNCTIONS = {*_TRIG, "\\log", "\\ln", "\\sqrt"}
#: latex2sympy commands that extend a gluable one (\\sinh is no \\sin of h): refused.
_LONGER = ("\\sinh", "\\cosh", "\\tanh")


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
            if cmd in _TIMES or cmd == "\\div" or cmd in _COMMANDS or cmd[1:] in _GREEK:
                _command(cmd, out)
                continue
            glued = next((g for g in _GLUABLE if cmd.startswith(g)), None)
            if glued is None or cmd.startswith(_LONGER):
                raise _GiveUp
            _command(glued, out)
            for c in cmd[len(glued) :]:
                _letter(c, out)
        elif letter is not None:
            _letter(letter, out)
        else:
            out.append(("op", op))
    return out


class _Parser:
    def __init__(self, toks, env, exact: bool = False):
        self.t = toks
        self.i = 0
        self.env = env
        self.exact = exact
        self.depth = 0
        self.symbols: set[str] = set()
        #: Number of variable occurrences read so far (a factor read without any is a constant).
        self.nvars = 0
        #: False once a floor, ceiling, factorial or binomial of something in variables was read.
        self.smooth = True
        #: For :func:`precise_constant`: the digits a sum's operands span (``2^{2019}-9`` needs
        #: 608 to keep the 9) or a literal has, at most; and the digits floating point may lose
        #: (cancelled by sums, amplified by large exponents), in all.
        self.span = 0.0
        self.lost = 0.0

    def number(self, text: str):
        if self.exact:
            return Fraction(text)
        self.span = max(self.span, float(len(text)))
        return mpmath.mpf(text)

    def _note_sum(self, a, b, r) -> None:
        if self.exact:
            return
        ma, mb = _mag10(a), _mag10(b)
        if ma is None or mb is None:
            return
        self.span = max(self.span, abs(ma - mb))
        mr = _mag10(r)
        self.lost += max(ma, mb) - mr if mr is not None else mpmath.mp.dps

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
            r = v + w if op == "+" else v - w
            self._note_sum(v, w, r)
            v = r
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
        return (k in ("num", "var") or (k == "cmd" and v not in ("\\rfloor", "\\rceil"))) or (
            k == "op" and v in ("(", "{")
        )

    def _ends_factor(self) -> bool:
        """True when the token ahead cannot continue the current factor or product chain."""
        return not self._starts_atom() and self.peek() not in (("op", "^"), ("op", "!"), ("op", "_"))

    def _mixed_number(self):
        """``n\\frac{a}{b}`` (digits only, optionally after a unary minus) as the whole product
        chain is the mixed number ``n + a/b`` in latex2sympy (``-2\\frac{1}{2}`` is -5/2); its
        value, consumed, or None (nothing consumed)."""
        i, sign = self.i, 1
        t = self.t
        if t[i : i + 1] == [("op", "-")]:
            i, sign = i + 1, -1
        pat = t[i : i + 8]
        if (
            len(pat) == 8
            and pat[0][0] == "num"
            and pat[0][1].isdigit()
            and pat[1][0] == "cmd"
            and pat[1][1] in _FRACS
            and [x for j, x in enumerate(pat) if j in (2, 4, 5, 7)]
            == [("op", "{"), ("op", "}"), ("op", "{"), ("op", "}")]
            and pat[3][0] == "num"
            and pat[3][1].isdigit()
            and pat[6][0] == "num"
            and pat[6][1].isdigit()
            and int(pat[3][1]) > 0
            and int(pat[6][1]) > 0
        ):
            saved = self.i
            self.i = i + 8
            if not self._ends_factor():
                self.i = saved
                return None
            n, a, b = (self.number(pat[j][1]) for j in (0, 3, 6))
            return sign * (n + a / b)
        return None

    def _maybe_rational(self, w) -> bool:
        if self.exact:
            return isinstance(w, Fraction)
        if isinstance(w, mpmath.mpc):
            return False
        if mpmath.isint(w):
            return True
        f = Fraction(mpmath.nstr(w, 25)).limit_denominator(10**6)
        return abs(w - mpmath.mpf(f.numerator) / f.denominator) <= mpmath.mpf(10) ** (-24) * max(1, abs(w))

    def _root_only(self, start: int, end: int) -> bool:
        """True when tokens ``start:end`` are one ``\\sqrt{...}`` (or ``\\sqrt[n]{...}``) and
        nothing more: latex2sympy leaves such a root unevaluated (``\\sqrt{4}`` is no Integer
        there), so it takes no part in a mixed number."""
        t = self.t
        if t[start] != ("cmd", "\\sqrt"):
            return False
        j = start + 1
        if t[j : j + 1] == [("op", "[")]:
            while j < end and t[j] != ("op", "]"):
                j += 1
            j += 1
        depth = 0
        for k in range(j, end):
            depth += t[k] == ("op", "{")
            depth -= t[k] == ("op", "}")
            if depth == 0:
                return k + 1 == end
        return False

    def _is_integer(self, v) -> bool:
        if self.exact:
            return isinstance(v, Fraction) and v.denominator == 1
        return not isinstance(v, mpmath.mpc) and bool(mpmath.isint(v))

    def product(self):
        # implicit products bind tighter than "/" (latex2sympy: 1/2x = 1/(2x))
        mixed = self._mixed_number()
        if mixed is not None:
            return mixed
        prev = self.peek()
        nvars, start = self.nvars, self.i
        v, _ = self.unary()
        # the previous factor of the chain: its value, whether it is constant, whether a root
        last, last_const, last_root = v, self.nvars == nvars, self._root_only(start, self.i)
        while self._starts_atom():
            nxt = self.peek()
            if self.t[self.i - 1][0] == "num" and nxt[0] == "cmd" and nxt[1] in _FRACS:
                raise _GiveUp  # 2\frac{1}{2}x, x^2\frac{1}{2}: close to latex2sympy's mixed numbers
            if (
                prev[0] in ("var", "cmd")
                and nxt == ("op", "(")
                and self.t[self.i - 1] == prev
                and self.t[self.i + 2 : self.i + 3] == [("op", ")")]
            ):
                raise _GiveUp  # u(t), \delta(t), n(2): function applications in latex2sympy
            nvars, start = self.nvars, self.i
            w, numeric_literal = self.unary()
            if numeric_literal:
                raise _GiveUp  # "2 3", "2(3)": latex2sympy does not read these as products
            w_const, w_root = self.nvars == nvars, self._root_only(start, self.i)
            if (
                last_const
                and w_const
                and not (last_root or w_root)
                and self._ends_factor()
                and self._is_integer(last)
                and not isinstance(w, mpmath.mpc)
                and w > 0
                and nxt[1] not in ("\\pi", "\\log", "\\ln", "\\lfloor", "\\lceil", *_TRIG)
                and self._maybe_rational(w)
            ):
                # latex2sympy reads "an integer, then a positive rational last" as a mixed
                # number (\sqrt{4}\frac{1}{2} is 5/2 there): refused
                raise _GiveUp
            v = v * w
            last, last_const, last_root = w, w_const, w_root
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
        nvars = self.nvars
        v, lit = self.atom()
        while self.peek() == ("op", "!"):
            self.take()
            v = self.factorial(v, self.nvars > nvars)
            lit = False
        while self.peek() == ("op", "^"):
            self.take()
            k, tv = self.peek()
            if k == "num":
                e = self.number(self.take())
            elif k == "var":
                e = self.atom()[0]
            elif (k, tv) == ("op", "{"):
                e = self.group()
            else:
                raise _GiveUp
            if self.exact:
                v = _pow_exact(v, e)
            else:
                v = _pow(v, e)
                m = _mag10(e)
                self.lost += max(0.0, m) if m is not None else 0.0
            lit = False
        return v, lit

    def factorial(self, v, variables: bool = False):
        """n! of a non-negative integer constant (latex2sympy's factorial), exactly; of an
        expression in variables, the gamma function at the assignment (a step-free but
        combinatorial function: marked not smooth, so it only tells expressions apart);
        anything else gives up."""
        if variables:
            if self.exact:
                raise _Inexact
            if isinstance(v, mpmath.mpc):
                raise _GiveUp
            self.smooth = False
            return mpmath.gamma(v + 1)
        if self.exact:
            if v.denominator != 1 or v < 0:
                raise _GiveUp
            if v > MAX_EXACT_FACTORIAL:
                raise _Inexact
            return Fraction(math.factorial(int(v)))
        if isinstance(v, mpmath.mpc) or v < 0 or v != mpmath.floor(v):
            raise _GiveUp
        return mpmath.factorial(v)

    def binomial(self):
        """``\\binom{n}{k}``: exact for integer constants 0 <= k <= n; in variables the
        gamma-function form (not smooth, as for factorials); anything else gives up."""
        nvars = self.nvars
        n, k = self.group(), self.group()
        if self.nvars > nvars:
            if self.exact:
                raise _Inexact
            if isinstance(n, mpmath.mpc) or isinstance(k, mpmath.mpc):
                raise _GiveUp
            self.smooth = False
            return mpmath.binomial(n, k)
        if self.exact:
            if n.denominator != 1 or k.denominator != 1 or not 0 <= k <= n:
                raise _GiveUp
            if n > MAX_EXACT_FACTORIAL:
                raise _Inexact
            return Fraction(math.comb(int(n), int(k)))
        if (
            isinstance(n, mpmath.mpc)
            or isinstance(k, mpmath.mpc)
            or not (mpmath.isint(n) and mpmath.isint(k))
        ):
            raise _GiveUp
        if not 0 <= k <= n:
            raise _GiveUp
        return mpmath.binomial(n, k)

    def group(self):
        self.take("op", "{")
        v = self.expr()
        self.take("op", "}")
        return v

    def logarithm(self, name: str):
        """``\\log`` (base 10), ``\\ln`` (base e), either with a base ``_b``, of
        :meth:`argument`; a complex logarithm gives up."""
        base = None
        if self.peek() == ("op", "_"):
            self.take()
            k, tv = self.peek()
            if (k, tv) == ("op", "{"):
                base = self.group()
            elif k == "num" and len(tv) == 1:
                base = self.number(self.take())
            elif k == "var":
                base = self.atom()[0]
            else:
                raise _GiveUp
        if self.exact:
            raise _Inexact
        arg = self.argument()
        if base is None:
            base = mpmath.e if name == "\\ln" else mpmath.mpf(10)
        arg, base = mpmath.mpmathify(arg), mpmath.mpmathify(base)
        if isinstance(arg, mpmath.mpc) or isinstance(base, mpmath.mpc) or arg <= 0 or base <= 0 or base == 1:
            raise _GiveUp  # complex logarithms: branch conventions differ
        return mpmath.log(arg) / mpmath.log(base)

    def trigonometric(self, name: str):
        """``\\sin``, ``\\cos``, ``\\tan``, ``\\cot``, ``\\sec``, ``\\csc`` of :meth:`argument`
        (a power or subscript right after the name, ``\\sin^2 x``, gives up). Of an expression in
        variables it is marked not smooth: identities are left to sympy."""
        if self.peek() in (("op", "^"), ("op", "_")):
            raise _GiveUp
        if self.exact:
            raise _Inexact
        nvars = self.nvars
        arg = mpmath.mpmathify(self.argument())
        if isinstance(arg, mpmath.mpc):
            raise _GiveUp
        if self.nvars > nvars:
            self.smooth = False
        f = {"\\sin": mpmath.sin, "\\cos": mpmath.cos, "\\tan": mpmath.tan}.get(name)
        if f is not None:
            if name == "\\tan" and abs(mpmath.cos(arg)) < mpmath.mpf(10) ** -20:
                raise _GiveUp
            return f(arg)
        d = {"\\cot": mpmath.sin, "\\sec": mpmath.cos, "\\csc": mpmath.sin}[name](arg)
        if abs(d) < mpmath.mpf(10) ** -20:
            raise _GiveUp  # a pole, or too close to one
        return (mpmath.cos(arg) if name == "\\cot" else mpmath.mpf(1)) / d

    def argument(self):
        """A function's argument: in parentheses (then a power or factorial right after gives
        up: ``\\log(2)^2``), or a product run without functions, which latex2sympy takes whole
        (``\\log 2x`` is log(2x), ``\\log{2}x`` too) and which must end the term
        (``\\log 2 + 1``)."""
        if self.peek() == ("op", "("):
            self.take()
            arg = self.expr()
            self.take("op", ")")
            if self.peek() in (("op", "^"), ("op", "!"), ("op", "_")):
                raise _GiveUp
            return arg
        j, depth = self.i, 0
        while j < len(self.t):
            k, tv = self.t[j]
            if (k, tv) == ("op", "{"):
                depth += 1
            elif (k, tv) == ("op", "}"):
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and not (
                k in ("num", "var") or (k, tv) in _RUN_OPS or tv in _FRACS or tv == "\\pi"
            ):
                break
            j += 1
        if j == self.i or (j < len(self.t) and self.t[j] not in _ARG_END and self.t[j][1] not in _FUNCTIONS):
            raise _GiveUp  # a function after the run starts the next factor (\\log 2\\log 3)
        sub = _Parser(self.t[self.i : j], self.env, self.exact)
        sub.depth = self.depth
        arg = sub.term()
        if sub.i != j - self.i:
            raise _GiveUp
        self.symbols |= sub.symbols
        self.nvars += sub.nvars
        self.smooth = self.smooth and sub.smooth
        self.i = j
        return arg

    def step(self, a, floor: bool, variables: bool):
        """``floor``/``ceiling`` of ``a`` (exact for a rational value); an mpmath value within
        1e-20 of an integer is refused (its digits cannot tell which side it is on)."""
        if variables:
            self.smooth = False
        if self.exact:
            return Fraction(math.floor(a) if floor else math.ceil(a))
        if isinstance(a, mpmath.mpc) or abs(a) > mpmath.mpf(10) ** 15:
            raise _GiveUp
        if abs(a - mpmath.nint(a)) <= mpmath.mpf(10) ** (-20) * max(1, abs(a)):
            raise _GiveUp
        return mpmath.floor(a) if floor else mpmath.ceil(a)

    def atom(self):
        k, v = self.peek()
        if k == "num":
            self.take()
            if self.peek() == ("op", "_"):  # 4210_{5}: latex2sympy drops a number's subscript
                self.take()
                if self.peek() == ("op", "{"):
                    depth = 0
                    while True:
                        tok = self.take()
                        depth += tok == "{"
                        depth -= tok == "}"
                        if depth == 0:
                            break
                elif self.peek()[0] in ("num", "var"):
                    self.take()
                else:
                    raise _GiveUp
            return self.number(v), True
        if k == "var":
            self.take()
            if v == "e":
                if self.exact:
                    raise _Inexact
                return mpmath.e, False
            self.symbols.add(v)
            self.nvars += 1
            return self.env(v), False
        if k == "cmd":
            self.take()
            if v == "\\pi":
                if self.exact:
                    raise _Inexact
                return mpmath.pi, False
            if v in ("\\frac", "\\dfrac", "\\tfrac"):
                a, b = self.group(), self.group()
                if b == 0:
                    raise _GiveUp
                return a / b, False
            if v in ("\\log", "\\ln"):
                return self.logarithm(v), False
            if v in _TRIG:
                return self.trigonometric(v), False
            if v in _BINOMS:
                return self.binomial(), False
            if v in ("\\lfloor", "\\lceil"):
                nvars = self.nvars
                a = self.expr()
                self.take("cmd", "\\rfloor" if v == "\\lfloor" else "\\rceil")
                return self.step(a, v == "\\lfloor", self.nvars > nvars), False
            if v == "\\sqrt":
                n = 2
                if self.peek() == ("op", "["):
                    self.take()
                    n = (
                        int(self.take("num"))
                        if self.peek()[0] == "num" and self.peek()[1].isdigit()
                        else None
                    )
                    self.take("op", "]")
                    if not n or n > 100:
                        raise _GiveUp
                a = self.group()
                return (_root_exact(a, n) if self.exact else _root(a, n)), False
            self.symbols.add(v)
            self.nvars += 1
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


def _mag10(x) -> float | None:
    """About log10|x| (None for 0), from mpmath's binary exponent."""
    if isinstance(x, Fraction):
        x = mpmath.mpf(x.numerator) / x.denominator if x else 0
    if not x:
        return None
    return float(mpmath.mag(x)) * 0.30103


def _pow(base, e):
    if base == 0:
        if mpmath.re(e) <= 0:
            raise _GiveUp
        return mpmath.mpf(0)
    mag = abs(mpmath.log(abs(base), 2)) if abs(base) != 1 else 0
    if abs(e) * mag > MAX_MP_BITS or abs(e) > MAX_MP_BITS:
        raise _GiveUp
    return mpmath.power(base, e)


def _pow_exact(base, e):
    if not isinstance(e, Fraction) or e.denominator != 1:
        raise _Inexact
    k = e.numerator
    if base == 0:
        if k <= 0:
            raise _GiveUp
        return Fraction(0)
    bits = max(abs(base.numerator).bit_length(), base.denominator.bit_length())
    if abs(k) * bits > MAX_BITS or abs(k) > MAX_BITS:
        raise _Inexact  # too large to hold exactly: mpmath's floats
    return base**k


def _root_exact(a, n):
    if a < 0:
        raise _Inexact
    num, den = _iroot(a.numerator, n), _iroot(a.denominator, n)
    if num is None or den is None:
        raise _Inexact
    return Fraction(num, den)


def _iroot(x: int, n: int) -> int | None:
    """The integer n-th root of ``x`` when ``x`` is a perfect n-th power, else None."""
    if x < 2:
        return x
    r = int(round(x ** (1.0 / n))) if x.bit_length() < 1000 else None
    if r is None:
        return None
    for c in (r - 1, r, r + 1):
        if c >= 0 and c**n == x:
            return c
    return None


def _root(a, n):
    if isinstance(a, mpmath.mpc) or a < 0:
        if n % 2 == 1 and not isinstance(a, mpmath.mpc):
            return -mpmath.root(-a, n)
        raise _GiveUp  # complex roots: branch conventions differ
    return mpmath.root(a, n)


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
