"""Planning, caching and running the trainer runs of a claim (reuse, resume, rerun)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from steer.analysis.reproduce.claims import DEFAULT_BUDGET, QUICK_BUDGET, RUN_SETTINGS, Claim
from steer.analysis.reproduce.provenance import _provenance


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _spec_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunPlan:
    claim: str
    arm: str
    seed: int
    run_dir: Path
    overrides: list[str]
    config: str
    key: str
    action: str = "run"  # run | resume | reuse
    why: str = ""
    cfg: object = None
    result: dict = field(default_factory=dict)


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    if not path.exists():
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line of a killed run
    return out


def plan_runs(
    claim: Claim,
    out_dir: Path,
    *,
    quick: bool,
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> list[RunPlan]:
    """Every (arm, seed) run of ``claim`` with its validated config and what to do with it.
    Raises ``ConfigError`` / ``ValueError`` naming the bad key before any work. ``progress``: the
    trainer's per-step progress bar (not part of a run's settings)."""
    from steer.train.config import load_config

    budget = list(QUICK_BUDGET) + list(claim.quick_overrides) if quick else list(DEFAULT_BUDGET)
    evals = ["eval.at_end=true"] if claim.needs_eval else ["eval.at_end=false"]
    plans = []
    for arm in claim.arms:
        for seed in seeds:
            run_dir = out_dir / claim.name / arm.label / f"seed{seed}"
            ov = (
                budget
                + list(RUN_SETTINGS)
                + evals
                + arm.overrides()
                + [f"trainer.seed={seed}", f"method.seed={seed}"]
                + list(overrides)
                + [f"logging.out_dir={run_dir}"]
            )
            ui = ["logging.progress=true"] if progress else []
            cfg = load_config(claim.config, ov + ui)
            spec = {
                "config": claim.config,
                "overrides": [o for o in ov if not o.startswith("logging.out_dir=")],
            }
            p = RunPlan(claim.name, arm.label, int(seed), run_dir, ov, claim.config, _spec_key(spec), cfg=cfg)
            marker = run_dir / "run.json"
            if marker.exists():
                try:
                    info = json.loads(marker.read_text())
                except (OSError, json.JSONDecodeError):
                    info = {}
                if info.get("key") == p.key and info.get("finished"):
                    p.action, p.why = "reuse", "finished earlier with the same settings"
                else:
                    p.action, p.why = "run", "settings changed since the earlier run: rerun from scratch"
            elif (run_dir / "metrics.jsonl").exists():
                old = (run_dir / "spec.json").exists() and json.loads(
                    (run_dir / "spec.json").read_text()
                ).get("key")
                if old == p.key and (run_dir / "checkpoints").exists():
                    p.action, p.why = "resume", "interrupted earlier: resume from its last checkpoint"
                else:
                    p.action, p.why = (
                        "run",
                        "an unfinished earlier run with other settings or no checkpoint: rerun",
                    )
            plans.append(p)
    return plans


def _execute(plan: RunPlan) -> dict:
    """Train one run (in this process or a worker); returns ``{"wall_s", "error"}``."""
    from steer.train.trainer import Trainer

    t0 = time.perf_counter()
    run_dir = plan.run_dir
    try:
        if plan.action == "run" and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text(
            json.dumps({"key": plan.key, "overrides": plan.overrides}, indent=1)
        )
        Trainer(plan.cfg, log=lambda m: None).fit(resume=plan.action == "resume")
        wall = time.perf_counter() - t0
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "key": plan.key,
                    "finished": True,
                    "wall_s": wall,
                    "overrides": plan.overrides,
                    **_provenance(),
                },
                indent=1,
            )
        )
        # the checkpoints only serve to resume an interrupted run; the metrics are the record
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return {"wall_s": wall, "error": None}
    except Exception as exc:  # reported per run; the other runs go on
        return {
            "wall_s": time.perf_counter() - t0,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }


def _prepare_policy(cfg, log) -> None:
    """Build (or find in the cache) the claim's warm-started policy once, before the runs."""
    from steer.train.trainer import load_model_and_tokenizer

    t0 = time.perf_counter()
    log("  policy: building or loading the warm-started testbed policy ...")
    load_model_and_tokenizer(cfg, log=lambda m: None)
    log(f"  policy ready ({time.perf_counter() - t0:.1f} s)")


def execute_plans(plans: list[RunPlan], *, jobs: int, log=_log) -> None:
    todo = [p for p in plans if p.action != "reuse"]
    for p in plans:
        if p.action == "reuse":
            p.result = {"wall_s": 0.0, "error": None, "reused": True}
    if not todo:
        log(f"  all {len(plans)} runs finished earlier with the same settings: reusing them")
        return
    for p in todo:
        if p.action != "run" or p.why:
            log(f"  {p.arm} seed {p.seed}: {p.why}")
    _prepare_policy(todo[0].cfg, log)
    n, done, t0 = len(todo), 0, time.perf_counter()

    def report(p: RunPlan) -> None:
        nonlocal done
        done += 1
        status = (
            "FAILED: " + p.result["error"] if p.result.get("error") else f"done in {p.result['wall_s']:.1f} s"
        )
        eta = (time.perf_counter() - t0) / done * (n - done)
        log(f"  [{done}/{n}] {p.arm} seed {p.seed}: {status} (about {eta:.0f} s left)")

    log(f"  training {n} runs ({len(plans) - n} reused), {jobs} at a time ...")
    if jobs <= 1:
        for p in todo:
            p.result = _execute(p)
            report(p)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futs = {pool.submit(_execute, p): p for p in todo}
            for fut in as_completed(futs):
                p = futs[fut]
                try:
                    p.result = fut.result()
                except Exception as exc:  # a worker that died
                    p.result = {"wall_s": 0.0, "error": f"{type(exc).__name__}: {exc}"}
                report(p)


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))
