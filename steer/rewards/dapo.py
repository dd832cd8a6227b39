"""DAPO-style scorer (spec evaluation.md §2 "Prompt templates", integrations.md "Rewards").

Rules (written from the published description, not copied): look only at the last 300
characters of the response; take the text after the last ``Answer:`` there; normalise it and the
gold with Minerva-style final-answer normalisation; exact string equality; +1 / -1. Deviation:
the ``=`` split applies only to a single assignment.

The answer is cleaned like the gold (outer ``$``, a final period).

Extension (documented): when the tail has no ``Answer:`` line, the last ``\\boxed{}`` in the tail
is used instead (the DAPO-Math-17k prompts in ../shared/data ask for ``\\boxed{}``; verl's
``strict_box_verify`` mode reads a boxed answer the same way).
"""

from __future__ import annotations

import re

from steer.rewards.extract import clean_gold, last_answer_line, last_boxed

TAIL_CHARS = 300

# Minerva normalisation (Lewkowycz et al. 2022, appendix D), re-expressed.
_REMOVE = (
    "an ",
    "a ",
    ".$",
    "\\$",
    "\\ ",
    " ",
    "mbox",
    ",\\text{and}",
    "\\text{and}",
    "\\text{m}",
)
_UNITS = (
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "ft",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    "\\mathrm{th}",
    "^\\circ",
    "^{\\circ}",
    "\\;",
    ",\\!",
    "{,}",
    '"',
    "\\dots",
)


#: The left side of an assignment whose right side is the answer: a name (``k``, ``x_1``,
#: ``\\theta``, ``N_{\\max}``), possibly a function of one (``f(x)``).
_NAME_RE = re.compile(r"\s*(?:[A-Za-z]|\\[a-zA-Z]+)(?:_\{?[\w\\]+\}?)?(?:\([a-z]\))?\s*")


def normalize_final_answer(answer: str) -> str:
    """Minerva-style normalisation of a final answer string."""
    # the right side of one assignment to a name ("k = 5" -> "5"); a list of assignments stays
    # whole, so its last value alone ("f(n)=n, g(n)=1" -> "1") is not the answer, and so does an
    # equation ("5x-7y+11z+4=0" is not "0")
    s = answer
    if answer.count("=") == 1 and _NAME_RE.fullmatch(answer.split("=")[0]):
        s = answer.split("=")[-1]
    for r in _REMOVE:
        s = s.replace(r, "")
    for u in _UNITS:
        s = s.replace(u, "")
    # Text wrappers and boxes: keep the content; the one formula of a sentence ("is $5$") is
    # the answer, but a sentence with several ("$f(x)=ax+b$, where ... $a=8$") stays whole
    if s.count("$") == 2:
        s = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", r"$\3$", s)
    s = re.sub(r"(\\text\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\textbf\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\overline\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\boxed\{)(.*)(\})", r"\2", s)
    # \fracab -> \frac{a}{b}, \sqrta -> \sqrt{a}
    s = re.sub(r"(frac)([^{])(.)", r"frac{\2}{\3}", s)
    s = re.sub(r"(sqrt)([^{])", r"sqrt{\2}", s)
    s = s.replace("$", "")
    # 1,000 -> 1000
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    return s.strip()


def _join_inline(s: str) -> str:
    """``a$, $b`` (a list written as separate inline formulas) -> ``a, b``: the ``$...$`` rule
    below would otherwise keep only the separator, and every such list would equal every other."""
    return re.sub(r"\$\s*,\s*\$", ", ", s)


def score_dapo(response: str, gold: str) -> tuple[bool, str | None, str]:
    """Return ``(correct, extracted prediction, reason)``; the registry maps it to +1 / -1."""
    tail = response[-TAIL_CHARS:]
    pred = last_answer_line(tail)
    if pred is None:
        pred = last_boxed(tail)
    if pred is None:
        return False, None, "no answer"
    p = normalize_final_answer(_join_inline(clean_gold(pred)))  # cleaned like the gold ("18." -> "18")
    g = normalize_final_answer(_join_inline(clean_gold(str(gold))))
    ok = p == g
    return ok, p, "ok" if ok else "mismatch"
