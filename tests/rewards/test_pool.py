"""The verification pool: hard per-item limit with kill + respawn, error reasons, cache, the
verl signature, use from threads."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from steer.rewards import ScoreItem, VerifierPool, compute_score, score_responses
from steer.rewards.registry import SCORERS, ScorerSpec, register_scorer

LIMIT = 2.0

ADVERSARIAL = {
    "power_tower": r"\boxed{\dfrac{5^{\left(5^{\left(5^{\left(5^5\right)}\right)} - 4\right)} - 5}{16}}",
    "factorial": r"The answer is $\boxed{(10^{10})!}$",
    "one_megabyte": "9" * 1_000_000,
    "one_megabyte_latex": ("$x^2 + \\frac{1}{2}$ " * 60_000),
    "unbalanced": r"\boxed{\frac{1}{2" + "{" * 500,
    "nested_fractions": "\\boxed{" + "\\frac{1}{1+" * 200 + "x" + "}" * 200 + "}",
    "huge_power": r"\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
}


def crash_scorer(response, gold):
    os._exit(3)


def hungry_scorer(response, gold):
    block = bytearray(int(response) * 1024 * 1024)
    return True, str(len(block)), "ok"


_POISONED = []


def poison_scorer(response, gold):
    """Leaves state behind and raises on ``POISON``; every other item is 'correct' only when an
    earlier item's state reached it."""
    if response == "POISON":
        _POISONED.append(True)
        raise RuntimeError("poisoned")
    return bool(_POISONED), response, "ok" if _POISONED else "mismatch"


def sleepy_scorer(response, gold):
    time.sleep(float(response))
    return True, response, "ok"


@pytest.fixture(scope="module")
def pool():
    register_scorer(ScorerSpec("test_crash", __name__, "crash_scorer", 1.0, 0.0, "test"))
    register_scorer(ScorerSpec("test_sleep", __name__, "sleepy_scorer", 1.0, 0.0, "test"))
    register_scorer(ScorerSpec("test_hungry", __name__, "hungry_scorer", 1.0, 0.0, "test"))
    register_scorer(ScorerSpec("test_poison", __name__, "poison_scorer", 1.0, 0.0, "test"))
    with VerifierPool(2, timeout=LIMIT) as p:
        yield p
    SCORERS.pop("test_crash", None)
    SCORERS.pop("test_sleep", None)
    SCORERS.pop("test_hungry", None)
    SCORERS.pop("test_poison", None)


def test_basic_and_order(pool):
    items = [(f"so \\boxed{{{i}}}", str(i if i % 3 else i + 1)) for i in range(60)]
    v = pool.score_batch(items)
    assert [x.correct for x in v] == [bool(i % 3) for i in range(60)]
    assert all(x.reason in ("ok", "mismatch") for x in v)
    assert v[1].pred == "1" and v[1].score == 1.0 and v[0].score == 0.0


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_wrong_within_limit(pool, name):
    t = time.monotonic()
    v = pool.score(ADVERSARIAL[name], "5")
    wall = time.monotonic() - t
    assert v.correct is False
    assert v.score == 0.0
    assert v.reason in ("timeout", "mismatch", "no answer") or v.reason.startswith(("error:", "rejected:"))
    # the kill happens at the limit (without it the power tower runs for minutes); the slack
    # covers scheduling delays on a loaded machine, it is not a speed check
    assert v.seconds <= LIMIT + 3.0
    assert wall <= LIMIT + 20.0
    # the pool keeps serving
    assert pool.score(r"\boxed{42}", "42").correct


def test_adversarial_batch_mixed_with_good_items(pool):
    items = []
    for i, a in enumerate(ADVERSARIAL.values()):
        items.append(ScoreItem(a + " ", "5"))  # distinct from the cached single calls
        items.append(ScoreItem(f"\\boxed{{{i}}}", str(i)))
    v = pool.score_batch(items)
    assert [x.correct for x in v[1::2]] == [True] * len(ADVERSARIAL)
    assert not any(x.correct for x in v[0::2])


def test_timeout_kills_and_replaces(pool):
    before = dict(pool.stats)
    v = pool.score_batch([ScoreItem("30", "x", "test_sleep"), ScoreItem("0", "x", "test_sleep")])
    assert v[0].reason == "timeout" and not v[0].correct
    assert v[1].correct
    assert pool.stats["timeouts"] == before["timeouts"] + 1
    assert pool.stats["respawns"] >= before["respawns"] + 1


def test_unfinished_items_of_a_timed_out_chunk_are_retried(pool):  # pool registers test_sleep
    with VerifierPool(1, timeout=1.0, chunk_size=8) as p:
        items = [ScoreItem(str(s), f"g{i}", "test_sleep") for i, s in enumerate([0, 0, 30, 0, 0, 0])]
        v = p.score_batch(items)
    assert [x.reason for x in v] == ["ok", "ok", "timeout", "ok", "ok", "ok"]


def test_worker_death_is_an_error_verdict(pool):
    v = pool.score_batch([ScoreItem("a", "b", "test_crash"), ScoreItem(r"\boxed{3}", "3")])
    assert v[0].reason.startswith("error: worker died") and not v[0].correct
    assert v[1].correct


def test_cache_and_dedupe(pool):
    r = r"we get \boxed{\frac{3}{4}}"
    a = pool.score(r, "0.75")
    b = pool.score(r, "0.75")
    assert a.correct and b.correct and b.cached and not a.cached
    before = pool.stats["verified"]
    v = pool.score_batch([("\\boxed{77}", "77")] * 5)
    assert all(x.correct for x in v)
    assert pool.stats["verified"] - before == 1


