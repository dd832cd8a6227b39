"""The power figures of the verdict rule (steer.analysis.power) against independent computations:
the real rule (reproduce.compare) applied to fresh simulated seeds, and a closed form at 2 seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steer.analysis import power as P
from steer.analysis import reproduce as R


def _rule_power(n: int, effect: float, reps: int, seed: int) -> float:
    """P(reproduced) by running the project's own rule on simulated paired differences."""
    rng = np.random.default_rng(seed)
    hits = 0
    for row in rng.standard_normal((reps, n)) * 0.37 + effect * 0.37:  # sd 0.37: scale-free check
        res = R.compare(dict(enumerate(row.tolist())), dict.fromkeys(range(n), 0.0), +1)
        hits += res["verdict"] == "reproduced"
    return hits / reps


@pytest.mark.parametrize("n,effect", [(3, 0.5), (3, 1.7), (4, 1.0), (5, 2.5), (8, 1.5)])
def test_power_matches_the_rule_on_fresh_draws(n, effect):
    reps = 4000
    want = _rule_power(n, effect, reps, seed=1000 + n)
    got = P.power(n, effect)
    tol = 4 * math.sqrt(max(want * (1 - want), 0.01) / reps) + 0.005
    assert abs(got - want) < tol, (n, effect, got, want)


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _power_two_seeds(delta: float) -> float:
    """At n = 2 the rule is mean > 2 se = |d1 - d2| (the sign clause then holds): with
    w, w' standard normal, P(delta + w'/sqrt2 > sqrt2 |w|) = 2 int_0^inf Phi(sqrt2 delta - 2w) phi(w) dw."""
    h, total = 1e-4, 0.0
    for i in range(int(9 / h) + 1):
        w = i * h
        f = _phi(math.sqrt(2) * delta - 2 * w) * math.exp(-w * w / 2) / math.sqrt(2 * math.pi)
        total += f * (0.5 if i == 0 else 1.0)
    return 2 * total * h


@pytest.mark.parametrize("delta", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_power_at_two_seeds_closed_form(delta):
    assert abs(P.power(2, delta) - _power_two_seeds(delta)) < 0.006
    if delta == 0.0:
        assert abs(P.false_verdict_rate(2) - 2 * _power_two_seeds(0.0)) < 0.01


def test_detectable_and_seeds_needed_are_consistent():
    for n in (2, 3, 5, 10):
        e = P.detectable(n)
        assert P.power(n, e * 0.999) < P.POWER <= P.power(n, e * 1.001)
    big = P.seeds_needed(3.0)
    assert big["n"] is not None and P.power(big["n"], 3.0) >= P.POWER
    if big["n"] > 2:
        assert P.power(big["n"] - 1, 3.0) < P.POWER
    # the every-seed-sign clause caps the power of small effects below 80% at any n
    small = P.seeds_needed(0.77)
    assert small["n"] is None and small["best_power"] < 0.5
    assert P.power(P.N_SEARCH, 0.77) < P.power(3, 0.77)
    # the rule's own false-verdict rate at 3 seeds (both signs), independent of power.py's trick
    fv = sum(_rule_power(3, 0.0, 3000, seed=s) for s in (7, 8)) / 2 * 2
    assert abs(P.false_verdict_rate(3) - fv) < 0.03


def test_comparison_power_figures_and_edge_cases():
    d = [-0.1017, -0.0167, -0.0037]
    f = P.comparison_power(d)
    sd = float(np.std(d, ddof=1))
    assert f["sd"] == pytest.approx(sd, rel=1e-12)
    assert f["detectable"] == pytest.approx(P.detectable(3) * sd)
    assert f["target_source"] == "observed" and f["target"] == pytest.approx(abs(sum(d) / 3))
    assert f["seeds_needed"] is None and "caps the power" in P.needed_text(f)
    p = P.comparison_power([0.043, -0.0078, 0.0417], paper_effect=-0.038, paper_source="Table 4")
    assert p["target"] == 0.038 and p["target_source"] == "paper: Table 4"
    big = P.comparison_power([0.0669, 0.0597, 0.0818])
    assert big["seeds_needed"] == P.seeds_needed(big["effect_sd"])["n"]
    assert P.comparison_power([0.5])["note"].startswith("fewer than 2")
    assert "no spread" in P.comparison_power([0.0, 0.0, 0.0])["note"]
    assert P.comparison_power([float("nan"), 1.0, 2.0])["n"] == 2
    with pytest.raises(ValueError):
        P.power(1, 1.0)


def test_figures_in_result_markdown():
    claim = R.build_claim("extreme")
    comps = []
    for c, d in zip(claim.comparisons, ([-0.1017, -0.0167, -0.0037], [0.043, -0.0078, 0.0417])):
        comps.append(
            {"text": c.text, "metric": c.metric, **R.compare(dict(enumerate(d)), {0: 0, 1: 0, 2: 0}, -1)}
        )
    R._add_power(claim, comps)
    res = {"verdict": "inconclusive", "comparisons": comps, "arms": {}, "failed": []}
    meta = {
        "command": "steer reproduce extreme",
        "quick": False,
        "budget": [],
        "seeds": [0, 1, 2],
        "overrides": [],
        "wall_s": 1.0,
        "n_run": 0,
        "n_reused": 6,
        "date": "2026-12-06",
        "machine": "test",
    }
    md = R._claim_markdown(claim, res, meta)
    assert "## What more seeds would settle" in md
    f = comps[1]["power"]
    assert f["target_source"].startswith("paper: Table 4")
    row = next(line for line in md.splitlines() if line.startswith(f"| {comps[1]['text']} | 3 |"))
    assert f"{f['detectable']:.3g}" in row and f"{f['sd']:.3g}" in row and "0.038" in row
