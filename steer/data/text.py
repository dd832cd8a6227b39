"""Pure string helpers shared by the data layer and the reward scorers (no sympy, no rewards).

:func:`last_boxed` reads the gold of a flat row whose answer is the last ``\\boxed{}`` of its
``solution``; the scorers use the same function on responses.
"""

from __future__ import annotations

import re


def _matching_brace(text: str, i: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``text[i]``; escaped ``\\{``/``\\}`` are text, not
    braces. None when it is not closed."""
    depth = 0
    j, n = i, len(text)
    while j < n:
        ch = text[j]
        if ch == "\\":
            j += 2  # an escaped character (\{, \}, \\) never opens or closes a group
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return None


def last_boxed(text: str, *, with_fbox: bool = True) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces.

    ``\\{`` and ``\\}`` inside are literal (a set ``\\left\\{ 1 \\right.`` is fine). ``\\boxed 5``
    (no brace) is understood as ``5``. Returns None when there is none or when the last one is
    not closed.
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
    j = _matching_brace(text, i)
    return None if j is None else text[i + 1 : j]
