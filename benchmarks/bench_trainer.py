"""Trainer throughput on the testbed config: rollout tokens/s, update tokens/s, the share of step
time spent in STEER's weighting (Omega + Eq. 10 weights; target under 2%) and in the per-step
analysis metrics (quadrant counts and Omega sums, clip triggers by probability bucket, their
reduction; target under 5%).

    python -m benchmarks.bench_trainer [--steps 4] [--threads 2] [--policy PATH] [key=value ...]
    python -m benchmarks.bench_trainer --baseline DIR [--rounds 2] ...   # side by side

The policy is the warm-started testbed model of ``steer/configs/testbed.yaml`` (built and cached
on first use, under ``$STEER_CACHE_DIR``) unless ``--policy`` names a saved one. For each of
GRPO and STEER it runs ``--steps`` full trainer steps (``Trainer.train_step``, after one warm-up
step) and reports, per method:

- rollout tokens/s: valid generated tokens / time in ``generate``;
- update tokens/s: valid tokens x ppo_epochs / time in the update (forward, loss, backward,
  optimiser), plus the old-log-prob forward separately;
- STEER weighting share: the time of ``Method.compute_omega`` + ``steer_weights`` on every
  mini-batch of the step, re-timed on the step's own tensors, divided by the step time;
  and the difference of ``compute_loss`` time between STEER and GRPO on the same batches;
- analysis-metrics share: ``compute_loss`` of the run's method against the same method built
  with ``quadrant_metrics=False`` (and ``clip_prob_metrics=False`` where the core has that
  switch) on the same batches, plus the time of reducing the step's metrics
  (``steer.core.metrics.MetricReducer``), divided by the step time.

``--baseline DIR`` also runs the benchmark of another checkout (e.g. ``git archive`` of an older
commit unpacked in DIR; its own ``benchmarks/bench_trainer.py``) in alternation with this one,
``--rounds`` times each, every run in a fresh process, and writes both side by side (the mean
over rounds of each tree's per-run means, and each run's numbers), so that machine load hits
both trees alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _minibatches(trainer, data, lr: float):
    """The step's mini-batches as loss batches (no grad), through the trainer's public builder."""
    mask = data.rollouts.response_mask
    B = data.rollouts.batch_size
    nmb = trainer.cfg.trainer.num_mini_batches
    out = []
    for mb in range(nmb):
        idx = torch.arange(mb * (B // nmb), (mb + 1) * (B // nmb))
        with torch.no_grad():
            out.append(
                trainer.loss_batch(
                    data,
                    idx,
                    lr=lr,
                    global_num_tokens=max(float(mask[idx].sum()), 1.0),
                    global_num_seqs=float(mask[idx].any(1).sum()),
                )
            )
    return out


def _without_analysis(method):
    """The same method with the per-step analysis metrics switched off."""
    import dataclasses

    from steer.core.registry import Method

    c = method.config
    off = {
        f.name: False for f in dataclasses.fields(c) if f.name in ("quadrant_metrics", "clip_prob_metrics")
    }
    return Method(method.name, dataclasses.replace(c, **off)), sorted(off)


def _costs(trainer, data, lr: float, metric_items: list) -> dict:
    """Re-timed costs on the step's own tensors (no backward), summed over its mini-batches."""
    from steer.core.metrics import MetricReducer
    from steer.core.registry import build_method
    from steer.core.weights import steer_weights

    method = trainer.method
    plain, switched = _without_analysis(method)
    batches = _minibatches(trainer, data, lr)
    out = {"loss_s": 0.0, "loss_plain_s": 0.0}
    for lb in batches:
        out["loss_s"] += _time(lambda lb=lb: method.compute_loss(lb))
        out["loss_plain_s"] += _time(lambda lb=lb: plain.compute_loss(lb))

    def reduce():
        r = MetricReducer()
        for m, n in metric_items:
            r.add(m, n)
        r.result()

    out["reduce_s"] = _time(reduce)
    out["analysis_switches"] = switched
    if method.config.weighting == "steer":
        c = method.config
        grpo_m = build_method("grpo")
        out.update(weighting_s=0.0, loss_grpo_s=0.0)
        for lb in batches:

            def weights(lb=lb):
                om = method.compute_omega(lb)
                steer_weights(
                    om,
                    lb.response_mask,
                    lambda_min=c.lambda_min,
                    mapping=c.mapping,
                    lambda_max=c.lambda_max,
                    quantile=c.quantile,
                    max_floor=c.max_floor,
                )

            out["weighting_s"] += _time(weights)
            out["loss_grpo_s"] += _time(lambda lb=lb: grpo_m.compute_loss(lb))
    return out


