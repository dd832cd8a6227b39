"""Measure a warm-start: ``python -m steer.testbed.measure [--steps N] [--preset P] ...``.

Trains (or reuses from the cache) the warm-started policy for the given config, then samples
``k`` responses per held-out problem and prints held-out accuracy, pass@k, mean per-token entropy
and diversity (the numbers in docs/testbed.md come from this command).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from .countdown import CountdownConfig, CountdownTask
from .diversity import evaluate_policy
from .model import load_policy
from .warmstart import WarmStartConfig, default_cache_dir, warm_start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = WarmStartConfig()
    ap.add_argument("--preset", default=defaults.preset)
    ap.add_argument("--steps", type=int, default=defaults.steps)
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--lr", type=float, default=defaults.lr)
    ap.add_argument("--train-problems", type=int, default=defaults.train_problems)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--task", default="{}", help="JSON of CountdownConfig fields")
    ap.add_argument("--model", default="{}", help="JSON of Qwen2Config overrides")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = WarmStartConfig(
        task=CountdownConfig(**json.loads(args.task)),
        preset=args.preset,
        model_overrides=json.loads(args.model),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        train_problems=args.train_problems,
        seed=args.seed,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    path = warm_start(cfg, args.cache_dir or default_cache_dir(), progress=not args.no_progress)
    warm_wall = time.perf_counter() - t0
    meta = json.loads((path / "warmstart.json").read_text())
    model, tok = load_policy(path)
    problems = CountdownTask(cfg.task).problems("heldout", args.heldout)
    t1 = time.perf_counter()
    res = evaluate_policy(model, tok, problems, k=args.k, temperature=args.temperature, top_p=args.top_p)
    out = {
        "path": str(path),
        "warm_start_call_seconds": round(warm_wall, 2),
        "train_seconds": round(meta["train_seconds"], 2),
        "train_cpu_seconds": round(meta.get("train_cpu_seconds", float("nan")), 2),
        "final_loss": round(meta["final_loss"], 4),
        "parameters": meta["parameters"],
        "eval_seconds": round(time.perf_counter() - t1, 2),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()},
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
