"""The math task of the real-model recipe: rewards go through steer.rewards' process pool."""

from __future__ import annotations

import time

import pytest

from steer.train.config import TaskConfig
from steer.train.tasks import MathTaskAdapter, build_task, score_batch


@pytest.fixture(scope="module")
def aime_task():
    from steer.data.benchmarks import benchmark_path

    try:
        path = benchmark_path("aime24")
    except (FileNotFoundError, ValueError) as exc:  # pragma: no cover - the data ships with CI
        pytest.skip(f"benchmark data not found: {exc}")
    cfg = TaskConfig(name="math", train_path=str(path), train_size=5, heldout_size=3)
    return build_task(cfg)


def test_math_task_scores_gold_right_and_other_gold_wrong(aime_task):
    assert isinstance(aime_task, MathTaskAdapter)
    problems = aime_task.train_problems()
    assert len(problems) == 5
    right = [f"Some reasoning.\nAnswer: {p.gold}" for p in problems]
    wrong = [f"Some reasoning.\nAnswer: {int(p.gold) + 1}" for p in problems]
    assert score_batch(aime_task, problems, right) == [True] * 5
    assert score_batch(aime_task, problems, wrong) == [False] * 5
    assert aime_task.correct(problems[0], right[0]) is True


def test_math_task_pathological_response_is_wrong_within_the_hard_limit(aime_task):
    # A power tower that math-verify's own alarm cannot interrupt (spec evaluation.md §1):
    # in the trainer it must be killed by the pool's hard limit, not hang the step.
    p = aime_task.train_problems()[0]
    tower = r"\boxed{\dfrac{5^{\left(5^{\left(5^{\left(5^5\right)}\right)} - 4\right)} - 5}{16}}"
    t0 = time.monotonic()
    verdicts = score_batch(aime_task, [p, p], [tower, f"Answer: {p.gold}"])
    assert verdicts == [False, True]
    assert time.monotonic() - t0 < 30
