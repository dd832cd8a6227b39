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
* Before any sympy call, :func:`steer.rewards.mv_verdict.quick_verdict` decides what it can
  decide for sure from the answer's structure (:mod:`steer.rewards.mv_shape`) and the quick
  evaluator (:mod:`steer.rewards.quick`).

Runs inside pool workers; importing this module imports math_verify (about 1 s).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from steer.rewards.extract import (
    canonical_answer,
    clean_gold,
    hopeless_answer,
    last_answer_line,
    last_boxed,
    strip_math_delims,
)
from steer.rewards.mv_shape import _top_split
from steer.rewards.mv_verdict import _digits_missing, _mv_normal_form, quick_verdict

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


def _collection_size(s: str) -> int | None:
    """Size of a tuple/interval/list answer (``(a,b)``, ``[a,b)``, ``a,b,c``), else None."""
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,000 is a number
        return None
    inner = s
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
    n = len(_top_split(inner, ","))  # top-level comma-separated items
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
    # the last \boxed{}, else the last "Answer:" line (``raw``), and its text without delimiters
    raw = ans = last_boxed(response)
    if raw is None:
        raw = last_answer_line(response)
        ans = None if raw is None else strip_math_delims(raw)
    if raw is not None:
        why = hopeless_answer(raw, gold)
        if why:
            return False, raw[:200], why
        ans = canonical_answer(ans)
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
