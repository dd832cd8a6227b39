"""``steer reproduce``: the verdict rule against an independent reference, the per-run metrics,
every claim in ``--quick`` mode, reuse of finished runs and recovery from a failed run."""

from __future__ import annotations

import json
import math
import random

import pytest

from steer.analysis import reproduce as R
from tests.analysis.helpers import CoinTask

# ------------------------------------------------------------------ the verdict rule


def _ref_compare(a: dict, b: dict, direction: int) -> str:
    """Independent float64 reference of the rule in the module docstring."""
    d = [a[s] - b[s] for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s])]
    if len(d) < 2:
        return "inconclusive"
    n = len(d)
    m = math.fsum(d) / n
    var = math.fsum((x - m) ** 2 for x in d) / (n - 1)
    se = math.sqrt(var / n)
    if m == 0 or abs(m) <= 2 * se:
        return "inconclusive"
    s = 1 if m > 0 else -1
    if not all((x > 0) == (s > 0) and x != 0 for x in d):
        return "inconclusive"
    return "reproduced" if s == direction else "contradicted"


def test_compare_matches_reference_on_random_inputs():
    rng = random.Random(1234)
    seen = set()
    for _ in range(400):
        n = rng.randint(0, 6)
        shift = rng.choice([0.0, 0.05, 0.5, -0.5])
        noise = rng.choice([0.01, 0.2, 1.0])
        b = {s: rng.gauss(1.0, 0.3) for s in range(n)}
        a = {s: b[s] + shift + rng.gauss(0.0, noise) for s in range(n)}
        if n and rng.random() < 0.2:
            a[0] = float("nan")  # a missing metric of one seed is left out of the pairs
        direction = rng.choice([1, -1])
        got = R.compare(a, b, direction)
        assert got["verdict"] == _ref_compare(a, b, direction), (a, b, direction, got)
        seen.add(got["verdict"])
    assert seen == {"reproduced", "contradicted", "inconclusive"}


def test_compare_edge_cases():
    assert R.compare({}, {}, 1)["verdict"] == "inconclusive"
    one = R.compare({0: 2.0}, {0: 1.0}, 1)
    assert one["verdict"] == "inconclusive" and "fewer than 2 seeds" in one["why"]
    # equal runs (e.g. an arm identical to its baseline): zero difference, not a verdict
    eq = R.compare({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}, 1)
    assert eq["verdict"] == "inconclusive" and eq["why"] == "zero difference"
    # large mean but one seed of the other sign -> inconclusive
    mixed = R.compare({0: 10.0, 1: 10.0, 2: -0.1}, {0: 0.0, 1: 0.0, 2: 0.0}, 1)
    assert mixed["verdict"] == "inconclusive"
    up = R.compare({0: 1.1, 1: 1.2, 2: 1.15}, {0: 1.0, 1: 1.0, 2: 1.0}, 1)
    assert up["verdict"] == "reproduced" and up["n"] == 3
    assert math.isclose(up["mean"], 0.15) and math.isclose(up["se"], 0.05 / math.sqrt(3))
    assert R.compare({0: 1.1, 1: 1.2, 2: 1.15}, {0: 1.0, 1: 1.0, 2: 1.0}, -1)["verdict"] == "contradicted"
    # only seeds present on both sides are paired
    assert R.compare({0: 1.0, 5: 9.0}, {0: 0.0, 1: 0.0}, 1)["n"] == 1


def test_claim_verdict_combinations():
    assert R.claim_verdict(["reproduced", "reproduced"]) == "reproduced"
    assert R.claim_verdict(["reproduced", "inconclusive"]) == "partly reproduced (1 of 2)"
    assert R.claim_verdict(["contradicted", "inconclusive"]) == "not reproduced (1 of 2 contradicted)"
    assert R.claim_verdict(["contradicted", "reproduced"]).startswith("mixed")
    assert R.claim_verdict(["inconclusive"]) == "inconclusive"
    assert R.claim_verdict([]) == "inconclusive"


# ------------------------------------------------------------------ per-run metrics


