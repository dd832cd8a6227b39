"""The ``estimator`` claim: the entropy-change estimators compared over the probe's size sweep."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from steer.analysis.reproduce.claims import DEFAULT_SEEDS, QUICK_SEEDS, VERDICT_RULE, Arm, Claim, Comparison
from steer.analysis.reproduce.markdown import _add_power, _claim_markdown, _num
from steer.analysis.reproduce.provenance import _machine, _provenance
from steer.analysis.reproduce.runs import _log, _spec_key
from steer.analysis.reproduce.stats import _finite, _mean, _sd, claim_verdict, compare

#: Estimators compared with the measured per-token entropy change (``steer.analysis.probe``):
#: the paper's Omega (Eq. 7), the released code's form, the exact first-order value, Cui et al.'s
#: covariance proxy, the JVP-linearised change along the real update and each token's own-gradient
#: cause c_t.
ESTIMATOR_ARMS = ("paper", "reference", "exact", "cov", "jvp", "cause")

#: The probe sweep per budget: model variants (widths, depths, vocabularies around the micro
#: testbed model), their warm-start, the optimiser steps, prompts x rollouts.
ESTIMATOR_QUICK = {
    "widths": (),
    "depths": (),
    "vocabs": (),
    # the base variant of the default sweep, warm-started like the default (the same cache entry):
    # with 100 warm-start steps every group was equal-reward (all wrong) and no probe could run
    "warm_start_steps": None,
    "optimizers": ("sgd:0.01",),
    "num_prompts": 8,
    "n": 8,
}
#: The probe's own default sweep (``steer probe --sweep``); ``warm_start_steps`` None: warm-started
#: like the testbed config's policy.
ESTIMATOR_DEFAULT = {
    "widths": (64, 128, 256),
    "depths": (1, 2, 4),
    "vocabs": (None, 2048),
    "warm_start_steps": None,
    "optimizers": ("sgd:0.01", "adamw:1e-4"),
    "num_prompts": 12,
    "n": 8,
}


#: Fig. 2's SRCC of Omega minus Cov's: 0.61, 0.64 and 0.55 on the three models; the smallest.
ESTIMATOR_PAPER_SOURCE = "Fig. 2, SRCC Omega - Cov, smallest of 3 models (0.61 - 0.06 on Qwen-Math-7B)"


def estimator_claim() -> Claim:
    arms = tuple(Arm(e, {"name": e}) for e in ESTIMATOR_ARMS)
    comps = (
        Comparison(
            "paper",
            "cov",
            "spearman",
            +1,
            "Omega (Eq. 7) ranks the measured change better than Cov (Fig. 2)",
            paper_effect=0.55,
            paper_source=ESTIMATOR_PAPER_SOURCE,
        ),
        Comparison(
            "reference",
            "cov",
            "spearman",
            +1,
            "the released code's Omega ranks it better than Cov",
            paper_effect=0.55,
            paper_source=ESTIMATOR_PAPER_SOURCE,
        ),
    )
    return Claim(
        "estimator",
        "Fig. 2 (and Fig. 1, D.1)",
        "Omega tracks the measured token entropy change far better than Cov (SRCC 0.61-0.72 vs 0.04-0.08)",
        "testbed",
        arms,
        comps,
        table_metrics=("spearman", "sign_agreement", "probes"),
        notes=(
            "per seed: one probe sweep (steer.analysis.probe.run_sweep: model variants x optimiser steps, "
            "each one real step from the same parameters); an estimator's metric is its Spearman "
            "correlation with the measured per-token change, averaged over the sweep's variants and "
            "optimiser settings; seeds draw other prompts and rollouts",
            "jvp (the linearised change along the real update) and cause (c_t) are not estimators a "
            "reweighting can use before the step; they show how much of the change is first-order",
        ),
    )


def run_estimator(
    out_dir="runs/reproduce",
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    command: str = "",
    task=None,
    budget: dict | None = None,
    log=_log,
) -> dict:
    """The ``estimator`` claim over the probe's size sweep (one sweep per seed; a finished sweep
    with the same settings is reused). ``task`` replaces the countdown task of the probes and
    ``budget`` updates the sweep settings (:data:`ESTIMATOR_DEFAULT` keys; tests use both)."""
    from steer.analysis.probe import run_sweep
    from steer.train.config import load_config

    claim = estimator_claim()
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (QUICK_SEEDS if quick else DEFAULT_SEEDS)))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    budget = {**(ESTIMATOR_QUICK if quick else ESTIMATOR_DEFAULT), **(budget or {})}
    unknown = set(budget) - set(ESTIMATOR_DEFAULT)
    if unknown:
        raise ValueError(
            f"unknown estimator budget keys {sorted(unknown)}; valid: {sorted(ESTIMATOR_DEFAULT)}"
        )
    base_ov = ["trainer.num_threads=1", "logging.progress=false", *overrides]
    load_config("testbed", base_ov)  # a bad override fails here, before any work
    cache = next((o.split("=", 1)[1] for o in overrides if o.startswith("warm_start.cache_dir=")), None)
    cdir = Path(out_dir) / "estimator"
    t0 = time.perf_counter()
    log(f"reproduce estimator ({claim.figure}): probe sweep x {len(seeds)} seeds")
    per_seed: dict[int, dict] = {}
    failed, n_run, n_reused = [], 0, 0
    for i, seed in enumerate(seeds):
        sdir = cdir / f"seed{seed}"
        key = _spec_key(
            {"budget": budget, "overrides": base_ov, "seed": seed, "task": getattr(task, "name", None)}
        )
        marker = sdir / "run.json"
        sweep = None
        if marker.exists() and (sdir / "sweep.json").exists():
            info = json.loads(marker.read_text())
            if info.get("key") == key and info.get("finished"):
                sweep = json.loads((sdir / "sweep.json").read_text())
                n_reused += 1
                log(f"  [{i + 1}/{len(seeds)}] seed {seed}: finished earlier with the same settings: reused")
            else:
                log(f"  seed {seed}: settings changed since the earlier run: rerun")
        if sweep is None:
            ts = time.perf_counter()
            log(f"  [{i + 1}/{len(seeds)}] seed {seed}: probe sweep ...")
            try:
                if sdir.exists():
                    shutil.rmtree(sdir)
                sweep = run_sweep(
                    "testbed",
                    base_ov,
                    widths=budget["widths"],
                    depths=budget["depths"],
                    vocabs=budget["vocabs"],
                    warm_start_steps=budget["warm_start_steps"],
                    optimizers=budget["optimizers"],
                    num_prompts=budget["num_prompts"],
                    n=budget["n"],
                    seed=seed,
                    out_dir=sdir,
                    cache_dir=cache,
                    plots=False,
                    task=task,
                    log=lambda m: None,
                )
                sweep = json.loads((sdir / "sweep.json").read_text())
                marker.write_text(
                    json.dumps(
                        {"key": key, "finished": True, "wall_s": time.perf_counter() - ts, **_provenance()}
                    )
                )
                n_run += 1
                log(f"  seed {seed}: done in {time.perf_counter() - ts:.1f} s ({len(sweep['rows'])} probes)")
            except Exception as exc:
                failed.append({"arm": "sweep", "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
                log(f"  seed {seed}: FAILED: {type(exc).__name__}: {exc}")
                continue
        for err in sweep.get("errors", []):
            failed.append({"arm": err.get("variant", "?"), "seed": seed, "error": err.get("error", "")})
        per_seed[seed] = sweep
    arms: dict = {}
    for e in ESTIMATOR_ARMS:
        ps = {}
        for seed, sw in per_seed.items():
            sp = [r.get(f"{e}_spearman") for r in sw["rows"]]
            sg = [r.get(f"{e}_sign") for r in sw["rows"]]
            sp = [x for x in sp if _finite(x)]
            sg = [x for x in sg if _finite(x)]
            ps[seed] = {"spearman": _mean(sp), "sign_agreement": _mean(sg), "probes": float(len(sp))}
        summary = {}
        for m in claim.table_metrics:
            vals = [d[m] for d in ps.values() if _finite(d.get(m))]
            if vals:
                summary[m] = {"mean": _mean(vals), "sd": _sd(vals), "n": len(vals)}
        arms[e] = {"method": {"name": e}, "per_seed": ps, "summary": summary}
    comps = []
    for c in claim.comparisons:
        a = {s: d["spearman"] for s, d in arms[c.arm]["per_seed"].items()}
        b = {s: d["spearman"] for s, d in arms[c.baseline]["per_seed"].items()}
        comps.append(
            {
                "arm": c.arm,
                "baseline": c.baseline,
                "metric": c.metric,
                "direction": c.direction,
                "text": c.text,
                **compare(a, b, c.direction),
            }
        )
    _add_power(claim, comps)
    verdict = claim_verdict([c["verdict"] for c in comps])
    if failed:
        verdict = f"incomplete ({len(failed)} probes failed); from the finished probes: {verdict}"
    res = {"arms": arms, "comparisons": comps, "verdict": verdict, "failed": failed}
    meta = {
        "claim": "estimator",
        "figure": claim.figure,
        "statement": claim.statement,
        "quick": quick,
        "seeds": list(seeds),
        "budget": [f"{k}={v}" for k, v in budget.items()],
        "overrides": list(overrides),
        "command": command or "steer reproduce estimator" + (" --quick" if quick else ""),
        "wall_s": time.perf_counter() - t0,
        "n_run": n_run,
        "n_reused": n_reused,
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "rule": VERDICT_RULE,
        "plots": [],
        **_provenance(),
    }
    result = {**meta, **res}
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (cdir / "result.md").write_text(_claim_markdown(claim, res, meta))
    log(f"reproduce estimator: {verdict}")
    for c in comps:
        log(f"  - {c['text']}: spearman diff {_num(c['mean'])} (se {_num(c['se'])}): {c['verdict']}")
    return result
