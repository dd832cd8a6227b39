"""reasoning-gym source with a strict scorer (issue 3, "Testbed"; spec evaluation.md §5)."""

from __future__ import annotations

import pytest

from steer.testbed import make_task, strict_match


@pytest.fixture(scope="module")
def chain():
    return make_task("chain_sum")


def test_strict_scorer_rejects_substrings_unlike_reasoning_gym(chain):
    p = chain.problems("heldout", 5)[0]
    assert p.verify(p.answer) and p.verify(f"  {p.answer}\n")
    for junk in (f"The answer is {p.answer}", f"{p.answer}0", f"x{p.answer}", f"{p.answer}.0", "", None):
        assert not p.verify(junk), junk
        assert p.reward(junk) == 0.0
    # reasoning-gym's own scorer gives partial credit for a substring: the reason for the strict one
    assert 0.0 < p.rg_score(f"The answer is {p.answer}") < 1.0


def test_basic_arithmetic_partial_credit_is_not_given():
    task = make_task("basic_arithmetic")
    p = task.problems("train", 3)[0]
    assert p.prompt.startswith("Calculate ")
    assert p.rg_score(f"answer {p.answer}") > 0.0
    assert not p.verify(f"answer {p.answer}")
    assert strict_match(p.answer, p.answer)


def test_splits_deterministic_and_disjoint(chain):
    a = chain.problems("train", 200)
    assert a == make_task("chain_sum").problems("train", 200)
    held = chain.problems("heldout", 60)
    assert not {p.prompt for p in a} & {p.prompt for p in held}
    assert len({p.prompt for p in a}) == 200
    assert [p.solutions for p in held[:3]] == [(p.answer,) for p in held[:3]]


def test_bad_config_and_names():
    with pytest.raises(ValueError, match="preset"):
        make_task("products")
    with pytest.raises(ValueError):
        make_task("chain_sum", train_seed=1, heldout_seed=1)
    with pytest.raises(ValueError, match="split"):
        make_task("chain_sum").problems("validation", 2)
    with pytest.raises(ValueError, match="valid fields"):
        make_task("countdown", no_such_field=1)
