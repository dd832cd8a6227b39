"""The ``estimator`` claim: the entropy-change estimators compared over the probe's size sweep."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from steer.analysis.reproduce.claims import Arm, Claim, Comparison, claim_seeds
from steer.analysis.reproduce.markdown import _num, write_result
from steer.analysis.reproduce.provenance import _provenance, result_meta
from steer.analysis.reproduce.runs import _log, _spec_key
from steer.analysis.reproduce.stats import _finite, _mean, judge, summarise

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


def _earlier_sweep(sdir: Path, key: str) -> tuple[dict | None, bool]:
    """The sweep of an earlier finished run with the same settings (or None), and whether an
    earlier finished sweep had other settings."""
    marker = sdir / "run.json"
    if marker.exists() and (sdir / "sweep.json").exists():
        info = json.loads(marker.read_text())
        if info.get("key") == key and info.get("finished"):
            return json.loads((sdir / "sweep.json").read_text()), False
        return None, True
    return None, False


def _run_sweep(sdir: Path, key: str, seed: int, budget: dict, base_ov: list, cache, task, ts: float) -> dict:
    """One probe sweep of ``seed`` into ``sdir``; ``run.json`` marks it finished."""
    from steer.analysis.probe import run_sweep

    if sdir.exists():
        shutil.rmtree(sdir)
    run_sweep(
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
    (sdir / "run.json").write_text(
        json.dumps({"key": key, "finished": True, "wall_s": time.perf_counter() - ts, **_provenance()})
    )
    return sweep


def _sweeps(cdir: Path, seeds: tuple, budget: dict, base_ov: list, cache, task, log) -> dict:
    """Every seed's sweep, reused when finished earlier with the same settings: ``per_seed``,
    ``failed``, ``n_run``, ``n_reused``."""
    per_seed: dict[int, dict] = {}
    failed, n_run, n_reused = [], 0, 0
    for i, seed in enumerate(seeds):
        sdir = cdir / f"seed{seed}"
        key = _spec_key(
            {"budget": budget, "overrides": base_ov, "seed": seed, "task": getattr(task, "name", None)}
        )
        sweep, stale = _earlier_sweep(sdir, key)
        if sweep is not None:
            n_reused += 1
            log(f"  [{i + 1}/{len(seeds)}] seed {seed}: finished earlier with the same settings: reused")
        elif stale:
            log(f"  seed {seed}: settings changed since the earlier run: rerun")
        if sweep is None:
            ts = time.perf_counter()
            log(f"  [{i + 1}/{len(seeds)}] seed {seed}: probe sweep ...")
            try:
                sweep = _run_sweep(sdir, key, seed, budget, base_ov, cache, task, ts)
                n_run += 1
                log(f"  seed {seed}: done in {time.perf_counter() - ts:.1f} s ({len(sweep['rows'])} probes)")
            except Exception as exc:
                failed.append({"arm": "sweep", "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
                log(f"  seed {seed}: FAILED: {type(exc).__name__}: {exc}")
                continue
        for err in sweep.get("errors", []):
            failed.append({"arm": err.get("variant", "?"), "seed": seed, "error": err.get("error", "")})
        per_seed[seed] = sweep
    return {"per_seed": per_seed, "failed": failed, "n_run": n_run, "n_reused": n_reused}


def _estimator_arms(claim: Claim, per_seed: dict[int, dict]) -> dict:
    """Each estimator's per-seed Spearman correlation, sign agreement and probe count (averaged
    over the sweep's rows) and their spread over the seeds."""
    arms: dict = {}
    for e in ESTIMATOR_ARMS:
        ps = {}
        for seed, sw in per_seed.items():
            sp = [r.get(f"{e}_spearman") for r in sw["rows"]]
            sg = [r.get(f"{e}_sign") for r in sw["rows"]]
            sp = [x for x in sp if _finite(x)]
            sg = [x for x in sg if _finite(x)]
            ps[seed] = {"spearman": _mean(sp), "sign_agreement": _mean(sg), "probes": float(len(sp))}
        arms[e] = {"method": {"name": e}, "per_seed": ps, "summary": summarise(ps, claim.table_metrics)}
    return arms


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
    from steer.train.config import load_config

    claim = estimator_claim()
    seeds = claim_seeds(seeds, quick)
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
    done = _sweeps(cdir, seeds, budget, base_ov, cache, task, log)
    arms = _estimator_arms(claim, done["per_seed"])
    runs = {e: a["per_seed"] for e, a in arms.items()}
    comps, verdict = judge(claim, runs, done["failed"], "probes")
    res = {"arms": arms, "comparisons": comps, "verdict": verdict, "failed": done["failed"]}
    meta = result_meta(
        claim,
        quick=quick,
        seeds=seeds,
        budget=[f"{k}={v}" for k, v in budget.items()],
        overrides=overrides,
        command=command,
        wall_s=time.perf_counter() - t0,
        n_run=done["n_run"],
        n_reused=done["n_reused"],
        plots=[],
    )
    result = write_result(cdir, claim, res, meta)
    log(f"reproduce estimator: {verdict}")
    for c in comps:
        log(f"  - {c['text']}: spearman diff {_num(c['mean'])} (se {_num(c['se'])}): {c['verdict']}")
    return result
