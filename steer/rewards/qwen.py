"""Qwen-style grader (spec evaluation.md §2), written anew from the published rules.

Extraction (one answer string per response): the Minerva form ``final answer is $X$. I hope``;
else the last ``\\boxed{}``; else the text after the last ``he answer is`` / ``final answer is``;
else the last ``Answer:`` line (the DAPO/AIME prompts ask for one; an addition); else the last
number in the text. Both sides then go through :func:`normalize` (``\\text{}``/``\\left``/
``\\right``/degrees/dollars/percent/spaces removed, ``\\dfrac`` -> ``\\frac``, ``\\frac12`` ->
``\\frac{1}{2}``, short ``x=`` prefixes dropped, thousands separators removed, unit words at the end
removed).

Comparison (:func:`answers_equal`), in order: case-insensitive string equality; both numeric ->
``isclose(rel_tol=1e-4)`` against ``ref``, ``ref/100`` and ``ref*100`` (percentage leniency);
bracketed tuples/intervals and ``pmatrix`` rows element-wise (same bracket kinds, same length,
order-sensitive); single ``=`` equations as ``lhs - rhs`` up to sign; symbolic: parse with
latex2sympy (then sympy's ``parse_expr``), equal if ``a == b``, ``simplify(a - b) == 0`` or the
numeric values agree to 1e-4 relative.
"""

from __future__ import annotations

import math
import re

from steer.rewards.extract import clean_gold, last_answer_line, last_boxed, strip_math_delims

REL_TOL = 1e-4

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


def _to_float(s: str) -> float | None:
    t = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    try:
        v = float(t)
    except ValueError:
        m = re.fullmatch(r"(-?\d+)/(\d+)", t) or re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", t)
        if not m:
            return None
        if len(m.groups()) == 3:
            num = float(m.group(2)) * (-1 if m.group(1) else 1)
            den = float(m.group(3))
        else:
            num, den = float(m.group(1)), float(m.group(2))
        if den == 0:
            return None
        v = num / den
    return v if math.isfinite(v) else None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0) or (a == 0.0 and b == 0.0)


def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


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


def _sympify(s: str):
    from latex2sympy2_extended import latex2sympy

    try:
        return latex2sympy(s)
    except Exception:
        pass
    try:
        from sympy.parsing.sympy_parser import parse_expr

        return parse_expr(s.replace("^", "**"), evaluate=True)
    except Exception:
        return None


def _symbolic_equal(a: str, b: str) -> bool:
    import sympy

    x, y = _sympify(a), _sympify(b)
    if x is None or y is None:
        return False
    try:
        if x == y:
            return True
    except Exception:
        pass
    try:
        if isinstance(x, sympy.MatrixBase) or isinstance(y, sympy.MatrixBase):
            return bool(sympy.Matrix(x).equals(sympy.Matrix(y)))
        if sympy.simplify(x - y) == 0:
            return True
    except Exception:
        pass
    try:
        fx, fy = complex(sympy.N(x)), complex(sympy.N(y))
        return abs(fx - fy) <= REL_TOL * max(abs(fx), abs(fy)) or fx == fy
    except Exception:
        return False


def answers_equal(pred: str, ref: str, *, include_percentage: bool = True, depth: int = 0) -> bool:
    """Compare two normalised answers (rules in the module docstring)."""
    if pred is None or ref is None:
        return False
    p, r = pred.strip(), ref.strip()
    if p.lower() == r.lower():
        return True
    fp, fr = _to_float(p), _to_float(r)
    if fp is not None and fr is not None:
        refs = [fr, fr / 100.0, fr * 100.0] if include_percentage else [fr]
        return any(_close(fp, x) for x in refs)
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
        a, b = f"({pl})-({pr_})", f"({rl})-({rr})"
        return _symbolic_equal(a, b) or _symbolic_equal(a, f"-({b})")
    return _symbolic_equal(p, r)


def score_qwen(response: str, gold: str) -> tuple[bool, str | None, str]:
    """Return ``(correct, extracted prediction, reason)`` for one (response, gold) pair."""
    raw = extract_answer(response)
    if raw is None:
        return False, None, "no answer"
    pred = normalize(raw)
    ref = normalize(clean_gold(str(gold)))
    ok = answers_equal(pred, ref)
    return ok, pred, "ok" if ok else "mismatch"
