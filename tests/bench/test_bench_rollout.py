"""The pure helpers of benchmarks/bench_rollout.py (the benchmark itself is not part of the suite:
it needs the engine's own virtual environment and minutes of CPU)."""

from __future__ import annotations

import random

import pytest

from benchmarks.bench_rollout import _check_finish, abba_order, step_speedup, summarize


def test_abba_order_alternates_and_balances():
    assert abba_order(1) == ["hf", "engine"]
    assert abba_order(2) == ["hf", "engine", "engine", "hf"]
    for r in range(1, 7):
        o = abba_order(r)
        assert o.count("hf") == o.count("engine") == r
    with pytest.raises(ValueError):
        abba_order(0)


def test_step_speedup_against_direct_arithmetic():
    rng = random.Random(0)
    for _ in range(200):
        R, rest, s, sync = rng.uniform(0, 50), rng.uniform(0.1, 80), rng.uniform(0.1, 20), rng.uniform(0, 5)
        old = R + rest
        new = R / s + rest + sync
        assert step_speedup(R, rest, s, sync) == pytest.approx(old / new, rel=1e-12)
    # the smol step: rollout 26 s of 86 s; an infinitely fast free rollout gives 86/60
    assert step_speedup(26, 60, 1e12, 0) == pytest.approx(86 / 60)
    assert step_speedup(26, 60, 1.0, 0) == 1.0
    assert step_speedup(26, 60, 1.0, 2.0) < 1.0  # no speed-up, a sync cost: slower
    for bad in [(-1, 1, 1, 0), (1, 1, 0, 0), (1, 1, 1, -0.5), (1, -1, 1, 0)]:
        with pytest.raises(ValueError):
            step_speedup(*bad)


def test_check_finish_counts_broken_responses():
    stops = [2]
    ok = [[5, 6, 2], [7, 8, 9, 10]]
    assert _check_finish(ok, ["stop", "length"], stops, 4) == 0
    assert _check_finish([[5, 6]], ["stop"], stops, 4) == 1  # stop without its stop token
    assert _check_finish([[2, 5, 2]], ["stop"], stops, 4) == 1  # tokens after a stop token
    assert _check_finish([[5, 6, 7]], ["length"], stops, 4) == 1  # short of max_new_tokens
    assert _check_finish([[5, 2, 7, 8]], ["length"], stops, 4) == 1  # a stop token inside
    assert _check_finish([[]], ["stop"], stops, 4) == 1


def test_summarize_means_per_cell():
    runs = [
        dict(side="hf", threads=1, batch=8, new_tokens=64, tokens=400, seconds=10.0, n_length=2, load_avg=2.0),
        dict(side="hf", threads=1, batch=8, new_tokens=64, tokens=200, seconds=10.0, n_length=0, load_avg=4.0),
        dict(side="engine", threads=1, batch=8, new_tokens=64, tokens=300, seconds=2.0, n_length=8, load_avg=3.0),
    ]
    s = summarize(runs)
    assert set(s) == {"hf|1|8|64", "engine|1|8|64"}
    h = s["hf|1|8|64"]
    assert h["runs"] == 2
    assert h["tokens_per_s"] == pytest.approx(30.0)
    assert (h["tokens_per_s_min"], h["tokens_per_s_max"]) == (20.0, 40.0)
    assert h["mean_len"] == pytest.approx(37.5)
    assert h["frac_length"] == pytest.approx(0.125)
    assert h["load_avg"] == pytest.approx(3.0)
    assert s["engine|1|8|64"]["tokens_per_s"] == pytest.approx(150.0)
