"""Golden metrics of every registered method, and of ``steer demo --quick``.

Three fixtures, each compared by ``test_golden.py`` within the tolerances stated there (never bit
for bit: PyTorch picks CPU kernels by instruction set, so low bits differ between machines):

- ``metrics.json``: a short ``Trainer.fit`` per method (sampling, scoring, two steps of updates,
  held-out evaluation) from :func:`deterministic_policy` in float64. The untrained policy solves
  nothing, so this checks the whole pipeline, not each method's use of a reward signal.
- ``fixed.json``: per method, two steps of updates on :func:`fixed_rollouts` (integer tokens,
  fixed verdicts with signal in two of four groups, a learning rate that drives ratios past the
  clip range) through ``Trainer.step_data`` and ``Trainer.update``, in float64: every method's
  advantages, weights, loss and update, with signal.
- ``demo_quick.json``: ``steer demo --quick`` as a user runs it (float32, warm-started policy).

Regenerate (only when a change of metrics is intended and explained in the commit)::

    .venv/bin/python -m tests.golden.capture --kind run --out tests/golden/metrics.json
    .venv/bin/python -m tests.golden.capture --kind fixed --out tests/golden/fixed.json
    .venv/bin/python -m tests.golden.capture --kind demo --out tests/golden/demo_quick.json
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


def _trainer(name: str, budget: list[str], out: Path, extra: list[str] | None):
    """A trainer for method ``name`` on :func:`deterministic_policy` in float64."""
    import torch

    from steer.train.config import load_config
    from steer.train.trainer import Trainer

    cfg = load_config(
        "testbed",
        [*budget, f"logging.out_dir={out}", f"method.name={name}", *REQUIRED.get(name, []), *(extra or [])],
    )
    model, tok = deterministic_policy(torch.float64)
    return Trainer(cfg, model=model, tokenizer=tok, log=lambda msg: None)


def run_method(name: str, out: Path, extra: list[str] | None = None) -> list[dict]:
    """A ``BUDGET`` run of ``Trainer.fit`` (sampling, scoring, updates, held-out evaluation) for
    method ``name`` from :func:`deterministic_policy` in float64; the cleaned metrics lines."""
    _trainer(name, BUDGET, out, extra).fit()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [clean(json.loads(line)) for line in lines if line.strip()]


#: The fixed-rollout budget: 4 prompts x 4 responses of random tokens, verdicts fixed below,
#: 2 mini-batches x 2 PPO epochs and a learning rate large enough that later mini-batches see
#: ratios far from 1 (clipping is exercised).
FIXED_BUDGET = [
    "trainer.prompts_per_step=4",
    "trainer.num_mini_batches=2",
    "trainer.ppo_epochs=2",
    "rollout.n=4",
    "rollout.max_new_tokens=12",
    "optim.lr=3e-3",
    "task.train_size=32",
    "task.heldout_size=4",
    "checkpoint.every=0",
    "logging.progress=false",
    "logging.tensorboard=false",
    "trainer.num_threads=1",
]
#: Verdicts of the 16 responses: groups with 2/4, 1/4, 0/4 and 4/4 correct (two equal-reward groups).
FIXED_CORRECT = [1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
#: Response lengths (one empty response, one at the maximum).
FIXED_LENGTHS = [12, 7, 3, 9, 0, 5, 12, 8, 6, 11, 2, 4, 10, 1, 12, 7]
FIXED_STEPS = 2


def fixed_rollouts(trainer, seed: int = 1234):
    """A rollout batch built from integers only (the step-0 prompts of the trainer's task, random
    response tokens from a seeded generator, fixed lengths), identical on every machine: no
    sampling, so the compared numbers depend on the loss path alone."""
    import torch

    from steer.evaluation.generate import Generation
    from steer.train.tasks import format_prompt

    cfg = trainer.cfg
    n, T = cfg.rollout.n, cfg.rollout.max_new_tokens
    tok = trainer.tokenizer
    problems = trainer._problems_for_step(0)
    enc = [tok(format_prompt(tok, trainer.task, p), add_special_tokens=False)["input_ids"] for p in problems]
    P = max(len(e) for e in enc)
    rows = [e for e in enc for _ in range(n)]
    B = len(rows)
    prompt_ids = torch.full((B, P), tok.pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros(B, P, dtype=torch.bool)
    for i, e in enumerate(rows):
        prompt_ids[i, P - len(e) :] = torch.tensor(e)
        prompt_mask[i, P - len(e) :] = True
    special = set(tok.all_special_ids)
    ordinary = torch.tensor([i for i in range(len(tok)) if i not in special])
    g = torch.Generator().manual_seed(seed)
    response_ids = ordinary[torch.randint(len(ordinary), (B, T), generator=g)]
    lengths = torch.tensor(FIXED_LENGTHS[:B])
    response_mask = torch.arange(T)[None, :] < lengths[:, None]
    response_ids = response_ids.masked_fill(~response_mask, tok.pad_token_id)
    return Generation(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        group_ids=torch.arange(B) // n,
        texts=[tok.decode(r[m]) for r, m in zip(response_ids, response_mask)],
        finish=["length" if int(k) == T else "stop" for k in lengths],
    )


def run_method_fixed(name: str, out: Path, extra: list[str] | None = None) -> list[dict]:
    """``FIXED_STEPS`` updates of method ``name`` on :func:`fixed_rollouts` with the verdicts
    ``FIXED_CORRECT`` (every group carries signal but two), through the trainer's own stages
    (``Trainer.step_data`` and ``Trainer.update``), from :func:`deterministic_policy` in float64;
    the cleaned metrics record of each."""
    import torch

    trainer = _trainer(name, FIXED_BUDGET, out, extra)
    ro = fixed_rollouts(trainer)
    correct = torch.tensor(FIXED_CORRECT, dtype=torch.bool)
    return [clean(trainer.update(trainer.step_data(step, ro, correct))) for step in range(FIXED_STEPS)]


def deterministic_policy(dtype=None):
    """``(model, tokenizer)``: the ``micro`` testbed architecture with every weight drawn from
    numpy's PCG64 generator (seed 0; normal(0, 0.02), norm weights 1), in ``dtype`` (default
    float32). numpy's generator is the same on every machine, while torch's own initialisers pick
    vectorised kernels by CPU and give other low bits, so the start is identical everywhere."""
    import numpy as np
    import torch

    from steer.testbed import build_model, build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, "micro", seed=None)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                values = np.ones(p.shape)
            else:
                values = rng.normal(0.0, 0.02, size=tuple(p.shape))
            p.copy_(torch.from_numpy(values))
    return model.to(dtype or torch.float32), tok


def run_demo_quick(out: Path, cache: Path) -> dict[str, list[dict]]:
    """``steer demo --quick`` in a fresh cache; the cleaned metrics of each of its runs."""
    import os
    import subprocess

    env = {**os.environ, "STEER_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "steer.cli", "demo", "--quick", "--out", str(out), "--no-progress"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    runs = sorted(p.parent.name for p in out.glob("*/metrics.jsonl"))
    return {
        name: [
            clean(json.loads(x)) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()
        ]
        for name in runs
    }


def main(argv: list[str] | None = None) -> int:
    from steer.core.registry import list_methods

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", default="all")
    ap.add_argument(
        "--kind",
        choices=["run", "fixed", "demo"],
        default="run",
        help="run: Trainer.fit per method (metrics.json); fixed: the fixed-rollout updates per "
        "method (fixed.json); demo: steer demo --quick (demo_quick.json)",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.kind == "demo":
            result = run_demo_quick(Path(tmp) / "demo", Path(tmp) / "cache")
        else:
            run = run_method if args.kind == "run" else run_method_fixed
            names = list_methods() if args.methods == "all" else args.methods.split(",")
            result = {}
            for name in names:
                print(f"[golden] {args.kind} {name}", file=sys.stderr, flush=True)
                result[name] = run(name, Path(tmp) / name)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
