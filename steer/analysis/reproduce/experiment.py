"""One trainer claim end to end: plan, run, analyse, plot and write its result."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from steer.analysis.reproduce.claims import DEFAULT_BUDGET, QUICK_BUDGET, Claim, build_claim, claim_seeds
from steer.analysis.reproduce.estimator import run_estimator
from steer.analysis.reproduce.markdown import _num, write_result
from steer.analysis.reproduce.provenance import result_meta
from steer.analysis.reproduce.runs import RunPlan, _log, _read_jsonl, default_jobs, execute_plans, plan_runs
from steer.analysis.reproduce.stats import judge, run_metrics, summarise


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
        row = summarise(per_seed, sorted({k for d in per_seed.values() for k in d}))
        arms[arm.label] = {"method": arm.method, "per_seed": per_seed, "summary": row}
    comps, verdict = judge(claim, runs, failed, "runs")
    return {"arms": arms, "comparisons": comps, "verdict": verdict, "failed": failed, "records": records}


def _plot(claim: Claim, records: dict, cdir: Path) -> list[str]:
    """The claim's per-step plots (mean over seeds, band min..max) into ``cdir``."""
    from steer.analysis.plots import plot_arm_bands

    plots = []
    for key in claim.plot_keys:
        fname = key.replace("/", "_") + ".png"
        plots.append(
            plot_arm_bands(
                records, key, cdir / fname, title=f"{claim.name}: {key} (mean over seeds, band = min..max)"
            )
        )
    return [str(p) for p in plots]


def run_claim(
    name: str,
    out_dir: str | Path = "runs/reproduce",
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    jobs: int | None = None,
    overrides: Sequence[str] = (),
    fractions: Sequence[float] | None = None,
    config: str | None = None,
    command: str = "",
    log=_log,
) -> dict:
    """Run (or reuse) every run of one claim, then write ``<out>/<claim>/result.json``,
    ``result.md`` and plots. ``config``: the trainer config the arms run on instead of the
    claim's own (:func:`build_claim`). Returns the result (without the raw records)."""
    if name == "estimator":
        if config is not None:
            raise ValueError("--config applies to the trainer claims, not to estimator (a probe sweep)")
        return run_estimator(out_dir, quick=quick, seeds=seeds, overrides=overrides, command=command, log=log)
    claim = build_claim(name, fractions=fractions, config=config)
    seeds = claim_seeds(seeds, quick)
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
    cdir = out / name
    plots = _plot(claim, records, cdir)
    meta = result_meta(
        claim,
        quick=quick,
        seeds=seeds,
        budget=list(QUICK_BUDGET) + list(claim.quick_overrides) if quick else list(DEFAULT_BUDGET),
        overrides=overrides,
        command=command,
        wall_s=time.perf_counter() - t0,
        n_run=sum(p.action != "reuse" for p in plans),
        n_reused=sum(p.action == "reuse" for p in plans),
        plots=plots,
    )
    result = write_result(cdir, claim, res, meta)
    log(f"reproduce {name}: {res['verdict']}")
    for c in res["comparisons"]:
        log(f"  - {c['text']}: {c['metric']} diff {_num(c['mean'])} (se {_num(c['se'])}): {c['verdict']}")
    log(f"  wrote {cdir / 'result.md'}")
    return result
