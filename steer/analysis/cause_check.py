"""``steer cause-check``: at one training state, the realised entropy change of one optimiser step
under each token weighting against the cause pass's first-order prediction.

For every policy size and seed: the testbed policy trains ``warm_steps`` GRPO steps (so Adam has a
state: on its first step, a sign step, no token weight changes the update to first order), then
the next step's rollouts are collected once and, from the same parameters and optimiser state, each
weighting takes one optimiser step on the first mini-batch (the trainer's own
:meth:`steer.train.trainer.Trainer.update_minibatch`, with the cause pass of :mod:`steer.train.cause`).
Per (size, seed, weighting): the predicted change ``offset + sum_t lambda_t c_t`` and the realised
change of the mini-batch's token-mean entropy, and the weights' own effect: predicted
``sum_t (lambda_t - 1) c_t`` against realised ``real(weighting) - real(grpo)`` (GRPO from the same
state is the unweighted step; at the first mini-batch of a step the ratio is 1, so no clip differs).

Nothing here is tuned to agree: the summary reports the Pearson correlation of predicted and
realised changes over every row, and per weighting the realised/predicted ratio of the weights'
effect, whatever they are.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

from steer.analysis.correlation import pearson

__all__ = ["METHODS", "SIZES", "run_cause_check"]

METHODS = ("grpo", "steer", "steer_directional", "steer_causal", "entropy_band")

#: policy sizes: testbed presets with the warm-start of steer/configs/testbed.yaml (888k and 3.5M
#: parameters; the 124k ``micro`` policy solves no countdown problem there, so every advantage is 0)
SIZES = ("tiny", "small")

BUDGET = (
    "trainer.prompts_per_step=8",
    "trainer.num_mini_batches=4",
    "rollout.n=8",
    "eval.at_start=false",
    "eval.every=0",
    "eval.at_end=false",
    "logging.tensorboard=false",
    "logging.progress=false",
    "trainer.num_threads=1",
    "checkpoint.every=0",
    "checkpoint.save_best=false",
    "trainer.cause_probe=true",
)

QUICK = ("trainer.num_mini_batches=2",)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pearson(xs, ys) -> float:
    if len(xs) < 3:
        return float("nan")
    return pearson(torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64))


def _one_state(size: str, seed: int, methods, warm_steps: int, out: Path, extra, log, task=None) -> list[dict]:
    from steer.core.metrics import reduce_metrics
    from steer.core.registry import build_method
    from steer.train.config import load_config
    from steer.train.trainer import Trainer

    ov = [
        *BUDGET,
        *extra,
        f"warm_start.overrides.preset={size}",
        f"trainer.seed={seed}",
        "method.name=grpo",
        f"method.seed={seed}",
        f"logging.out_dir={out / f'{size}_seed{seed}'}",
    ]
    cfg = load_config("testbed", ov)
    tr = Trainer(cfg, log=lambda m: None, task=task)
    n_params = sum(p.numel() for p in tr.model.parameters())
    t0 = time.perf_counter()
    for s in range(warm_steps):
        tr.train_step(s)
    data = tr.collect(warm_steps)
    lr = tr.current_lr(warm_steps)
    for g in tr.optimizer.param_groups:
        g["lr"] = lr
    model_state = copy.deepcopy(tr.model.state_dict())
    opt_state = copy.deepcopy(tr.optimizer.state_dict())
    mb_idx = torch.arange(data.rollouts.batch_size // cfg.trainer.num_mini_batches)
    rows = []
    for name in methods:
        tr.model.load_state_dict(model_state)
        tr.optimizer.load_state_dict(copy.deepcopy(opt_state))  # a step mutates the loaded tensors
        tr.method = build_method(name, seed=seed)
        tr.model.train()
        upd = tr.update_minibatch(data, mb_idx, lr)
        if upd["problem"] is not None or upd["cause"] is None:
            raise RuntimeError(f"{size} seed {seed} {name}: the step failed ({upd['problem']})")
        met = reduce_metrics(upd["metrics"])
        c = upd["cause"]
        rows.append(
            {
                "size": size,
                "params": n_params,
                "seed": seed,
                "method": name,
                "pred": c["cause/pred_change"],
                "pred_unweighted": c["cause/pred_change_unweighted"],
                "real": c["cause/real_change"],
                "real_rel": c["cause/real_rel_change"],
                "weight_mean": met.get("weight_mean", 1.0),
                "weight_min": met.get("weight_min", 1.0),
                "band_active": met.get("band/active"),
                "band_saturated": met.get("band/saturated"),
                "clip_coef": c["cause/clip_coef"],
            }
        )
    base = next(r for r in rows if r["method"] == "grpo")["real"] if "grpo" in methods else float("nan")
    for r in rows:
        r["effect_pred"] = r["pred"] - r["pred_unweighted"]
        r["effect_real"] = r["real"] - base
    log(f"  {size} ({n_params:,} parameters) seed {seed}: {len(rows)} weightings in {time.perf_counter() - t0:.0f} s")
    return rows


def summarise(rows: list[dict]) -> dict:
    """Pearson of predicted and realised changes over all rows, and per weighting the rows'
    realised/predicted ratios of the change and of the weights' effect."""
    out = {
        "pearson_all": _pearson([r["pred"] for r in rows], [r["real"] for r in rows]),
        "n": len(rows),
        "per_method": {},
    }
    for name in sorted({r["method"] for r in rows}, key=[r["method"] for r in rows].index):
        rs = [r for r in rows if r["method"] == name]
        ratios = [r["real"] / r["pred"] for r in rs if r["pred"] != 0]
        eff = [r["effect_real"] / r["effect_pred"] for r in rs if abs(r["effect_pred"]) > 0]
        out["per_method"][name] = {
            "n": len(rs),
            "pearson": _pearson([r["pred"] for r in rs], [r["real"] for r in rs]),
            "real_over_pred_median": _median(ratios),
            "effect_real_over_pred_median": _median(eff),
            "effect_pred_mean": sum(r["effect_pred"] for r in rs) / len(rs),
            "effect_real_mean": sum(r["effect_real"] for r in rs) / len(rs),
            "weight_mean": sum(r["weight_mean"] for r in rs) / len(rs),
        }
    return out