def test_run_metrics_against_reference():
    rng = random.Random(7)
    for steps in (1, 2, 3, 8, 17):
        h = [rng.uniform(0.1, 2.0) for _ in range(steps)]
        recs = [{"step": 0, "heldout/acc": 0.1}]  # the starting evaluation has no entropy
        for i, x in enumerate(h):
            recs.append({"step": i + 1, "entropy": x, "acc": 0.5 + 0.01 * i, "m/weight_min": 1 - 0.01 * i})
        recs.append({"step": steps, "heldout/acc": 0.4, "heldout/acc_se": 0.05})
        got = R.run_metrics(recs)
        tail = math.ceil(0.25 * steps)
        final = math.fsum(h[-tail:]) / tail
        assert got["steps"] == steps
        assert math.isclose(got["entropy_final"], final, rel_tol=1e-12)
        assert math.isclose(got["entropy_drift"], abs(final - h[0]) / h[0], rel_tol=1e-12)
        if steps >= 3:
            d = [h[i + 1] - h[i] for i in range(steps - 1)]
            md = math.fsum(d) / len(d)
            sd = math.sqrt(math.fsum((x - md) ** 2 for x in d) / (len(d) - 1))
            assert math.isclose(got["entropy_fluct"], sd / (math.fsum(h) / steps), rel_tol=1e-9)
        else:
            assert math.isnan(got["entropy_fluct"])
        assert got["heldout_acc"] == 0.4 and got["heldout_acc_se"] == 0.05
        assert math.isclose(got["weight_min"], 1 - 0.01 * (steps - 1))


def test_run_metrics_non_finite_and_empty():
    assert R.run_metrics([]) == {"steps": 0}
    recs = [
        {"step": 1, "entropy": 1.0},
        {"step": 2, "entropy": float("nan")},  # a non-finite step is left out, not propagated
        {"step": 3, "entropy": "nan"},  # as JSON stores it
        {"step": 4, "entropy": 0.5},
    ]
    got = R.run_metrics(recs)
    assert got["steps"] == 2 and got["entropy_final"] == 0.5 and got["entropy_drift"] == 0.5
    assert "heldout_acc" not in got


def test_run_metrics_band_time_heldout_and_cause():
    recs = [
        {"step": 1, "entropy": 1.0, "time/step": 2.0, "cause/pred_change": 0.1, "cause/real_change": 0.2},
        {"step": 2, "entropy": 1.1, "time/step": 4.0, "cause/pred_change": 0.2, "cause/real_change": 0.4},
        {"step": 3, "entropy": 1.3, "time/step": 3.0, "cause/pred_change": 0.3, "cause/real_change": 0.5},
        {"step": 4, "entropy": 0.7, "time/step": 3.0, "cause/pred_change": "nan", "cause/real_change": 0.1,
         "heldout/acc": 0.5, "heldout/pass@4": 0.75, "heldout/diversity": 1.5},
    ]
    got = R.run_metrics(recs)
    band = R.TRAJECTORY_BAND
    dev = [0.0, 0.1, 0.3, 0.3]
    assert got["entropy_out_frac"] == pytest.approx(sum(d > band + 1e-12 for d in dev) / 4)
    assert got["entropy_out_max"] == pytest.approx(max(0.0, max(dev) - band))
    assert got["time_step"] == 3.0
    assert got["heldout_pass@4"] == 0.75 and got["heldout_diversity"] == 1.5
    # Pearson over the 3 steps with both values: (0.1, 0.2), (0.2, 0.4), (0.3, 0.5)
    xs, ys = [0.1, 0.2, 0.3], [0.2, 0.4, 0.5]
    mx, my = sum(xs) / 3, sum(ys) / 3
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    den = (sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) ** 0.5
    assert got["cause_pred_real_pearson"] == pytest.approx(num / den)


def test_every_claim_has_valid_arms_and_comparisons():
    for name in R.TRAINER_CLAIMS:
        c = R.build_claim(name)
        labels = [a.label for a in c.arms]
        assert len(set(labels)) == len(labels)
        for comp in c.comparisons:
            assert comp.arm in labels and comp.baseline in labels and comp.direction in (1, -1)
    q = R.build_claim("quadrants", fractions=[0.05, 0.2])
    assert len(q.arms) == 2 + 16 and len(q.comparisons) == 16
    with pytest.raises(ValueError, match="fraction"):
        R.build_claim("quadrants", fractions=[1.5])
    with pytest.raises(ValueError, match="unknown claim 'nope'"):
        R.build_claim("nope")


# ------------------------------------------------------------------ quick runs


def _quick(name, out, cache, **kw):
    return R.run_claim(
        name, out, quick=True, jobs=1, overrides=[f"warm_start.cache_dir={cache}"], log=lambda m: None, **kw
    )


