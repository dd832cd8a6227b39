"""Answer extraction helpers shared by the scorers (spec evaluation.md §1-§2).

Pure string functions (no sympy): bounded-length tail cut, last ``\\boxed{...}`` with brace
matching, last ``Answer: ...`` line.
"""

from __future__ import annotations

import re

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


def last_boxed(text: str, *, with_fbox: bool = True) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces.

    ``\\boxed 5`` (no brace) is understood as ``5``. Returns None when there is none or when the
    last one is not closed (unbalanced braces).
    """
    names = ("\\boxed", "\\fbox") if with_fbox else ("\\boxed",)
    pos = max(text.rfind(n) for n in names)
    if pos < 0:
        return None
    name = "\\boxed" if text.startswith("\\boxed", pos) else "\\fbox"
    i = pos + len(name)
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        # "\boxed 5" form: up to the next whitespace or "$".
        m = re.match(r"([^\s$]+)", text[i:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def last_answer_line(text: str) -> str | None:
    """Text after the last ``Answer:`` (case-insensitive) up to the end of its line, stripped."""
    last = None
    for m in _ANSWER_RE.finditer(text):
        last = m
    if last is None:
        return None
    ans = last.group(1).strip()
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
