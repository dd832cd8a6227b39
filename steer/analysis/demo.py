"""``steer demo``: GRPO and STEER trained side by side on the CPU testbed, with plots and a summary.

1. build (or reuse from the cache) the warm-started tiny policy (``steer.testbed.warm_start``);
2. train each method from that same policy with the same seed, data order and budget
   (``steer/configs/testbed.yaml``; ``--quick``: a much smaller budget, for tests);
3. evaluate on the held-out set during and after training;
4. write ``runs/demo/``: ``<method>/metrics.jsonl`` (+ TensorBoard, checkpoints), PNG plots,
   ``summary.md`` and ``summary.html`` (PNGs embedded), ``demo.json``; print the table.

The summary reports the outcome as measured, including when STEER does not beat GRPO.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path
from queue import Empty

from steer.analysis.plots import plot_all
from steer.analysis.summary import print_table, summarize_run, verdict, write_summary
from steer.train.config import load_config, to_dict
from steer.train.metrics import read_jsonl

#: The ``--quick`` budget: seconds instead of minutes (used by the test suite).
QUICK_OVERRIDES = [
    "trainer.steps=3",
    "trainer.prompts_per_step=4",
    "trainer.num_mini_batches=2",
    "rollout.n=4",
    "rollout.max_new_tokens=24",
    "task.train_size=64",
    "task.heldout_size=6",
    "eval.every=0",
    "eval.n_samples=4",
    "eval.ks=[1,2,4]",
    "checkpoint.every=0",
    "warm_start.overrides.preset=micro",
    "warm_start.overrides.steps=40",
    "warm_start.overrides.train_problems=200",
    "warm_start.overrides.batch_size=16",
]

DEMO_METHODS = ("grpo", "steer")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _postfix(rec: dict) -> dict:
    post = {}
    if "reward" in rec:
        post["reward"] = f"{rec['reward']:.3f}"
    if "entropy" in rec:
        post["H"] = f"{rec['entropy']:.3f}"
    if "heldout/acc" in rec:
        post["heldout"] = f"{rec['heldout/acc']:.3f}"
    return post


def _worker(cfg, queue) -> None:
    """Train one method in a worker process (the policy comes from the warm-start cache) and
    report to the parent through ``queue``: ``("step", method, step, postfix)`` for every
    record, then ``("done", method, seconds)`` or ``("error", method, traceback)``."""
    import traceback

    from steer.train.trainer import Trainer

    name = cfg.method["name"]
    try:
        t0 = time.perf_counter()
        Trainer(
            cfg, log=_log, on_step=lambda rec: queue.put(("step", name, int(rec["step"]), _postfix(rec)))
        ).fit(overwrite=True)  # the demo owns its run folders and rewrites them
        queue.put(("done", name, time.perf_counter() - t0))
    except BaseException:
        queue.put(("error", name, traceback.format_exc()))
        raise SystemExit(1) from None


def _train_parallel(cfgs: dict, methods: tuple[str, ...], progress: bool) -> dict[str, float]:
    """Every method in its own process at the same time; one progress bar per method in this
    process (fed by the workers through a queue), or a line per finished method without. When a
    worker fails, the others are stopped at once and its traceback is raised here."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    bars = {}
    if progress:
        from tqdm.auto import tqdm

        for i, m in enumerate(methods):
            bars[m] = tqdm(total=cfgs[m].trainer.steps, desc=m, position=i, dynamic_ncols=True)
    times: dict[str, float] = {}
    procs = {m: ctx.Process(target=_worker, args=(cfgs[m], queue), name=f"demo-{m}") for m in methods}
    try:
        for p in procs.values():
            p.start()
        while len(times) < len(methods):
            try:
                msg = queue.get(timeout=1.0)
            except Empty:
                dead = [m for m, p in procs.items() if m not in times and p.exitcode not in (None, 0)]
                if dead and queue.empty():
                    m = dead[0]
                    raise RuntimeError(f"demo: the {m} worker died (exit code {procs[m].exitcode})") from None
                continue
            kind, name = msg[0], msg[1]
            if kind == "step":
                bar = bars.get(name)
                if bar is not None:
                    bar.n = msg[2]
                    if msg[3]:
                        bar.set_postfix(msg[3], refresh=False)
                    bar.refresh()
            elif kind == "done":
                times[name] = msg[2]
                if not bars:
                    _log(f"demo: {name} done in {times[name]:.1f} s")
            else:
                raise RuntimeError(f"demo: training {name} failed in its worker process:\n{msg[2]}")
    finally:
        for bar in bars.values():
            bar.close()
        for p in procs.values():
            if p.is_alive() and p.pid is not None and len(times) < len(methods):
                p.terminate()
            if p.pid is not None:
                p.join()
    if bars:
        for m in methods:
            _log(f"demo: {m} done in {times[m]:.1f} s")
    return times


def _demo_configs(
    out: Path, base_over: list[str], config: str, methods, progress: bool, parallel: bool
) -> dict:
    """Every method's config, all validated before any work."""
    extra = ["trainer.num_threads=1", "logging.progress=false"] if parallel else []
    cfgs = {}
    for m in methods:
        cfgs[m] = load_config(
            config,
            base_over
            + [f"method.name={m}", f"logging.out_dir={out / m}", f"logging.progress={str(progress).lower()}"]
            + extra,
        )
    return cfgs


