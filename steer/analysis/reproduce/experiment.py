"""One trainer claim end to end: plan, run, analyse, plot and write its result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from steer.analysis.reproduce.claims import (
    DEFAULT_BUDGET,
    DEFAULT_SEEDS,
    QUICK_BUDGET,
    QUICK_SEEDS,
    VERDICT_RULE,
    Claim,
    build_claim,
)
from steer.analysis.reproduce.estimator import run_estimator
from steer.analysis.reproduce.markdown import _add_power, _claim_markdown, _num
from steer.analysis.reproduce.provenance import _machine, _provenance
from steer.analysis.reproduce.runs import RunPlan, _log, _read_jsonl, default_jobs, execute_plans, plan_runs
from steer.analysis.reproduce.stats import _finite, _mean, _sd, claim_verdict, compare, run_metrics


def analyse(claim: Claim, plans: list[RunPlan]) -> dict:
    """Per-run metrics, per-arm spread, comparisons and the claim's verdict."""
    runs: dict[str, dict[int, dict]] = {}
    records: dict[str, dict[int, list[dict]]] = {}
    failed = []
    for p in plans:
        if p.result.get("error"):
            failed.append({"arm": p.arm, "seed": p.seed, "error": p.result["error"]})
            continue
        recs = _read_jsonl(p.run_dir / "metrics.jsonl")
        records.setdefault(p.arm, {})[p.seed] = recs
        runs.setdefault(p.arm, {})[p.seed] = run_metrics(recs)
    arms = {}
    for arm in claim.arms:
        per_seed = runs.get(arm.label, {})
        row = {}
        for m in sorted({k for d in per_seed.values() for k in d}):
            vals = [d[m] for d in per_seed.values() if _finite(d.get(m))]
            if vals:
                row[m] = {"mean": _mean(vals), "sd": _sd(vals), "n": len(vals)}
        arms[arm.label] = {"method": arm.method, "per_seed": per_seed, "summary": row}
    comps = []
    for c in claim.comparisons:
        a = {s: d.get(c.metric, float("nan")) for s, d in runs.get(c.arm, {}).items()}
        b = {s: d.get(c.metric, float("nan")) for s, d in runs.get(c.baseline, {}).items()}
        res = compare(a, b, c.direction)
        comps.append(
            {
                "arm": c.arm,
                "baseline": c.baseline,
                "metric": c.metric,
                "direction": c.direction,
                "text": c.text,
                **res,
            }
        )
    _add_power(claim, comps)
    verdict = claim_verdict([c["verdict"] for c in comps])
    if failed:
        verdict = f"incomplete ({len(failed)} runs failed); from the finished runs: {verdict}"
    return {"arms": arms, "comparisons": comps, "verdict": verdict, "failed": failed, "records": records}


def run_claim(
    name: str,
    out_dir: str | Path = "runs/reproduce",
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    jobs: int | None = None,
    overrides: Sequence[str] = (),
    fractions: Sequence[float] | None = None,
    command: str = "",
    log=_log,
) -> dict:
    """Run (or reuse) every run of one claim, then write ``<out>/<claim>/result.json``,
    ``result.md`` and plots. Returns the result (without the raw records)."""
    if name == "estimator":
        return run_estimator(out_dir, quick=quick, seeds=seeds, overrides=overrides, command=command, log=log)
    claim = build_claim(name, fractions=fractions)
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (QUICK_SEEDS if quick else DEFAULT_SEEDS)))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    out = Path(out_dir)
    t0 = time.perf_counter()
    log(f"reproduce {name} ({claim.figure}): {len(claim.arms)} arms x {len(seeds)} seeds")
    n_jobs = jobs if jobs else (1 if quick else default_jobs())
    # a per-step bar of each run when they train one at a time on a terminal
    bar = n_jobs == 1 and log is _log and sys.stderr.isatty()
    plans = plan_runs(claim, out, quick=quick, seeds=seeds, overrides=overrides, progress=bar)
    execute_plans(plans, jobs=n_jobs, log=log)
    res = analyse(claim, plans)
    records = res.pop("records")
    from steer.analysis.plots import plot_arm_bands

    plots = []
    cdir = out / name
    for key in claim.plot_keys:
        fname = key.replace("/", "_") + ".png"
        plots.append(
            plot_arm_bands(
                records, key, cdir / fname, title=f"{name}: {key} (mean over seeds, band = min..max)"
            )
        )
    meta = {
        "claim": name,
        "figure": claim.figure,
        "statement": claim.statement,
        "quick": quick,
        "seeds": list(seeds),
        "budget": list(QUICK_BUDGET) + list(claim.quick_overrides) if quick else list(DEFAULT_BUDGET),
        "overrides": list(overrides),
        "command": command or f"steer reproduce {name}" + (" --quick" if quick else ""),
        "wall_s": time.perf_counter() - t0,
        "n_run": sum(p.action != "reuse" for p in plans),
        "n_reused": sum(p.action == "reuse" for p in plans),
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "rule": VERDICT_RULE,
        "plots": [str(p) for p in plots],
        **_provenance(),
    }
    result = {**meta, **res}
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (cdir / "result.md").write_text(_claim_markdown(claim, res, meta))
    log(f"reproduce {name}: {res['verdict']}")
    for c in res["comparisons"]:
        log(f"  - {c['text']}: {c['metric']} diff {_num(c['mean'])} (se {_num(c['se'])}): {c['verdict']}")
    log(f"  wrote {cdir / 'result.md'}")
    return result
