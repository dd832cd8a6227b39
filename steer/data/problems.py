"""Problem records and row parsing for verl-format data (spec evaluation.md §3, shared/README.md).

A verl row: ``data_source``, ``prompt`` (chat messages), ``ability``, ``reward_model``
(``ground_truth``, ``style``), ``extra_info`` (``index``, ``raw_problem``, ``split``). Flat rows
(``problem``/``question`` + ``answer``/``final_answer``/``solution`` with a ``\\boxed{}``) are also
understood, so JSONL and HF folders in the Qwen/simpleRL layouts load too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from steer.data.text import last_boxed

#: The DAPO instruction wrapper used by the aime/amc (``Answer:``) and DAPO-Math-17k (``\\boxed``)
#: prompts. Group 1 is the problem.
_DAPO_WRAP = re.compile(
    r"^Solve the following math problem step by step\. The last line of your response should be of"
    r" the form .*? where \$?Answer is the answer to the problem\.\n\n(.*)\n\nRemember to put your"
    r" answer (?:on its own line after \"Answer:\"|in \\boxed\{\.\.\.\} format on its own line)\.\s*$",
    re.DOTALL,
)


@dataclass
class Problem:
    """One benchmark/training problem.

    ``problem`` is the bare problem text (instructions removed); ``prompt`` the chat messages as
    stored; ``answer_format`` is ``"answer_line"`` when the stored prompt asks for a last line
    ``Answer: ...``, else ``"boxed"``; ``repeats`` how many rows of the file carried it;
    ``source`` is ``file:row`` of its first row.
    """

    id: str
    problem: str
    gold: str
    prompt: list[dict]
    data_source: str = ""
    answer_format: str = "boxed"
    repeats: int = 1
    source: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Every field but ``extra``, in field order (the values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}


class EmptyGoldError(ValueError):
    """A row without a gold answer (missing, None or only whitespace)."""


def strip_dapo_instructions(text: str) -> str:
    """The problem inside a DAPO-wrapped prompt (unchanged when the text is not wrapped)."""
    m = _DAPO_WRAP.match(text)
    return m.group(1).strip() if m else text.strip()


def parse_row(row: dict[str, Any], *, where: str, name: str = "") -> Problem:
    """Parse one row (verl or flat layout). Errors name ``where`` (``file:row``)."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: row is {type(row).__name__}, expected a mapping")
    extra = row.get("extra_info") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: extra_info must be a mapping, got {type(extra).__name__}")
    prompt = row.get("prompt")
    if prompt is not None:
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ValueError(f"{where}: prompt must be a non-empty list of chat messages")
        msgs = []
        for j, m in enumerate(prompt):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not m.get("role"):
                raise ValueError(f"{where}: prompt message {j} needs string 'role' and 'content'")
            msgs.append({"role": str(m["role"]), "content": m["content"]})
        users = [m["content"] for m in msgs if m["role"] == "user"]
        if not users or not users[-1].strip():
            raise ValueError(f"{where}: prompt has no non-empty user message")
        problem = strip_dapo_instructions(users[-1])
    else:
        problem = row.get("problem") or row.get("question")
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"{where}: no 'prompt', 'problem' or 'question' field with text")
        problem = problem.strip()
        msgs = [{"role": "user", "content": problem}]
    gold = None
    rm = row.get("reward_model")
    if isinstance(rm, dict):
        gold = rm.get("ground_truth")
    if gold is None:
        gold = row.get("answer")
    if gold is None and row.get("final_answer") is not None:
        fa = row["final_answer"]
        gold = fa[0] if isinstance(fa, (list, tuple)) and fa else fa
        if isinstance(gold, str):
            gold = gold.strip().strip("$")
    if gold is None and isinstance(row.get("solution"), str):
        gold = last_boxed(row["solution"])
    if isinstance(gold, float) and gold.is_integer():
        gold = str(int(gold))  # AMC copies store 27.0
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not gold.strip():
        raise EmptyGoldError(f"{where}: no gold answer (reward_model.ground_truth / answer / final_answer)")
    idx = extra.get("index", row.get("id", row.get("idx", row.get("unique_id"))))
    pid = f"{name}/{idx}" if idx is not None else ""
    content = msgs[-1]["content"]
    fmt = "answer_line" if re.search(r"of the form Answer:|after \"Answer:\"", content) else "boxed"
    return Problem(
        id=pid,
        problem=problem,
        gold=gold.strip(),
        prompt=msgs,
        data_source=str(row.get("data_source") or name),
        answer_format=fmt,
        source=where,
        extra={k: v for k, v in extra.items() if k != "raw_problem"},
    )
