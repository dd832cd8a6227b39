"""Answer extraction helpers shared by the scorers (spec evaluation.md §1-§2).

Pure string functions (no sympy): bounded-length tail cut, last ``\\boxed{...}`` with brace
matching, last ``Answer: ...`` line.
"""

from __future__ import annotations

import re

from steer.data.text import last_boxed  # noqa: F401  (re-exported)

#: Default number of characters kept from the END of a response before any parsing. Answers are
#: at the end; a 3072-token response is about 10k characters.
DEFAULT_MAX_CHARS = 8000

_ANSWER_RE = re.compile(r"(?i)answer\s*:\s*([^\n]+)")


def truncate_tail(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Keep the last ``max_chars`` characters of ``text`` (answers are at the end)."""
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if len(text) <= max_chars:
        return text
    return text[-max_chars:]


#: An ``Answer:`` value that opens a group on its line may continue over this many more lines.
MAX_ANSWER_LINES = 20


def _unbalanced(s: str) -> bool:
    """True when ``s`` leaves a brace group, a ``\\begin{..}``, a display block (``\\[``,
    ``$$``) or an inline ``$`` open."""
    if s.count("\\[") > s.count("\\]") or s.count("$$") % 2 == 1:
        return True
    s = s.replace("$$", "")
    depth, j = 0, 0
    while j < len(s):
        ch = s[j]
        if ch == "\\":
            j += 2
            continue
        depth += ch == "{"
        depth -= ch == "}"
        j += 1
    dollars = len(re.findall(r"(?<!\\)\$", s))
    return depth > 0 or s.count("\\begin{") > s.count("\\end{") or dollars % 2 == 1


def last_answer_line(text: str) -> str | None:
    """Text after the last ``Answer:`` (case-insensitive) up to the end of its line, stripped.

    When that line leaves a brace group, an environment (``\\begin{pmatrix}``), a display block
    (``Answer: \\[`` with the answer on the next lines, or ``$$``) or a ``$`` open, the following
    lines are taken too until it closes (at most :data:`MAX_ANSWER_LINES`), so a multi-line
    answer is read whole.
    """
    last = None
    for m in _ANSWER_RE.finditer(text):
        last = m
    if last is None:
        return None
    ans = last.group(1)
    if _unbalanced(ans):
        rest = text[last.end(1) :].split("\n")[1 : MAX_ANSWER_LINES + 1]
        acc = ans
        for line in rest:
            acc += "\n" + line
            if not _unbalanced(acc):
                ans = acc
                break
    ans = ans.strip()
    return ans or None


def strip_math_delims(s: str) -> str:
    """Remove surrounding ``$``/``$$``/``\\(\\)``/``\\[\\]``, markdown bold and a final period."""
    s = s.strip()
    changed = True
    while changed and s:
        changed = False
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                s = s[len(a) : len(s) - len(b)].strip()
                changed = True
        if len(s) > 1 and s.endswith("."):
            s = s[:-1].rstrip()
            changed = True
    return s


def clean_gold(gold: str) -> str:
    """Gold string without surrounding math delimiters, a final period or a stray ``$``
    (one olympiadbench gold ends in ``$.``)."""
    g = strip_math_delims(str(gold).strip())
    for _ in range(3):
        g = g.rstrip(". ").strip()
        if g.count("$") % 2 == 1:
            g = g.strip("$").strip()
    return g


_UNIT_TAIL = (
    "dollars",
    "dollar",
    "cents",
    "degrees",
    "degree",
    "units",
    "cm",
    "meters",
    "inches",
    "feet",
    "minutes",
    "hours",
    "seconds",
    "days",
    "years",
    "ways",
    "students",
    "points",
)
_PLAIN_NUM = r"-?\d+(?:\.\d+)?"
_UNIT_RE = re.compile(
    r"(" + _PLAIN_NUM + r")\s*(?:\\[ ,;:!]\s*)*(?:\\text\{\s*)?(?:" + "|".join(_UNIT_TAIL) + r")\}?\s*"
)
_REPEAT_RE = re.compile(r"(-?)(\d*)\.(\d*)\\overline\{(\d{1,12})\}")


def _repeating_to_frac(m: re.Match) -> str:
    from fractions import Fraction

    sign, whole, fixed, rep = m.group(1), m.group(2) or "0", m.group(3), m.group(4)
    value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    if sign:
        value = -value
    if value.denominator == 1:
        return str(value.numerator)
    neg = "-" if value < 0 else ""
    return f"{neg}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def canonical_answer(s: str) -> str:
    """Plain forms of a few answer spellings that math parsers miss, for both sides of a
    comparison: ``276\\,000`` / ``276{,}000`` -> ``276000``; ``45°`` -> ``45^{\\circ}``; a
    number followed by a unit word (``18 dollars``, ``18\\text{ dollars}``) -> the number;
    a repeating decimal ``0.\\overline{3}`` -> ``\\frac{1}{3}``. Anything else is unchanged."""
    t = s.strip()
    t = re.sub(r"(?<=\d)(?:\\[,;:! ]|\{,\}|\s)(?=\d{3}(?!\d))", "", t)
    t = t.replace("°", "^{\\circ}")
    m = _UNIT_RE.fullmatch(t)
    if m:
        t = m.group(1)
    if "\\overline" in t:
        t = _REPEAT_RE.sub(_repeating_to_frac, t)
    return t


def split_top_level(s: str, token_re: re.Pattern) -> list[str]:
    """``s`` cut at the matches of ``token_re`` outside brackets and braces."""
    parts, depth, cur, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            m = token_re.match(s, i)
            if m:
                parts.append(s[cur:i])
                i = cur = m.end()
                continue
        i += 1
    parts.append(s[cur:])
    return parts


#: Bounds of :func:`hopeless_answer`: an answer beyond them is wrong without being parsed.
MAX_DIGIT_RUN = 1000
MAX_SIGN_RUN = 40
MAX_NESTING = 24
#: Largest integer literal whose factorial an answer may hold (``100000!`` has 456,574 digits).
MAX_FACTORIAL_ARG = 10_000

_DIGITS_RE = re.compile(r"\d+")
#: A maximal run of signs (spaces and tabs between them allowed); found in one linear pass.
_SIGNS_RE = re.compile(r"[-+](?:[ \t]*[-+])*")
#: What may follow a run of signs that begins an expression (a markdown rule ``-----`` ends its
#: line instead).
_OPERAND_RE = re.compile(r"[ \t]*[\w\\{(\[.]")


def _long_digit_run(s: str) -> bool:
    return any(m.end() - m.start() > MAX_DIGIT_RUN for m in _DIGITS_RE.finditer(s))


def _long_sign_run(s: str) -> bool:
    for m in _SIGNS_RE.finditer(s):
        if (
            m.end() - m.start() > MAX_SIGN_RUN
            and (m.group().count("-") + m.group().count("+")) > MAX_SIGN_RUN
        ):
            if _OPERAND_RE.match(s, m.end()):
                return True
    return False


_FACTORIAL_RE = re.compile(r"(\d+)\s*\}?\s*!")


def _nesting(s: str) -> int:
    depth = most = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            if depth > most:
                most = depth
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return most


def hopeless_answer(answer: str, gold: str = "", *, whole_response: bool = False) -> str | None:
    """Why ``answer`` is wrong without parsing it, or None.

    Answers that make the parsers fail on every gold, or run until the time limit, are judged
    wrong here, cheaply and without killing a worker: an integer literal of more than
    :data:`MAX_DIGIT_RUN` digits (Python refuses to read one beyond 4,300), a run of more than
    :data:`MAX_SIGN_RUN` signs (``----...-1``), brackets nested deeper than :data:`MAX_NESTING`
    (latex2sympy's parser is exponential in the depth), a factorial of a literal beyond
    :data:`MAX_FACTORIAL_ARG`. A gold that itself goes past a bound lifts that bound (such an
    answer may then be right, and the parsers decide). ``whole_response``: ``answer`` is a whole
    response (prose, whose brackets need not balance), so nesting is not checked.
    """
    if _long_digit_run(answer) and not _long_digit_run(gold):
        return f"rejected: a literal of more than {MAX_DIGIT_RUN} digits"
    if _long_sign_run(answer) and not _long_sign_run(gold):
        return f"rejected: a run of more than {MAX_SIGN_RUN} signs"
    if not whole_response and _nesting(answer) > MAX_NESTING and _nesting(gold) <= MAX_NESTING:
        return f"rejected: brackets nested deeper than {MAX_NESTING}"
    if "!" in answer:
        big = [
            m
            for m in _FACTORIAL_RE.finditer(answer)
            if len(m.group(1)) > 6 or int(m.group(1)) > MAX_FACTORIAL_ARG
        ]
        if big and not any(m.group(0).replace(" ", "") in gold.replace(" ", "") for m in big):
            return f"rejected: a factorial of a number beyond {MAX_FACTORIAL_ARG}"
    return None