def _median(xs):
    xs = sorted(x for x in xs if math.isfinite(x))
    if not xs:
        return float("nan")
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _f(v, d=4) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return f"{v:.{d}g}" if v != 0 and abs(v) < 1e-3 else f"{v:.{d}f}"


def _markdown(res: dict) -> str:
    s = res["summary"]
    lines = [
        "# steer cause-check: predicted against realised entropy change, per weighting",
        "",
        f"Pearson(predicted, realised) over all {s['n']} rows: **{_f(s['pearson_all'], 3)}**.",
        "",
        "| weighting | rows | Pearson | median realised/predicted | weights' effect: predicted (mean) | realised (mean) | median realised/predicted effect | mean weight |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in s["per_method"].items():
        lines.append(
            f"| {name} | {m['n']} | {_f(m['pearson'], 3)} | {_f(m['real_over_pred_median'], 3)} | "
            f"{_f(m['effect_pred_mean'])} | {_f(m['effect_real_mean'])} | "
            f"{_f(m['effect_real_over_pred_median'], 3)} | {_f(m['weight_mean'], 4)} |"
        )
    lines += [
        "",
        "Changes are of the mini-batch's token-mean entropy (nats) over one optimiser step; the weights' "
        "effect is predicted sum_t (lambda_t - 1) c_t against realised real(weighting) - real(grpo) from "
        "the same state.",
        "",
        "## Every row",
        "",
        "| size | params | seed | weighting | predicted | realised | predicted unweighted | mean weight | band active |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['size']} | {r['params']:,} | {r['seed']} | {r['method']} | {_f(r['pred'])} | {_f(r['real'])} | "
            f"{_f(r['pred_unweighted'])} | {_f(r['weight_mean'])} | {_f(r['band_active'], 2)} |"
        )
    lines += [
        "",
        "## Setup",
        "",
        f"- command: `{res['command']}`",
        f"- sizes {res['sizes']}, seeds {res['seeds']}, {res['warm_steps']} GRPO steps before the checked step; "
        f"budget: {', '.join(res['budget'])}",
        f"- {res['wall_s']:.0f} s, {res['date']}, {res['machine']}",
    ]
    return "\n".join(lines) + "\n"


def run_cause_check(
    out_dir: str | Path = "runs/cause-check",
    *,
    sizes=SIZES,
    seeds=(0, 1, 2),
    methods=METHODS,
    warm_steps: int = 3,
    quick: bool = False,
    overrides=(),
    command: str = "",
    log=_log,
    task=None,
) -> dict:
    """Run the check and write ``<out>/result.json`` and ``result.md``; returns the result.
    ``task``: a :class:`steer.train.tasks.Task` instead of the config's (tests)."""
    import os
    import platform

    if warm_steps < 1:
        raise ValueError("warm_steps must be >= 1 (Adam's first step is a sign step)")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown weighting(s) {unknown}; valid: {list(METHODS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = list(QUICK if quick else ()) + list(overrides)
    t0 = time.perf_counter()
    rows = []
    log(f"cause-check: sizes {list(sizes)} x seeds {list(seeds)} x {len(methods)} weightings")
    for size in sizes:
        for seed in seeds:
            rows += _one_state(size, int(seed), list(methods), warm_steps, out / "runs", extra, log, task)
    res = {
        "rows": rows,
        "summary": summarise(rows),
        "sizes": list(sizes),
        "seeds": [int(s) for s in seeds],
        "warm_steps": warm_steps,
        "budget": list(BUDGET) + extra,
        "command": command or "steer cause-check",
        "wall_s": time.perf_counter() - t0,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "quick": quick,
    }
    (out / "result.json").write_text(json.dumps(res, indent=1))
    (out / "result.md").write_text(_markdown(res))
    log(f"  wrote {out / 'result.md'}")
    return res
