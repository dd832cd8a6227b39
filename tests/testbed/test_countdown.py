"""Countdown task: generator, solver, verifier, canonical forms (issue 3, "Testbed")."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from steer.testbed.countdown import (
    CountdownConfig,
    CountdownTask,
    canonical_form,
    distinct_correct_solutions,
    enumerate_trees,
    parse_steps,
    solve,
    solve_all_targets,
    split_of,
    verify,
)

# ---------------------------------------------------------------------------------------------
# An independent brute force: walk every sequence of steps over a pool of (value, is_result)
# items, both operand orders, written without the solver's subset programme or canonical forms.
# ---------------------------------------------------------------------------------------------


def _brute_force_sequences(numbers):
    """Every valid response (as a step string, any operand order, any step order) whose final
    result leaves no unused intermediate result. Yields (response, final value)."""

    def rec(pool, steps):
        # pool: list of (value, is_result)
        results = [i for i, (_, r) in enumerate(pool) if r]
        if steps and len(results) == 1:
            yield ",".join(steps), pool[results[0]][0]
        for i, j in itertools.permutations(range(len(pool)), 2):
            a, b = pool[i][0], pool[j][0]
            rest = [pool[t] for t in range(len(pool)) if t not in (i, j)]
            for op, val in (("+", a + b), ("*", a * b), ("-", a - b)):
                if val < 0:
                    continue
                yield from rec([*rest, (val, True)], [*steps, f"{a}{op}{b}={val}"])

    yield from rec([(x, False) for x in numbers], [])


def _tree_key_from_steps(numbers, response):
    """Tree of a response up to commutativity only (no associativity), by replaying its steps."""
    given = Counter(numbers)
    pending = {}
    for part in response.split(","):
        lhs, c = part.split("=")
        for op in "+*-":
            if op in lhs:
                a, b = lhs.split(op)
                break
        keys = []
        for v in (int(a), int(b)):
            if pending.get(v):
                keys.append(pending[v].pop())
            else:
                given[v] -= 1
                keys.append(str(v))
        if op in "+*":
            keys.sort()
        key = f"({keys[0]}{op}{keys[1]})"
        pending.setdefault(int(c), []).append(key)
    return key


SMALL_CASES = [
    ((3, 5, 7), 26),
    ((2, 3, 4), 10),
    ((1, 2, 3), 6),
    ((2, 2, 3), 7),
    ((4, 4, 4), 8),
    ((1, 1, 5, 6), 12),
    ((2, 3, 5, 7), 24),
    ((3, 3, 6, 9), 18),
    ((1, 4, 6, 12), 30),
]


@pytest.mark.parametrize("numbers,target", SMALL_CASES)
def test_solver_matches_independent_brute_force(numbers, target):
    seqs = [r for r, v in _brute_force_sequences(list(numbers)) if v == target]
    assert seqs, "the small cases all have solutions"
    # every brute-force sequence verifies, and its canonical form is one of the solver's
    brute_canon = set()
    brute_trees = set()
    for r in seqs:
        res = verify(numbers, target, r)
        assert res.ok, (r, res.reason)
        brute_canon.add(res.canonical)
        brute_trees.add(_tree_key_from_steps(list(numbers), r))
    solver = solve(numbers, target)
    assert len(solver) == len(set(solver))
    assert {canonical_form(numbers, target, s) for s in solver} == brute_canon
    assert len(solver) == len(brute_canon)
    trees = enumerate_trees(numbers, target)
    assert len(trees) == len(brute_trees)
    assert {_tree_key_from_steps(list(numbers), t) for t in trees} == brute_trees


def test_solver_on_random_problems_against_brute_force():
    rng = random.Random(7)
    for _ in range(12):
        numbers = tuple(sorted(rng.randint(1, 9) for _ in range(rng.choice((3, 4)))))
        by_value = {}
        for r, v in _brute_force_sequences(list(numbers)):
            by_value.setdefault(v, set()).add(canonical_form(numbers, v, r))
        table = solve_all_targets(numbers)
        assert set(table) == set(by_value)
        for v in rng.sample(sorted(by_value), 5):
            assert {canonical_form(numbers, v, s) for s in solve(numbers, v)} == by_value[v]


def test_every_solver_solution_verifies():
    task = CountdownTask()
    for p in task.problems("heldout", 40):
        assert len(p.solutions) >= task.config.min_solutions
        for s in p.solutions:
            assert p.verify(s), (p, s)
        for s in enumerate_trees(p.numbers, p.target)[:50]:
            assert p.verify(s), (p, s)
        # the representatives are pairwise different canonical solutions
        assert distinct_correct_solutions(p, p.solutions) == len(p.solutions)


def test_canonical_form_merges_commutative_and_associative_variants():
    n, t = (2, 3, 5, 7), 15
    variants = ["5+3=8,8+7=15", "3+5=8,7+8=15", "7+5=12,12+3=15", "3+7=10,5+10=15"]
    forms = {canonical_form(n, t, v) for v in variants}
    assert len(forms) == 1 and None not in forms
    # subtraction is not rewritten: (a+b)-c and (a-c)+b are different solutions
    n2, t2 = (2, 5, 7), 10
    a = canonical_form(n2, t2, "7+5=12,12-2=10")
    b = canonical_form(n2, t2, "7-2=5,5+5=10")
    assert a is not None and b is not None and a != b
    # independent steps in either order are the same solution
    n3, t3 = (2, 3, 4, 5), 26
    assert canonical_form(n3, t3, "5*4=20,3*2=6,20+6=26") == canonical_form(n3, t3, "3*2=6,5*4=20,6+20=26")


def test_distinct_correct_solutions_counts_canonical_forms():
    task = CountdownTask()
    p = next(p for p in task.problems("train", 50) if len(p.solutions) >= 3)
    s0, s1 = p.solutions[0], p.solutions[1]
    assert distinct_correct_solutions(p, [s0, s0, " " + s0 + " "]) == 1
    assert distinct_correct_solutions(p, [s0, s1, "garbage", ""]) == 2
    assert distinct_correct_solutions(p, []) == 0


@pytest.mark.parametrize(
    "response,reason",
    [
        ("7*3=21,21+5=26", ""),
        (" 7*3=21, 21+5=26 ", ""),
        ("3*7=21,5+21=26", ""),
        ("7*3=21,21+5=27", "wrong arithmetic"),
        ("7*3=20,20+6=26", "wrong arithmetic"),
        ("7*3=21,21+3=24", "not available"),  # 3 reused
        ("7*7=49", "not available"),  # 7 used twice
        ("9*3=27,27-1=26", "not available"),  # 9 and 1 not given
        ("5-7=-2", "malformed"),  # a negative number cannot even be written
        ("3-5=0", "negative result"),  # recomputed, not trusted: 3-5 is negative
        ("7*3=21", "wrong final result"),
        ("7*3=21,5+2=7", "unused intermediate result"),  # dead step (21 unused)
        ("7*3=21,21+5=26,", "malformed"),
        ("7*3=21;21+5=26", "malformed"),
        ("7 * 3 = 21, 21+5=26", "malformed"),
        ("7x3=21,21+5=26", "malformed"),
        ("7/1=7", "malformed"),
        ("07*3=21,21+5=26", "malformed"),
        ("7*3=21,21+5=26 so 26", "malformed"),
        ("__import__('os')", "malformed"),
        ("", "malformed"),
        ("26", "malformed"),
        ("7*3=21,21+5=26\n7*3=21", "malformed"),
    ],
)
def test_verifier_accepts_and_rejects(response, reason):
    res = verify((2, 3, 5, 7), 26, response)
    if reason:
        assert not res.ok
        assert reason in res.reason, res.reason
    else:
        assert res.ok, res.reason


def test_verifier_handles_non_strings_and_huge_numbers():
    assert not verify((2, 3), 6, None).ok  # type: ignore[arg-type]
    assert not verify((2, 3), 6, "9" * 50 + "*2=1").ok
    assert parse_steps(",".join(["1+1=2"] * 100)) is None


def test_verifier_intermediate_equal_to_given_number():
    # 3+3=6 uses both given 3s; then the result 6 and the given 6 are both available
    assert verify((3, 3, 6), 12, "3+3=6,6+6=12").ok
    assert not verify((3, 6), 12, "6+6=12").ok


WIDE = CountdownConfig(
    min_count=3, max_count=4, min_number=1, max_number=12, min_target=10, max_target=99, min_solutions=3
)


def test_generator_deterministic_and_seed_separated():
    task = CountdownTask(WIDE)
    a = task.problems("train", 30)
    b = CountdownTask(WIDE).problems("train", 30)
    assert a == b
    c = task.problems("train", 30, seed=999)
    assert [p.key for p in a] != [p.key for p in c]
    held = task.problems("heldout", 100)
    train = task.problems("train", 400)
    assert not {p.key for p in held} & {p.key for p in train}
    assert len({p.key for p in train}) == 400
    assert all(split_of(p.key) == "train" for p in train)
    assert all(split_of(p.key) == "heldout" for p in held)


def test_generator_respects_config():
    cfg = CountdownConfig(
        min_count=3, max_count=3, max_number=9, min_target=10, max_target=60, min_solutions=2
    )
    ps = CountdownTask(cfg).problems("train", 50)
    for p in ps:
        assert len(p.numbers) == 3 and all(1 <= x <= 9 for x in p.numbers)
        assert 10 <= p.target <= 60 and p.target not in p.numbers
        assert len(p.solutions) >= 2
        assert p.prompt == f"make {p.target} from {' '.join(map(str, p.numbers))}"
        assert p.reward(p.answer) == 1.0 and p.reward("1+1=2") == 0.0


def test_config_validation():
    with pytest.raises(ValueError, match="min_count"):
        CountdownConfig(min_count=1).validate()
    with pytest.raises(ValueError, match="seed"):
        CountdownTask(CountdownConfig(train_seed=1, heldout_seed=1))
    with pytest.raises(ValueError, match="split"):
        CountdownTask().problems("test", 3)
    impossible = CountdownConfig(min_count=2, max_count=2, max_number=2, min_solutions=50)
    with pytest.raises(ValueError, match="widen"):
        CountdownTask(impossible).problems("train", 5)