def _train_all(cfgs: dict, methods: tuple[str, ...], model0, tok, *, parallel: bool, progress: bool) -> dict:
    """Train every method from the policy ``model0``; returns each one's wall seconds."""
    from steer.train.trainer import Trainer

    if parallel:
        # One process per method, one torch thread each: on a 2-core machine this halves the wall
        # time against running them one after the other (a tiny model gains little from a second
        # intra-op thread). Each process reloads the same cached policy, so both start from
        # identical weights, and each run is as deterministic as a sequential one.
        _log(
            f"demo: training {', '.join(methods)} in parallel ({cfgs[methods[0]].trainer.steps} steps each) ..."
        )
        return _train_parallel(cfgs, methods, progress)
    times = {}
    for m in methods:
        cfg = cfgs[m]
        _log(f"demo: training {m} for {cfg.trainer.steps} steps ...")
        t0 = time.perf_counter()
        trainer = Trainer(cfg, model=copy.deepcopy(model0), tokenizer=tok, log=_log)
        trainer.fit(overwrite=True)  # the demo owns its run folders and rewrites them
        times[m] = time.perf_counter() - t0
        _log(f"demo: {m} done in {times[m]:.1f} s")
    return times


def _notes(
    cfgs: dict, methods: tuple[str, ...], n_params: int, t_warm: float, wall: float, quick: bool
) -> list[str]:
    """The setup lines of the summary."""
    c = cfgs[methods[0]]
    return [
        f"policy: warm-started testbed model ({n_params:,} parameters), policy load/warm-start {t_warm:.1f} s",
        f"task: {c.task.name}, {c.task.train_size} training problems, {c.task.heldout_size} held-out problems",
        f"RL: {c.trainer.steps} steps x {c.trainer.prompts_per_step} prompts x {c.rollout.n} rollouts, "
        f"{c.trainer.num_mini_batches} mini-batches/step, AdamW lr {c.optim.lr}, temperature {c.rollout.temperature}, "
        f"top-p {c.rollout.top_p}, max {c.rollout.max_new_tokens} new tokens, seed {c.trainer.seed}",
        "methods: " + ", ".join(f"{m} {json.dumps(cfgs[m].method)}" for m in methods),
        f"held-out evaluation: {c.eval.n_samples} samples/problem, temperature {c.eval.temperature}, top-p {c.eval.top_p}",
        f"total wall time of this demo: {wall:.1f} s" + (" (--quick budget)" if quick else ""),
    ]


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    quick: bool = False,
    config: str = "testbed",
    overrides: list[str] | tuple[str, ...] = (),
    methods: tuple[str, ...] = DEMO_METHODS,
    progress: bool = True,
    parallel: bool | None = None,
) -> dict:
    """Run the demo; returns ``{"summaries": ..., "wall_s": ..., "files": [...]}``.

    ``parallel`` (default: when the machine has a core per method) trains the methods at the
    same time in separate processes with one torch thread each."""
    from steer.train.trainer import load_model_and_tokenizer

    t_start = time.perf_counter()
    out = Path(out_dir)
    base_over = list(QUICK_OVERRIDES if quick else []) + list(overrides)
    if parallel is None:
        parallel = len(methods) > 1 and (os.cpu_count() or 1) >= len(methods)
    cfgs = _demo_configs(out, base_over, config, methods, progress, parallel)
    if out.exists():
        for m in methods:
            shutil.rmtree(out / m, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    _log("demo: building or loading the warm-started policy ...")
    t0 = time.perf_counter()
    model0, tok = load_model_and_tokenizer(cfgs[methods[0]])
    t_warm = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model0.parameters())
    _log(f"demo: policy ready in {t_warm:.1f} s ({n_params:,} parameters)")

    times = _train_all(cfgs, methods, model0, tok, parallel=parallel, progress=progress)
    runs = {m: read_jsonl(Path(cfgs[m].logging.out_dir) / "metrics.jsonl") for m in methods}

    images = plot_all(runs, out)
    summaries = {m: summarize_run(r) for m, r in runs.items()}
    for m in methods:
        summaries[m]["wall_s"] = times[m]
    lines = verdict(summaries) if {"grpo", "steer"} <= set(methods) else []
    wall = time.perf_counter() - t_start
    notes = _notes(cfgs, methods, n_params, t_warm, wall, quick)
    title = "steer demo: GRPO vs STEER on the CPU testbed" + (" (quick)" if quick else "")
    md, html = write_summary(summaries, images, out, title=title, notes=notes, verdict_lines=lines)
    meta = {
        "wall_s": wall,
        "warm_start_s": t_warm,
        "train_s": times,
        "quick": quick,
        "configs": {m: to_dict(cfgs[m]) for m in methods},
        "summaries": summaries,
        "verdict": lines,
    }
    (out / "demo.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    print_table(summaries, title=title, verdict_lines=lines)
    print(f"\nwall time {wall:.1f} s; wrote {md}, {html} and plots in {out}/")
    files = [md, html, out / "demo.json", *images.values()] + [
        Path(cfgs[m].logging.out_dir) / "metrics.jsonl" for m in methods
    ]
    return {"summaries": summaries, "wall_s": wall, "files": files, "verdict": lines}
