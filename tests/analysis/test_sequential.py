"""``steer reproduce --seeds auto``: the looks' thresholds recomputed, and the real auto loop on
synthetic claims whose effect is known (per-seed values injected through its look function)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steer.analysis import sequential as S


def test_thresholds_hold_the_per_look_false_verdict_rate():
    """Each hard-coded threshold gives at most alpha/K false verdicts at its look (normal null,
    fresh draws), is never below the rule's 2, and is not needlessly strict."""
    k_looks = len(S.SEQ_THRESHOLDS)
    per_look = S.SEQ_ALPHA / k_looks
    assert sorted(S.SEQ_THRESHOLDS) == list(range(S.SEQ_FIRST, S.SEQ_LAST + 1))
    rng = np.random.default_rng(424242)
    for n, k in S.SEQ_THRESHOLDS.items():
        assert k >= 2.0
        y = rng.standard_normal((400_000, n))
        m, s = y.mean(1), y.std(1, ddof=1)
        same = (y > 0).all(1) | (y < 0).all(1)
        rate = float(np.mean(same & (np.abs(m) / (s / math.sqrt(n)) > k)))
        se = math.sqrt(per_look / 400_000)
        assert rate <= per_look + 3 * se, (n, rate)
        if k > 2.0:  # calibrated (not the rule's floor): close to alpha/K, not far below
            assert rate >= 0.85 * per_look, (n, rate)


def _synthetic_look(values: np.ndarray, directions, calls=None):
    """A look function over fixed per-seed paired differences: values[seed, comparison]."""

    def look(n):
        if calls is not None:
            calls.append(n)
        return {
            "comparisons": [
                {"text": f"c{j}", "direction": dr, "diffs": values[:n, j].tolist()}
                for j, dr in enumerate(directions)
            ],
            "seed_cost_s": 0.0,
        }

    return look


