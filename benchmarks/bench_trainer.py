"""Trainer throughput on the testbed config: rollout tokens/s, update tokens/s, and the share of
step time spent in STEER's weighting (Omega + Eq. 10 weights; target under 2%).

    python -m benchmarks.bench_trainer [--steps 4] [--threads 2] [--policy PATH] [key=value ...]

The policy is the warm-started testbed model of ``steer/configs/testbed.yaml`` (built and cached
on first use) unless ``--policy`` names a saved one. For each of GRPO and STEER it runs
``--steps`` full trainer steps (after one warm-up step) and reports, per method:

- rollout tokens/s: valid generated tokens / time in ``generate``;
- update tokens/s: valid tokens x ppo_epochs / time in the update (forward, loss, backward,
  optimiser), plus the old-log-prob forward separately;
- STEER weighting share: the time of ``Method.compute_omega`` + ``steer_weights`` on every
  micro-batch of the step, re-timed on the step's own tensors, divided by the step time;
  and the difference of ``compute_loss`` time between STEER and GRPO on the same batches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _weighting_cost(trainer, data, lr: float) -> tuple[float, float, float]:
    """(omega+weights seconds, steer compute_loss seconds, grpo compute_loss seconds) summed
    over the step's mini-batches, on the step's own tensors (no backward)."""
    from steer.core.registry import build_method
    from steer.core.weights import steer_weights

    steer_m = trainer.method
    grpo_m = build_method("grpo")
    c = steer_m.config
    mask = data.rollouts.response_mask
    B = data.rollouts.batch_size
    nmb = trainer.cfg.trainer.num_mini_batches
    t_w = t_steer = t_grpo = 0.0
    for mb in range(nmb):
        idx = torch.arange(mb * (B // nmb), (mb + 1) * (B // nmb))
        with torch.no_grad():
            st = trainer._stats(trainer.model, data.rollouts, idx, with_sums=steer_m.needs_sums)
        lb = trainer.build_loss_batch(
            st,
            old_logp=data.old_logp[idx],
            old_entropy=data.old_entropy[idx],
            advantages=data.advantages[idx],
            response_mask=mask[idx],
            ref_logp=None,
            lr=lr,
            global_num_tokens=float(mask[idx].sum()),
            global_num_seqs=float(len(idx)),
        )

        def weights(lb=lb):
            om = steer_m.compute_omega(lb)
            steer_weights(
                om,
                lb.response_mask,
                lambda_min=c.lambda_min,
                mapping=c.mapping,
                lambda_max=c.lambda_max,
                quantile=c.quantile,
                max_floor=c.max_floor,
            )

        t_w += _time(weights)
        t_steer += _time(lambda lb=lb: steer_m.compute_loss(lb))
        t_grpo += _time(lambda lb=lb: grpo_m.compute_loss(lb))
    return t_w, t_steer, t_grpo


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
    rows = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        data = tr.collect(step)
        t_collect = time.perf_counter() - t0
        # the update, timed the same way as Trainer.train_step (mini-batches, clip, AdamW)
        lr = tr.current_lr(step)
        tr.model.train()
        B = data.rollouts.batch_size
        nmb = cfg.trainer.num_mini_batches
        t1 = time.perf_counter()
        for _epoch in range(cfg.trainer.ppo_epochs):
            for mb in range(nmb):
                idx = torch.arange(mb * (B // nmb), (mb + 1) * (B // nmb))
                _, _, bad = tr.minibatch_backward(data, idx, lr)
                if bad is None:
                    torch.nn.utils.clip_grad_norm_(tr.model.parameters(), cfg.optim.grad_clip)
                    tr.optimizer.step()
                tr.optimizer.zero_grad(set_to_none=True)
        t_update = time.perf_counter() - t1
        tokens = int(data.rollouts.response_mask.sum())
        row = {
            "tokens": tokens,
            "rollout_s": data.t_rollout,
            "old_forward_s": data.t_old,
            "update_s": t_update,
            "step_s": t_collect + t_update,
        }
        if method.startswith("steer"):
            t_w, t_s, t_g = _weighting_cost(tr, data, lr)
            row.update(weighting_s=t_w, loss_steer_s=t_s, loss_grpo_s=t_g)
        if step > 0:  # step 0 is a warm-up
            rows.append(row)
    agg = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    agg["rollout_tok_s"] = agg["tokens"] / agg["rollout_s"]
    agg["update_tok_s"] = agg["tokens"] * cfg.trainer.ppo_epochs / agg["update_s"]
    agg["old_forward_tok_s"] = agg["tokens"] / agg["old_forward_s"]
    if "weighting_s" in agg:
        agg["weighting_share_pct"] = 100 * agg["weighting_s"] / agg["step_s"]
        agg["loss_overhead_share_pct"] = (
            100 * max(0.0, agg["loss_steer_s"] - agg["loss_grpo_s"]) / agg["step_s"]
        )
    agg["config"] = {
        "prompts_per_step": cfg.trainer.prompts_per_step,
        "n": cfg.rollout.n,
        "num_mini_batches": cfg.trainer.num_mini_batches,
        "max_new_tokens": cfg.rollout.max_new_tokens,
        "params": sum(p.numel() for p in tr.model.parameters()),
    }
    return agg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policy", default=None, help="a saved policy (default: the testbed warm-start)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    from benchmarks.common import write_results

    res = {m: run(m, args, args.overrides) for m in ("grpo", "steer")}
    c = res["grpo"]["config"]
    lines = [
        f"Testbed config (`steer/configs/testbed.yaml`): {c['prompts_per_step']} prompts x {c['n']} rollouts, "
        f"{c['num_mini_batches']} mini-batches, max {c['max_new_tokens']} new tokens, {c['params']:,}-parameter "
        f"policy, {args.threads} torch threads, mean of {args.steps} steps after one warm-up step.",
        "",
        "| method | tokens/step | rollout tok/s | old-logp fwd tok/s | update tok/s | step s | STEER weighting share |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, r in res.items():
        share = f"{r['weighting_share_pct']:.2f}%" if "weighting_share_pct" in r else "-"
        lines.append(
            f"| {m} | {r['tokens']:.0f} | {r['rollout_tok_s']:.0f} | {r['old_forward_tok_s']:.0f} | "
            f"{r['update_tok_s']:.0f} | {r['step_s']:.2f} | {share} |"
        )
    s = res["steer"]
    lines += [
        "",
        f"STEER weighting (Omega + Eq. 10 weights, all mini-batches of a step, best of 5 re-timings): "
        f"{1000 * s['weighting_s']:.2f} ms per step = {s['weighting_share_pct']:.2f}% of the step time "
        f"(target < 2%). compute_loss STEER {1000 * s['loss_steer_s']:.2f} ms vs GRPO "
        f"{1000 * s['loss_grpo_s']:.2f} ms per step (difference {s['loss_overhead_share_pct']:.2f}% of the step).",
        "",
        f"Command: `python -m benchmarks.bench_trainer --steps {args.steps} --threads {args.threads}"
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
