"""Golden metrics of one short ``steer train`` run per registered method (and ``steer demo --quick``).

The fixture ``metrics.json`` was written by this script before the core was reorganised into a
table of pure functions; ``test_golden.py`` reruns the same budget and compares every logged
number bit for bit (timing keys excepted). A key that changes on purpose (a semantic fix) is
listed in ``test_golden.py`` with the reason.

Regenerate (only when a change of metrics is intended and explained in the commit)::

    .venv/bin/python -m tests.golden.capture --out tests/golden/metrics.json
    .venv/bin/python -m tests.golden.capture --demo --out tests/golden/demo_quick.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

#: The training budget (same shape as the unit tests' SMALL config, 2 steps).
BUDGET = [
    "trainer.steps=2",
    "trainer.prompts_per_step=4",
    "trainer.num_mini_batches=2",
    "rollout.n=4",
    "rollout.max_new_tokens=20",
    "task.train_size=32",
    "task.heldout_size=4",
    "eval.every=0",
    "eval.at_start=false",
    "eval.at_end=true",
    "eval.n_samples=4",
    "eval.ks=[1,2,4]",
    "checkpoint.every=0",
    "logging.progress=false",
    "logging.tensorboard=false",
    "trainer.num_threads=1",
]

WARM = {"preset": "micro", "steps": 60, "train_problems": 300, "batch_size": 32, "threads": 1}

#: Parameters without a published default get fixed values here.
REQUIRED = {
    "gtpo": ["method.alpha1=1.0", "method.alpha2=0.1"],
    "grpo_s": ["method.beta1=1.0", "method.beta2=0.1"],
    "ppl_adv": ["method.alpha=0.01"],
    "position_adv": ["method.gamma=0.5", "method.sigma=linear"],
    "quadrant": ["method.target=II"],
}


def is_timing(key: str) -> bool:
    return key.startswith("time/") or key.endswith("tok_per_s") or "per_s" in key


def clean(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not is_timing(k)}


def run_method(name: str, policy: Path, out: Path, extra: list[str] | None = None) -> list[dict]:
    from steer.train.config import load_config
    from steer.train.trainer import Trainer

    cfg = load_config(
        "testbed",
        [
            *BUDGET,
            f"model.name_or_path={policy}",
            f"logging.out_dir={out}",
            f"method.name={name}",
            *REQUIRED.get(name, []),
            *(extra or []),
        ],
    )
    Trainer(cfg).fit()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [clean(json.loads(line)) for line in lines if line.strip()]


def build_policy(cache: Path) -> Path:
    from steer.testbed import warm_start

    return warm_start(dict(WARM), cache, progress=False)


def run_demo_quick(out: Path, cache: Path) -> dict[str, list[dict]]:
    """``steer demo --quick`` in a fresh cache; the cleaned metrics of each of its runs."""
    import os
    import subprocess

    env = {**os.environ, "STEER_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "steer.cli", "demo", "--quick", "--out", str(out), "--no-progress"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    runs = sorted(p.parent.name for p in out.glob("*/metrics.jsonl"))
    return {
        name: [clean(json.loads(x)) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
        for name in runs
    }


def main(argv: list[str] | None = None) -> int:
    from steer.core.registry import list_methods

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--demo", action="store_true", help="capture steer demo --quick instead")
    args = ap.parse_args(argv)
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            demo = run_demo_quick(Path(tmp) / "demo", Path(tmp) / "cache")
        args.out.write_text(json.dumps(demo, indent=1, sort_keys=True) + "\n")
        return 0
    names = list_methods() if args.methods == "all" else args.methods.split(",")
    result: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        policy = build_policy(Path(tmp) / "ws")
        for name in names:
            print(f"[golden] {name}", file=sys.stderr, flush=True)
            result[name] = run_method(name, policy, Path(tmp) / name)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
