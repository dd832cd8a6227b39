"""Prompt templates applied by name (spec evaluation.md §2 "Prompt templates").

* ``as_is``: the chat messages stored with the problem (the aime/amc/DAPO files carry the DAPO
  instruction; math500/minerva/olympiad the bare problem).
* ``qwen_boxed``: the Qwen2.5-Math CoT prompt: system ``Please reason step by step, and put your
  final answer within \\boxed{}.``, user = problem.
* ``dapo``: the DAPO ``Answer:`` template around the problem (one user message).
* ``dapo_boxed``: the DAPO-Math-17k ``\\boxed{}`` variant.

:func:`render` turns messages into a prompt string with the tokenizer's chat template when it has
one, else as plain ``role: content`` lines ending with ``assistant:``.
"""

from __future__ import annotations

from steer.data.problems import Problem

QWEN_BOXED_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
DAPO_TEMPLATE = (
    "Solve the following math problem step by step. The last line of your response should be of the"
    " form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)
DAPO_BOXED_TEMPLATE = (
    "Solve the following math problem step by step. The last line of your response should be of the"
    " form \\boxed{{Answer}} where Answer is the answer to the problem.\n\n{problem}\n\n"
    "Remember to put your answer in \\boxed{{...}} format on its own line."
)

TEMPLATES = ("as_is", "qwen_boxed", "dapo", "dapo_boxed")


def apply_template(problem: Problem, name: str = "as_is") -> list[dict]:
    """Chat messages for ``problem`` under template ``name`` (unknown name -> ValueError)."""
    if name == "as_is":
        return [dict(m) for m in problem.prompt]
    if name == "qwen_boxed":
        return [
            {"role": "system", "content": QWEN_BOXED_SYSTEM},
            {"role": "user", "content": problem.problem},
        ]
    if name == "dapo":
        return [{"role": "user", "content": DAPO_TEMPLATE.format(problem=problem.problem)}]
    if name == "dapo_boxed":
        return [{"role": "user", "content": DAPO_BOXED_TEMPLATE.format(problem=problem.problem)}]
    raise ValueError(f"unknown prompt template {name!r}; valid: {', '.join(TEMPLATES)}")


def answer_format(problem: Problem, template: str) -> str:
    """``"answer_line"`` or ``"boxed"``: what the prompt under ``template`` asks the model for."""
    if template == "dapo":
        return "answer_line"
    if template in ("qwen_boxed", "dapo_boxed"):
        return "boxed"
    return problem.answer_format


def render(messages: list[dict], tokenizer=None) -> str:
    """Prompt string: the tokenizer's chat template (with the generation prompt) if it has one."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"