def _simulate(effect: float, reps: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        vals = (rng.standard_normal((S.SEQ_LAST, 1)) + effect) * 0.05
        out.append(S.auto_loop(_synthetic_look(vals, [+1]), budget_s=1e9)["comparisons"][0]["verdict"])
    return out


def test_auto_decides_a_large_effect_correctly():
    up = _simulate(3.0, 400, seed=1)
    assert up.count("reproduced") / 400 >= 0.97 and "contradicted" not in up
    down = _simulate(-3.0, 400, seed=2)
    assert down.count("contradicted") / 400 >= 0.97 and "reproduced" not in down


def test_auto_stays_inconclusive_on_zero_effect_in_the_advertised_share():
    got = _simulate(0.0, 2000, seed=3)
    share = got.count("inconclusive") / len(got)
    assert share >= 1 - S.SEQ_ALPHA, share
    # and the fixed rule at 3 seeds, for contrast, gives far more false verdicts (about 18%)
    from steer.analysis.power import false_verdict_rate

    assert false_verdict_rate(3) > 2 * S.SEQ_ALPHA


def test_auto_stops_when_settled_by_sign_and_keeps_decided_verdicts():
    # c0: huge effect, decided at the first look; c1: seeds disagree -> settled at once
    vals = np.array([[1.0, 0.1], [1.01, -0.1], [0.99, 0.2]] + [[1.0, 0.1]] * 5)
    calls = []
    res = S.auto_loop(_synthetic_look(vals, [+1, +1], calls), budget_s=1e9)
    assert calls == [3]
    assert [c["verdict"] for c in res["comparisons"]] == ["reproduced", "inconclusive"]
    assert res["stop"].startswith("settled") and "disagree in sign" in res["comparisons"][1]["why"]
    assert res["verdict"] == "partly reproduced (1 of 2)"


def test_auto_adds_seeds_up_to_the_last_look_and_freezes_a_decision():
    # c0 decided at 5 seeds (mean > 4.86 se, same sign); c1 same sign but too noisy until the end
    c0 = [1.0, 1.2, 0.8, 1.1, 0.9, -5.0, -5.0, -5.0]  # later seeds would undo it: the verdict stays
    c1 = [0.01, 1.0, 0.02, 2.0, 0.03, 3.0, 0.01, 4.0]
    vals = np.array([c0, c1]).T
    calls = []
    res = S.auto_loop(_synthetic_look(vals, [+1, -1], calls), budget_s=1e9)
    assert res["comparisons"][0]["verdict"] == "reproduced" and res["comparisons"][0]["look"] <= 5
    # c1 points against the prediction; at 8 seeds the threshold is the rule's 2
    m, s = np.mean(c1), np.std(c1, ddof=1)
    want = "contradicted" if m > 2 * s / math.sqrt(8) else "inconclusive"
    assert res["comparisons"][1]["verdict"] == want and res["comparisons"][1]["look"] == 8
    assert calls == list(range(3, 9)) and res["n"] == 8


def test_auto_respects_the_budget():
    clock = [0.0]

    def look(n):
        clock[0] += 100.0  # each look takes 100 s
        return {
            "comparisons": [{"text": "c", "direction": 1, "diffs": [0.01 * (i + 1) for i in range(n)]}],
            "seed_cost_s": 100.0,
        }

    # 250 s: the first look (100 s) leaves room for the second (200 s), not the third
    res = S.auto_loop(look, budget_s=250.0, clock=lambda: clock[0])
    assert res["n"] == 4 and res["stop"].startswith("budget")
    with pytest.raises(ValueError, match="budget"):
        S.auto_loop(look, budget_s=0.0)


def test_cli_auto_needs_a_budget(tmp_path, capsys):
    from steer.cli import main

    assert main(["reproduce", "psr-nsr", "--seeds", "auto", "--out", str(tmp_path)]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["reproduce", "psr-nsr", "--budget", "5", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["reproduce", "psr-nsr", "--seeds", "auto", "--budget", "-1"])


def test_run_claim_auto_writes_the_sequential_verdict(tmp_path, monkeypatch):
    """The claim wiring: seeds 0..n-1 per look through run_claim (here a stand-in that writes the
    result files as run_claim does), the per-seed cost from run.json, the sections in result.md."""
    import json

    from steer.analysis import reproduce as R

    seen = []

    def fake_run_claim(name, out, *, seeds, **kw):
        seen.append(tuple(seeds))
        n = len(seeds)
        for s in seeds:
            d = tmp_path / name / "arm" / f"seed{s}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "run.json").write_text(json.dumps({"wall_s": 30.0, "finished": True}))
        comps = [
            {
                "text": "c",
                "direction": 1,
                "diffs": [1.0 + 0.01 * i for i in range(n)],
                "verdict": "reproduced",
            }
        ]
        (tmp_path / name / "result.md").write_text("# x\n\n**Verdict: reproduced**\n\n## Per arm\n")
        return {"verdict": "reproduced", "comparisons": comps, "failed": []}

    monkeypatch.setattr(R, "run_claim", fake_run_claim)
    res = S.run_claim_auto("psr-nsr", tmp_path, budget_min=10, log=lambda m: None)
    assert seen[0] == (0, 1, 2) and all(len(b) == len(a) + 1 for a, b in zip(seen, seen[1:]))
    assert res["auto"]["comparisons"][0]["verdict"] == "reproduced"
    assert res["verdict"].startswith("reproduced (sequential")
    md = (tmp_path / "psr-nsr" / "result.md").read_text()
    assert "## Sequential verdict" in md and md.index("## Sequential") < md.index("## Per arm")
    assert "Verdict (sequential, `--seeds auto`): reproduced" in md
    assert json.loads((tmp_path / "psr-nsr" / "result.json").read_text())["auto"]["method"] == S.SEQ_METHOD
    assert S._seed_cost(tmp_path, "psr-nsr", 2) == 30.0


def test_conditional_power_matches_the_auto_loop():
    """conditional_power (vectorised) against the real loop on the same model: the first three
    seeds fixed, the later ones drawn from the observed mean and sd."""
    first = [-0.1017, -0.0167, -0.0037]
    cp = S.conditional_power(first, draws=20_000, seed=5)
    rng = np.random.default_rng(6)
    reps, down = 1500, 0
    for _ in range(reps):
        later = cp["effect"] + cp["sd"] * rng.standard_normal(S.SEQ_LAST - 3)
        vals = np.array(first + later.tolist())[:, None]
        down += (
            S.auto_loop(_synthetic_look(vals, [-1]), budget_s=1e9)["comparisons"][0]["verdict"]
            == "reproduced"
        )
    want = down / reps
    assert cp["up"] == 0.0
    assert abs(cp["down"] - want) < 4 * math.sqrt(want * (1 - want) / reps) + 0.01, (cp, want)
    # seeds that already disagree in sign can never be decided
    stuck = S.conditional_power([0.04, -0.01, 0.04])
    assert stuck["up"] == 0.0 and stuck["down"] == 0.0
    with pytest.raises(ValueError):
        S.conditional_power([1.0])


def test_auto_stops_on_failed_runs_without_using_the_incomplete_look():
    vals = np.array([[0.01], [0.02], [0.03], [0.04], [0.05]])
    good = _synthetic_look(vals, [+1])

    def look(n):
        res = good(n)
        if n == 4:
            res["failed"] = [{"arm": "a", "seed": 3, "error": "boom"}]
        return res

    res = S.auto_loop(look, budget_s=1e9)
    assert res["n"] == 3 and res["stop"].startswith("1 runs failed at 4 seeds")
    assert res["comparisons"][0]["verdict"] == "inconclusive" and res["comparisons"][0]["look"] == 3

    def first_fails(n):
        return {**good(n), "failed": [{"arm": "a", "seed": 0, "error": "boom"}]}

    res = S.auto_loop(first_fails, budget_s=1e9)
    assert res["verdict"].startswith("incomplete") and res["comparisons"] == []


def test_a_missing_value_skips_the_look():
    vals = np.array([[1.0], [1.01], [float("nan")], [1.02], [0.99], [1.0], [1.0], [1.0]])
    res = S.auto_loop(_synthetic_look(vals, [+1]), budget_s=1e9)
    c = res["comparisons"][0]
    # no later look has all its seeds: settled at once, never a repeated look at a smaller n
    assert c["verdict"] == "inconclusive" and "without a value" in c["why"] and res["n"] == 3
