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
from functools import lru_cache

from latex2sympy2_extended.math_normalization import normalize_latex
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from steer.rewards import quick

from steer.rewards.extract import (
    canonical_answer,
    clean_gold,
    last_answer_line,
    last_boxed,
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


_ASSIGN_RE = re.compile(r"\s*([A-Za-z](?:_\{?\w{1,3}\}?)?(?:\([a-z](?:,\s*[a-z])*\))?)\s*=\s*([^=]+)")


def _split_items(s: str) -> list[str] | None:
    """Top-level comma-separated items of a tuple/interval/list (outer brackets dropped), or
    None when ``s`` is not one (sets written with ``\\{``, thousands separators)."""
    if "\\{" in s or "\\}" in s or re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s.strip()):
        return None
    t = re.sub(r"^(?:\\quad|\\qquad|\\[,;: ])+", "", s.strip()).strip()
    if len(t) >= 2 and t[0] in "([" and t[-1] in ")]":
        depth = 0
        for i, ch in enumerate(t):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth == 0 and i < len(t) - 1:
                break
        else:
            t = t[1:-1]
    items, depth, cur = [], 0, []
    for ch in t:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    items = [i.replace("$", "").strip() for i in items]  # "f(x)=x$, $f(x)=2-x"
    return items if len(items) > 1 else None


_INF = {"\\infty": 1, "+\\infty": 1, "-\\infty": -1}


def _quick(gold: str, pred: str, depth: int = 0) -> bool | None:
    ge, pe = _ASSIGN_RE.fullmatch(gold), _ASSIGN_RE.fullmatch(pred)
    for m in (ge, pe):
        # latex2sympy reads N as n: "N = n" is a degenerate relation there, left to math-verify
        if m and set(m.group(1).split("(")[0].lower()) & set(m.group(2).lower()) & set("abcdefghijklmnopqrstuvwxyz"):
            return None
    if (ge or pe) and depth <= 1:  # a whole answer, or an item of a list
        if ge and pe:
            if "".join(ge.group(1).split()) != "".join(pe.group(1).split()):
                return None
            return _quick(ge.group(2), pe.group(2), 2)
        if ge:  # math-verify compares an assignment gold's right side with a plain answer
            return _quick(ge.group(2), pred, 2)
        return _quick(gold, pe.group(2), 2)  # and the last right side of an equation answer
    gi, pi = (_split_items(gold), _split_items(pred)) if depth <= 1 else (None, None)
    if gi is not None or pi is not None:
        if gi is None or pi is None or len(gi) != len(pi):
            return None
        # wrong when an answer item differs from every gold item (order-free, so it also
        # holds for sets of tuples); anything else is left to math-verify
        for a in pi:
            if all(_quick(b, a, depth + 1) is False for b in gi):
                return False
        return None
    inf_g, inf_p = _INF.get("".join(gold.split())), _INF.get("".join(pred.split()))
    if inf_g or inf_p:
        if inf_g and inf_p:
            return inf_g == inf_p
        other = pred if inf_g else gold
        return False if quick.values(other) is not None else None
    return quick.compare(pred, gold)


def quick_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict for plain arithmetic answers without sympy, or None (undecided).

    Both strings get math-verify's normalisation, then :func:`steer.rewards.quick.compare`:
    values that differ beyond 1e-6 (relative to ``max(1, |x|)``) are wrong (math-verify needs
    equality to six decimals or a zero ``simplify``), constants equal to 20 digits are right;
    everything else (variables with equal values, anything outside the subset) is undecided.
    An assignment ``f(x) = ...`` is compared by its right side (the same left side on both
    sides, or a plain answer); a tuple or list is wrong when one of its items differs from
    every item of the gold.
    """
    g, a = _mv_normal_form(gold), _mv_normal_form(answer)
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
    fast = fast_number(answer_text) if answer_text is not None else None
    if fast is not None:
        ok = bool(verify(gold_parsed, fast, timeout_seconds=_alarm_timeout()))
        return ok, answer_text, "ok" if ok else "mismatch"
    for text in candidates:
        pred = _parse_pred(text)
        if pred:
            if _non_finite(pred) and not _non_finite(gold_parsed):
                return False, _pred_str(pred), "mismatch"  # an infinity is never a finite gold
            ok = bool(verify(gold_parsed, pred, timeout_seconds=_alarm_timeout()))
            return ok, _pred_str(pred), "ok" if ok else "mismatch"
    return False, None, "no answer"