def run(method: str, args, overrides: list[str]) -> dict:
    from steer.train.config import load_config
    from steer.train.trainer import Trainer

    over = [
        f"method.name={method}",
        f"trainer.num_threads={args.threads}",
        "logging.progress=false",
        "logging.tensorboard=false",
        *overrides,
    ]
    if args.policy:
        over.append(f"model.name_or_path={args.policy}")
    cfg = load_config("testbed", over)
    tr = Trainer(cfg, log=lambda m: None)
    captured: list = []
    real_backward = tr.minibatch_backward

    def recording_backward(data, mb_idx, lr):  # keep the step's metrics for the reduction timing
        res = real_backward(data, mb_idx, lr)
        captured.extend(res[1])
        return res

    tr.minibatch_backward = recording_backward
    real_collect = tr.collect
    last = {}

    def recording_collect(step):
        last["data"] = real_collect(step)
        return last["data"]

    tr.collect = recording_collect
    rows = []
    for step in range(args.steps + 1):
        captured.clear()
        rec = tr.train_step(step)
        data = last["data"]
        row = {
            "tokens": int(data.rollouts.response_mask.sum()),
            "rollout_s": data.t_rollout,
            "old_forward_s": data.t_old,
            "update_s": rec["time/update"],
            "step_s": rec["time/step"],
            # the cause pass (steer_causal, entropy_band): its mean per optimiser step x the steps
            "cause_s": rec.get("time/cause", 0.0) * rec["optimizer_steps"],
        }
        if "cause" in tr.method.requires:
            # its loss needs the cause pass's tensors: the loss re-timings do not apply
            if step > 0:
                rows.append(row)
            switched = []
            continue
        costs = _costs(tr, data, tr.current_lr(step), list(captured))
        row["analysis_s"] = max(0.0, costs["loss_s"] - costs["loss_plain_s"]) + costs["reduce_s"]
        row["reduce_s"] = costs["reduce_s"]
        if "weighting_s" in costs:
            row.update(
                weighting_s=costs["weighting_s"],
                loss_steer_s=costs["loss_s"],
                loss_grpo_s=costs["loss_grpo_s"],
            )
        switched = costs["analysis_switches"]
        if step > 0:  # step 0 is a warm-up
            rows.append(row)
    agg: dict = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    agg["rollout_tok_s"] = agg["tokens"] / agg["rollout_s"]
    agg["update_tok_s"] = agg["tokens"] * cfg.trainer.ppo_epochs / agg["update_s"]
    agg["old_forward_tok_s"] = agg["tokens"] / agg["old_forward_s"]
    if "analysis_s" in agg:
        agg["analysis_share_pct"] = 100 * agg["analysis_s"] / agg["step_s"]
    agg["analysis_switches"] = switched
    if "weighting_s" in agg:
        agg["weighting_share_pct"] = 100 * agg["weighting_s"] / agg["step_s"]
        agg["loss_overhead_share_pct"] = (
            100 * max(0.0, agg["loss_steer_s"] - agg["loss_grpo_s"]) / agg["step_s"]
        )
    agg["config"] = {
        "prompts_per_step": cfg.trainer.prompts_per_step,
        "n": cfg.rollout.n,
        "num_mini_batches": cfg.trainer.num_mini_batches,
        "micro_batch_size": cfg.trainer.micro_batch_size,
        "max_new_tokens": cfg.rollout.max_new_tokens,
        "params": sum(p.numel() for p in tr.model.parameters()),
    }
    return agg


