"""Math-Verify scorer (spec evaluation.md §1).

* The gold is wrapped in ``\\boxed{}`` before parsing (raw gold strings mis-parse, spec §1
  "Gold-answer format pitfall").
* The response is parsed with ``boxed_match_priority=0`` so a ``\\boxed{}`` wins over every other
  candidate (the README's advice when the prompt asks for it). When the response has no
  ``\\boxed{}`` but an ``Answer: ...`` line (the AIME/AMC prompts ask for one), the text of the
  last such line is parsed as if it were boxed; if that yields nothing, the whole response is
  parsed with the default priorities.
* ``verify(gold, pred)``: gold first (the function is asymmetric).
* math-verify's own SIGALRM timeouts are switched off (``None``): the hard limit is enforced by
  the process pool (``steer.rewards.pool``) which kills a worker that runs past it.

Runs inside pool workers; importing this module imports math_verify (about 1 s).
"""

from __future__ import annotations

from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from steer.rewards.extract import clean_gold, last_answer_line, last_boxed, strip_math_delims

_GOLD_CONFIG = (LatexExtractionConfig(boxed_match_priority=0),)
# The same LaTeX normalisation as the gold (malformed operators such as ``\\frac{270}7`` fixed
# on both sides, else a gold that needs the fix can never match its own string).
_PRED_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def _wrap_gold(gold: str) -> str:
    g = gold.strip()
    if "\\boxed" in g:
        return g
    return "\\boxed{" + clean_gold(g) + "}"


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> list:
    """Parse a raw gold answer string (wrapped in ``\\boxed{}`` first)."""
    return parse(_wrap_gold(gold), extraction_config=_GOLD_CONFIG, parsing_timeout=None)


def _parse_pred(text: str) -> list:
    return parse(text, extraction_config=_PRED_CONFIG, parsing_timeout=None)


def _pred_str(parsed: list) -> str:
    return str(parsed[-1]) if len(parsed) > 1 else str(parsed[0])


def score_math_verify(response: str, gold: str) -> tuple[bool, str | None, str]:
    """Return ``(correct, extracted prediction, reason)`` for one (response, gold) pair."""
    gold_parsed = parse_gold(str(gold))
    if not gold_parsed:
        return False, None, "error: gold answer does not parse"
    candidates: list[str] = []
    if last_boxed(response) is None:
        line = last_answer_line(response)
        if line is not None:
            candidates.append("\\boxed{" + strip_math_delims(line) + "}")
    candidates.append(response)
    for text in candidates:
        pred = _parse_pred(text)
        if pred:
            ok = bool(verify(gold_parsed, pred, timeout_seconds=None))
            return ok, _pred_str(pred), "ok" if ok else "mismatch"
    return False, None, "no answer"