@pytest.mark.parametrize("name", [n for n in R.TRAINER_CLAIMS if n != "psr-nsr"])
def test_claim_quick(name, tmp_path, analysis_ws_cache):
    res = _quick(name, tmp_path, analysis_ws_cache)
    claim = R.build_claim(name)
    assert not res["failed"]
    assert len(res["comparisons"]) == len(claim.comparisons)
    for c in res["comparisons"]:
        assert c["n"] == 2 and c["verdict"] in ("reproduced", "contradicted", "inconclusive")
    for arm in claim.arms:
        for s in R.QUICK_SEEDS:
            assert (tmp_path / name / arm.label / f"seed{s}" / "run.json").exists()
    saved = json.loads((tmp_path / name / "result.json").read_text())
    assert saved["verdict"] == res["verdict"] and saved["quick"] is True
    md = (tmp_path / name / "result.md").read_text()
    assert res["verdict"] in md and R.VERDICT_RULE in md
    # the power figures of every comparison (steer.analysis.power)
    assert "## What more seeds would settle" in md
    for c in res["comparisons"]:
        assert c["power"]["n"] == 2 and f"| {c['text']} | 2 |" in md
    for p in res["plots"]:
        assert (tmp_path / name / p.split("/")[-1]).stat().st_size > 1000
    if claim.needs_eval:
        assert all("heldout_acc" in d for a in res["arms"].values() for d in a["per_seed"].values())


def test_psr_nsr_quick_reuse_rerun_and_failure(tmp_path, analysis_ws_cache, monkeypatch):
    first = _quick("psr-nsr", tmp_path, analysis_ws_cache)
    assert first["n_run"] == 6 and first["n_reused"] == 0
    # a rerun with the same settings trains nothing and gives the same numbers
    again = _quick("psr-nsr", tmp_path, analysis_ws_cache)
    assert again["n_run"] == 0 and again["n_reused"] == 6
    assert [c["mean"] for c in again["comparisons"]] == [c["mean"] for c in first["comparisons"]]
    # changed settings: every run is redone, and the log says why
    logs = []
    changed = R.run_claim(
        "psr-nsr",
        tmp_path,
        quick=True,
        jobs=1,
        overrides=[f"warm_start.cache_dir={analysis_ws_cache}", "rollout.temperature=0.9"],
        log=logs.append,
    )
    assert changed["n_run"] == 6 and any("settings changed" in m for m in logs)

    # one run fails: the others finish, the claim says it is incomplete, nothing else is lost
    from steer.train.trainer import Trainer

    out2 = tmp_path / "crash"
    real = Trainer.train_step

    def boom(self, step):
        if self.cfg.method.get("name") == "nsr" and self.cfg.trainer.seed == 1:
            raise RuntimeError("simulated crash")
        return real(self, step)

    monkeypatch.setattr(Trainer, "train_step", boom)
    broken = _quick("psr-nsr", out2, analysis_ws_cache)
    assert broken["verdict"].startswith("incomplete (1 runs failed)")
    assert broken["failed"] == [{"arm": "nsr", "seed": 1, "error": "RuntimeError: simulated crash"}]
    monkeypatch.setattr(Trainer, "train_step", real)
    logs = []
    fixed = R.run_claim(
        "psr-nsr",
        out2,
        quick=True,
        jobs=1,
        overrides=[f"warm_start.cache_dir={analysis_ws_cache}"],
        log=logs.append,
    )
    assert fixed["n_run"] == 1 and fixed["n_reused"] == 5 and not fixed["failed"]
    assert [c["mean"] for c in fixed["comparisons"]] == [c["mean"] for c in first["comparisons"]]


def test_claim_on_another_config_plans_every_arm_there(tmp_path):
    """``--config``: the same arms, comparisons and budget on another trainer config; its runs never
    reuse (or are reused by) the claim's own."""
    from steer.analysis.reproduce.runs import plan_runs

    own = R.build_claim("psr-nsr")
    other = R.build_claim("psr-nsr", config="chain_sum")
    assert other.config == "chain_sum" and own.config == "testbed"
    assert other.arms == own.arms and other.comparisons == own.comparisons
    assert "chain_sum" in other.notes[-1] and R.build_claim("psr-nsr", config="testbed") == own
    plans_own = plan_runs(own, tmp_path, quick=False, seeds=[0])
    plans = plan_runs(other, tmp_path, quick=False, seeds=[0])
    assert [p.arm for p in plans] == [p.arm for p in plans_own]
    for p, q in zip(plans, plans_own):
        assert p.cfg.task.options["dataset"] == "chain_sum" and q.cfg.task.name == "countdown"
        assert p.cfg.trainer.steps == q.cfg.trainer.steps == 40  # the claim's budget on both
        assert p.key != q.key and p.config == "chain_sum"
    with pytest.raises(ValueError, match="config"):
        R.build_claim("psr-nsr", config=" ")
    with pytest.raises(ValueError, match="estimator"):
        R.run_claim("estimator", tmp_path, quick=True, config="chain_sum", log=lambda m: None)