def test_long_response_is_cut_keeping_the_tail(pool):
    resp = "\\boxed{1} " + "filler " * 100_000 + "\\boxed{2}"
    assert pool.score(resp, "2").correct
    assert not pool.score(resp, "1").correct


def test_bad_items(pool):
    with pytest.raises(ValueError, match="item 0"):
        pool.score_batch([("x", None)])
    with pytest.raises(ValueError, match="unknown scorer"):
        pool.score_batch([("x", "1", "nope")])
    with pytest.raises(ValueError, match="item 1"):
        pool.score_batch([("x", "1"), 5])


def test_verl_signature_and_batch_api(pool):
    d = compute_score("math_dapo", "work\nAnswer: 34", "34", {"index": 0}, pool=pool)
    assert d["score"] == 1.0 and d["acc"] == 1.0 and d["pred"] == "34"
    d = compute_score("math_dapo", "work\nAnswer: 35", "34", None, pool=pool)
    assert d["score"] == -1.0 and d["acc"] == 0.0
    d = compute_score("math500", r"\boxed{\frac12}", "0.5", {"scorer": "qwen"}, pool=pool)
    assert d["score"] == 1.0
    v = score_responses(["Answer: 1", r"\boxed{2}"], ["1", "3"], data_sources="aime24", pool=pool)
    assert [x.correct for x in v] == [True, False]
    with pytest.raises(ValueError):
        score_responses(["a"], ["1", "2"], pool=pool)


def test_usable_from_threads(pool):
    def one(i):
        return pool.score(f"\\boxed{{{i}}}", str(i)).correct

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(one, range(20)))


def test_closed_pool_refuses():
    p = VerifierPool(1, timeout=1.0)
    p.close()
    with pytest.raises(RuntimeError):
        p.score("1", "1")
    with pytest.raises(ValueError):
        VerifierPool(1, timeout=0)


def test_memory_limit_is_added_to_the_inherited_address_space(pool):  # pool registers test_hungry
    import mmap

    # a host with a large address space (a model, CUDA mappings): 6 GiB reserved, not touched
    reserved = mmap.mmap(-1, 6 << 30)
    try:
        with VerifierPool(1, timeout=5.0, mem_limit_mb=256) as p:
            v = p.score_batch(
                [
                    ScoreItem(r"\boxed{\frac{1}{2}}", "0.5"),
                    ScoreItem("16", "x", "test_hungry"),
                    ScoreItem("2048", "x", "test_hungry"),
                ]
            )
    finally:
        reserved.close()
    assert v[0].correct and v[1].correct
    assert v[2].reason == "error: MemoryError" and not v[2].correct


def test_answers_sent_before_a_crash_are_kept(pool):  # pool registers the test scorers
    with VerifierPool(1, timeout=5.0, chunk_size=8) as p:
        v = p.score_batch(
            [
                ScoreItem("0", "a", "test_sleep"),
                ScoreItem("0", "b", "test_sleep"),
                ScoreItem("x", "c", "test_crash"),
                ScoreItem("0", "d", "test_sleep"),
            ]
        )
        assert [x.reason.split(" (")[0] for x in v] == ["ok", "ok", "error: worker died", "ok"]
        assert p.score(r"\boxed{5}", "5").correct


def test_a_scorer_that_raised_cannot_change_later_items(pool):  # pool registers test_poison
    with VerifierPool(1, timeout=5.0, chunk_size=8) as p:
        items = [ScoreItem(r, "g", "test_poison") for r in ("a", "POISON", "b", "c", "d")]
        v = p.score_batch(items)
        assert [x.reason.split(":")[0] for x in v] == ["mismatch", "error", "mismatch", "mismatch", "mismatch"]
        assert not any(x.correct for x in v)
        assert p.stats["recycled"] == 1
        # and in a later batch
        assert not p.score_batch([ScoreItem("e", "g", "test_poison")])[0].correct


def test_timeouts_and_deaths_are_not_cached(pool):  # pool registers test_sleep / test_crash
    for item in (ScoreItem("30", "never", "test_sleep"), ScoreItem("a", "never", "test_crash")):
        first = pool.score_batch([item])[0]
        again = pool.score_batch([item])[0]
        assert not first.correct and not again.correct
        assert not again.cached, again
        assert again.reason == first.reason.split(" (")[0] or again.reason.startswith("error: worker died")
    v = pool.score(r"\boxed{41}", "41")
    assert pool.score(r"\boxed{41}", "41").cached and v.correct  # final verdicts still are


def test_gigantic_answers_cost_no_worker_time():
    """A universal answer such as (10^{10})! against a gold outside the exact evaluator's subset
    is wrong at once, not after the time limit (each one would cost a worker its limit)."""
    with VerifierPool(1, timeout=2.0) as p:
        items = [
            ScoreItem(f"so \\boxed{{{u}}}", r"\lfloor \frac{n}{2} \rfloor + k", s)
            for u in ("(10^{10})!", "100000!", "10^{10^{10}}")
            for s in ("math_verify", "qwen")
        ]
        v = p.score_batch(items)
    # 100000! is refused before parsing (a factorial of a number beyond 10^4)
    assert all(x.reason == "mismatch" or x.reason.startswith("rejected:") for x in v)
    assert not any(x.correct for x in v)
    assert max(x.cpu_seconds for x in v) < 1.0
