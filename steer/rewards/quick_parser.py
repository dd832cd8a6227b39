"""The tokenizer and recursive-descent parser of the quick evaluator (:mod:`steer.rewards.quick`).

:func:`_tokens` cuts a plain LaTeX string into ``(kind, text)`` tokens over a fixed set (numbers,
a fixed list of commands, single letters, operators) and gives up (:class:`_GiveUp`) on anything
else. :class:`_Parser` evaluates a token list with latex2sympy's precedence, either exactly
(``Fraction`` values; :class:`_Inexact` when a value has no exact rational form) or with mpmath
at the caller's precision, at the variable values its ``env`` gives. It never builds code, and
sizes are bounded (depth, exponent magnitude, factorial size): a power tower is refused, not
computed.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import mpmath

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
#: The constants latex2sympy reads (e, \\pi): irrational, so no value in exact mode.
_CONSTANTS = {("var", "e"): mpmath.e, ("cmd", "\\pi"): mpmath.pi}
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

    def _skip_subscript(self) -> None:
        """Skip ``_{...}`` or ``_d`` after a number (latex2sympy drops it)."""
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

    def root(self):
        """``\\sqrt{a}`` or ``\\sqrt[n]{a}`` (a digit index up to 100), after the command."""
        n = 2
        if self.peek() == ("op", "["):
            self.take()
            n = int(self.take("num")) if self.peek()[0] == "num" and self.peek()[1].isdigit() else None
            self.take("op", "]")
            if not n or n > 100:
                raise _GiveUp
        a = self.group()
        return _root_exact(a, n) if self.exact else _root(a, n)

    def atom(self):
        k, v = self.peek()
        if k == "num":
            self.take()
            if self.peek() == ("op", "_"):  # 4210_{5}: latex2sympy drops a number's subscript
                self._skip_subscript()
            return self.number(v), True
        if (k, v) in _CONSTANTS:
            self.take()
            if self.exact:
                raise _Inexact
            return _CONSTANTS[k, v], False
        if k == "var":
            self.take()
            self.symbols.add(v)
            self.nvars += 1
            return self.env(v), False
        if k == "cmd":
            self.take()
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
                return self.root(), False
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