def test_cli_config_is_passed_and_checked(tmp_path, capsys):
    from steer.cli import main

    assert main(["reproduce", "estimator", "--config", "chain_sum", "--quick", "--out", str(tmp_path)]) == 2
    assert "estimator" in capsys.readouterr().err
    assert main(["reproduce", "clipping", "--config", "no_such_config", "--quick", "--out", str(tmp_path)]) == 2
    assert "no_such_config" in capsys.readouterr().err


def test_bad_override_fails_before_any_work(tmp_path):
    from steer.train.config import ConfigError

    with pytest.raises(ConfigError, match="nope"):
        R.run_claim("clipping", tmp_path, quick=True, overrides=["trainer.nope=1"], log=lambda m: None)
    assert not (tmp_path / "clipping").exists()


def test_cli_errors(tmp_path, capsys):
    from steer.cli import main

    assert main(["reproduce", "clipping", "trainer.nope=1", "--quick", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "no-such-claim"])


def test_write_reproduction_lists_missing_and_quick_claims_as_not_run(tmp_path):
    (tmp_path / "clipping").mkdir()
    (tmp_path / "clipping" / "result.json").write_text(json.dumps({"quick": True}))
    full = {
        "quick": False,
        "figure": "Fig. 8",
        "verdict": "partly reproduced (1 of 2)",
        "command": "steer reproduce psr-nsr",
        "wall_s": 12.0,
        "date": "2026-12-01",
        "comparisons": [
            {
                "text": "NSR > PSR",
                "metric": "entropy_final",
                "mean": 0.25,
                "se": 0.01,
                "n": 3,
                "verdict": "reproduced",
            }
        ],
    }
    (tmp_path / "psr-nsr").mkdir()
    (tmp_path / "psr-nsr" / "result.json").write_text(json.dumps(full))
    text = R.write_reproduction(tmp_path).read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "not run" in rows["clipping"] and "not run" in rows["lambda"]
    assert "0.2500 ± 0.0100 (n=3) -> reproduced" in rows["psr-nsr"] and "partly reproduced" in rows["psr-nsr"]


# ------------------------------------------------------------------ the estimator claim (the probe)


def test_estimator_quick_over_the_probe(tmp_path, analysis_ws_cache):
    from steer.train.config import load_config
    from steer.train.tasks import build_task

    task = CoinTask(build_task(load_config("testbed", ["task.train_size=16", "task.heldout_size=4"]).task))
    kw = dict(
        quick=True,
        overrides=[
            f"warm_start.cache_dir={analysis_ws_cache}",
            "task.train_size=16",
            "task.heldout_size=4",
            "rollout.max_new_tokens=12",
            "warm_start.overrides.batch_size=16",
        ],
        task=task,
        budget={"warm_start_steps": 10, "num_prompts": 3, "n": 4},
        log=lambda m: None,
    )
    res = R.run_estimator(tmp_path, **kw)
    assert not res["failed"], res["failed"]
    assert set(res["arms"]) == set(R.ESTIMATOR_ARMS)
    for e in R.ESTIMATOR_ARMS:
        for s in R.QUICK_SEEDS:
            d = res["arms"][e]["per_seed"][s]
            assert d["probes"] == 1.0 and -1.0 <= d["spearman"] <= 1.0
    paper = {s: res["arms"]["paper"]["per_seed"][s]["spearman"] for s in R.QUICK_SEEDS}
    cov = {s: res["arms"]["cov"]["per_seed"][s]["spearman"] for s in R.QUICK_SEEDS}
    c = res["comparisons"][0]
    assert c["arm"] == "paper" and c["baseline"] == "cov" and c["n"] == 2
    assert c["verdict"] == _ref_compare(paper, cov, +1)
    assert (tmp_path / "estimator" / "result.md").read_text().count("| paper |") == 1
    again = R.run_estimator(tmp_path, **kw)
    assert again["n_reused"] == 2 and again["n_run"] == 0
    assert again["comparisons"][0]["mean"] == c["mean"]
    with pytest.raises(ValueError, match="unknown estimator budget keys"):
        R.run_estimator(tmp_path, quick=True, budget={"nope": 1}, log=lambda m: None)


@pytest.mark.slow
def test_cli_reproduce_all_quick(tmp_path):
    """The real command: every claim at the --quick budget in a fresh process (minutes)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "STEER_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "steer.cli", "reproduce", "all", "--quick", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in R.CLAIMS:
        res = json.loads((tmp_path / "out" / name / "result.json").read_text())
        assert res["quick"] is True and res["comparisons"], name
        assert f"reproduce {name}: " in proc.stderr