def _table(res: dict) -> list[str]:
    lines = [
        "| method | tokens/step | rollout tok/s | old-logp fwd tok/s | update tok/s | step s | cause pass s/step | STEER weighting share | analysis metrics share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in res.items():
        share = f"{r['weighting_share_pct']:.2f}%" if "weighting_share_pct" in r else "-"
        ana = f"{r['analysis_share_pct']:.2f}%" if "analysis_share_pct" in r else "-"
        cause = f"{r['cause_s']:.2f}" if r.get("cause_s") else "-"
        lines.append(
            f"| {m} | {r['tokens']:.0f} | {r['rollout_tok_s']:.0f} | {r['old_forward_tok_s']:.0f} | "
            f"{r['update_tok_s']:.0f} | {r['step_s']:.2f} | {cause} | {share} | {ana} |"
        )
    return lines


def _one_run(tree: Path, argv: list[str]) -> dict:
    """The benchmark of ``tree`` in a fresh process; its results JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_trainer", *argv],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads((tree / "benchmarks" / "results" / "trainer.json").read_text())


def compare(args, passthrough: list[str]) -> int:
    from benchmarks.common import write_results

    base = Path(args.baseline).resolve()
    if not (base / "benchmarks" / "bench_trainer.py").exists():
        print(f"--baseline {base}: no benchmarks/bench_trainer.py there", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {"baseline": [], "this": []}
    for r in range(args.rounds):
        for name, tree in (("baseline", base), ("this", ROOT)):
            t0 = time.perf_counter()
            runs[name].append(_one_run(tree, passthrough))
            print(
                f"round {r + 1}/{args.rounds} {name}: {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    keys = ("rollout_tok_s", "old_forward_tok_s", "update_tok_s", "step_s")
    mean = {
        name: {m: {k: statistics.mean(run[m][k] for run in rs) for k in keys} for m in ("grpo", "steer")}
        for name, rs in runs.items()
    }
    commit = (base / "COMMIT").read_text().strip() if (base / "COMMIT").exists() else str(base)
    lines = [
        f"Side by side: baseline = {commit} (unpacked in `{base}`), this = the working tree; "
        f"{args.rounds} alternating rounds, each a fresh process running `python -m benchmarks.bench_trainer "
        + " ".join(passthrough)
        + "` (mean of its steps after one warm-up step).",
        "",
        "| method | tree | rollout tok/s | old-logp fwd tok/s | update tok/s | step s |",
        "|---|---|---|---|---|---|",
    ]
    for m in ("grpo", "steer"):
        for name in ("baseline", "this"):
            v = mean[name][m]
            lines.append(
                f"| {m} | {name} | {v['rollout_tok_s']:.0f} | {v['old_forward_tok_s']:.0f} | "
                f"{v['update_tok_s']:.0f} | {v['step_s']:.2f} |"
            )
        b, t = mean["baseline"][m], mean["this"][m]
        lines.append(
            f"| {m} | this / baseline | {t['rollout_tok_s'] / b['rollout_tok_s']:.2f} | "
            f"{t['old_forward_tok_s'] / b['old_forward_tok_s']:.2f} | {t['update_tok_s'] / b['update_tok_s']:.2f} | "
            f"{t['step_s'] / b['step_s']:.2f} |"
        )
    lines += ["", "Per run (update tok/s, step s):", ""]
    for name, rs in runs.items():
        for i, run in enumerate(rs):
            lines.append(
                f"- {name} run {i + 1}: "
                + ", ".join(
                    f"{m} {run[m]['update_tok_s']:.0f} tok/s / {run[m]['step_s']:.2f} s"
                    for m in ("grpo", "steer")
                )
            )
    last = runs["this"][-1]
    lines += ["", "This tree's last run:", "", *_table({m: last[m] for m in ("grpo", "steer")})]
    cmd = "python -m benchmarks.bench_trainer --baseline " + str(args.baseline) + f" --rounds {args.rounds}"
    lines += ["", f"Command: `{cmd} " + " ".join(passthrough) + "`."]
    path = write_results(
        "trainer_compare", "Trainer throughput: before and after, side by side", "\n".join(lines), runs
    )
    print("\n".join(lines))
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policy", default=None, help="a saved policy (default: the testbed warm-start)")
    ap.add_argument("--baseline", default=None, help="another checkout to run side by side")
    ap.add_argument("--rounds", type=int, default=2, help="with --baseline: alternating runs per tree")
    ap.add_argument(
        "--methods",
        default="grpo,steer",
        help="comma-separated methods, run one after the other (default grpo,steer; e.g. add steer_causal,entropy_band)",
    )
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.baseline:
        passthrough = [f"--steps={args.steps}", f"--threads={args.threads}"]
        if args.policy:
            passthrough.append(f"--policy={args.policy}")
        return compare(args, passthrough + list(args.overrides))
    from benchmarks.common import write_results

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "grpo" not in methods:
        methods.insert(0, "grpo")
    res = {m: run(m, args, args.overrides) for m in methods}
    c = res["grpo"]["config"]
    lines = [
        f"Testbed config (`steer/configs/testbed.yaml`): {c['prompts_per_step']} prompts x {c['n']} rollouts, "
        f"{c['num_mini_batches']} mini-batches, max {c['max_new_tokens']} new tokens, {c['params']:,}-parameter "
        f"policy, {args.threads} torch threads, mean of {args.steps} steps (`Trainer.train_step`) after one warm-up step.",
        "",
        *_table(res),
    ]
    if "steer" in res:
        s = res["steer"]
        lines += [
            "",
            f"STEER weighting (Omega + Eq. 10 weights, all mini-batches of a step, best of 5 re-timings): "
            f"{1000 * s['weighting_s']:.2f} ms per step = {s['weighting_share_pct']:.2f}% of the step time "
            f"(target < 2%). compute_loss STEER {1000 * s['loss_steer_s']:.2f} ms vs GRPO "
            f"{1000 * s['loss_grpo_s']:.2f} ms per step (difference {s['loss_overhead_share_pct']:.2f}% of the step).",
        ]
    g = res["grpo"]
    for m, r in res.items():
        if r.get("cause_s"):
            lines += [
                "",
                f"{m}: step {r['step_s']:.2f} s = {r['step_s'] / g['step_s']:.2f}x GRPO's {g['step_s']:.2f} s; its "
                f"cause pass (a forward with two backwards, Adam's linearisation, one forward-mode pass, and the "
                f"forward after the step) {r['cause_s']:.2f} s per step = {100 * r['cause_s'] / r['step_s']:.0f}% of "
                f"its step; update (with the pass) {r['update_s']:.2f} s vs GRPO's {g['update_s']:.2f} s.",
            ]
    lines += [
        "",
        "Analysis metrics (compute_loss with against without "
        + (", ".join(res["grpo"]["analysis_switches"]) or "nothing to switch off")
        + ", all mini-batches of a step, best of 5 re-timings each, plus reducing the step's metrics): "
        + "; ".join(
            f"{m} {1000 * r['analysis_s']:.2f} ms per step = {r['analysis_share_pct']:.2f}% of the step time "
            f"(reduction {1000 * r['reduce_s']:.2f} ms)"
            for m, r in res.items()
            if "analysis_s" in r
        )
        + " (target < 5%).",
        "",
        f"Command: `python -m benchmarks.bench_trainer --steps {args.steps} --threads {args.threads}"
        + (f" --methods {args.methods}" if args.methods != "grpo,steer" else "")
        + (f" --policy {args.policy}" if args.policy else "")
        + (" " + " ".join(args.overrides) if args.overrides else "")
        + "`.",
    ]
    path = write_results("trainer", "Trainer throughput (testbed)", "\n".join(lines), res)
    print("\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
