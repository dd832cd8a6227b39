"""Sub-command ``steer probe`` (registered by ``steer/cli.py``): see docs/probe.md.

Examples::

    steer probe                                        # the testbed policy, GRPO, SGD and AdamW steps
    steer probe --method steer --optim sgd:0.01,adamw:1e-4 --out runs/probe_steer
    steer probe --model /path/to/Qwen2.5-Math-1.5B --data dapo.parquet --prompts 8 --n 8 \\
        --micro-batch 2 model.dtype=bfloat16 rollout.max_new_tokens=1024
    steer probe --sweep                                # widths x depths x vocabularies of the testbed model
"""

from __future__ import annotations

import argparse
import sys


def _csv(kind):
    def parse(s: str):
        out = []
        for x in s.split(","):
            x = x.strip()
            if not x:
                continue
            if kind is int and x in ("tok", "none", "0"):
                out.append(None)
                continue
            try:
                out.append(kind(x))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{x!r} is not a valid {kind.__name__}") from None
        if not out:
            raise argparse.ArgumentTypeError("an empty list")
        return out

    return parse


def _overrides(args: argparse.Namespace) -> list[str]:
    ov = []
    if args.model:
        ov += ["model.source=hf", f"model.name_or_path={args.model}"]
    if args.data:
        ov += ["task.name=math", f"task.train_path={args.data}"]
    if args.method:
        ov.append(f"method.name={args.method}")
    if args.device:
        ov.append(f"model.device={args.device}")
    return ov + list(args.overrides)


def _probe(args: argparse.Namespace) -> int:
    from steer.preflight import check_exists, check_model_source, check_writable
    from steer.train.config import ConfigError

    # every path before any model is loaded or step computed (UserError: one line, exit 2)
    check_exists(args.data, "--data", kind="file")
    check_exists(args.checkpoint, "--checkpoint")
    check_model_source(args.model, what="--model")
    check_writable(args.out or ("runs/probe_sweep" if args.sweep else "runs/probe"), "--out")
    if args.sweep and args.checkpoint:
        print(
            "steer probe: --checkpoint does not apply to --sweep (the sweep warm-starts its own models)",
            file=sys.stderr,
        )
        return 2
    try:
        if args.sweep:
            from steer.analysis.probe import run_sweep

            kw = {}
            if args.widths:
                kw["widths"] = args.widths
            if args.depths:
                kw["depths"] = args.depths
            if args.vocabs:
                kw["vocabs"] = args.vocabs
            if args.optim:
                kw["optimizers"] = args.optim
            if args.prompts is not None:
                kw["num_prompts"] = args.prompts
            if args.n is not None:
                kw["n"] = args.n
            if args.warm_start_steps is not None:
                kw["warm_start_steps"] = args.warm_start_steps
            out = run_sweep(
                args.config,
                _overrides(args),
                seed=args.seed,
                out_dir=args.out or "runs/probe_sweep",
                plots=not args.no_plots,
                **kw,
            )
            print(f"sweep verdict: {out['verdict']}")
            return 0
        from steer.analysis.probe import DEFAULT_OPTIMIZERS, run_probe

        out = run_probe(
            args.config,
            _overrides(args),
            optimizers=args.optim or DEFAULT_OPTIMIZERS,
            num_prompts=args.prompts,
            n=args.n,
            grad_clip=args.grad_clip,
            micro_batch_size=args.micro_batch,
            seed=args.seed,
            bins=args.bins,
            out_dir=args.out or "runs/probe",
            plots=not args.no_plots,
            checkpoint=args.checkpoint,
        )
    except ConfigError as exc:
        print(f"steer probe: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"steer probe: {exc}", file=sys.stderr)
        return 1
    for tag, r in out["settings"].items():
        ag = r["agreement"]
        print(
            f"{tag}: Spearman vs measured "
            + ", ".join(f"{k} {ag[k]['spearman']:.3f}" for k in ag)
            + f"\n  verdict: {r['verdict']}"
        )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "probe",
        help="which estimator predicts the entropy change of one real optimiser step (paper Fig. 1-2, 10, 15)",
        description="Sample rollouts, take one real SGD/AdamW step of the configured loss, recompute the "
        "entropy at the same states and compare the measured per-token change with every estimator, the "
        "JVP-linearised change and each token's own-gradient cause. Dotted overrides set the trainer "
        "config (model.*, task.*, rollout.*, method.*, optim.*). See docs/probe.md.",
    )
    p.add_argument(
        "--checkpoint",
        help="a steer train checkpoint (a step folder, or a run folder: its newest): its weights, its AdamW "
        "state and, unless --config is given, its config",
    )
    p.add_argument(
        "--config",
        default=None,
        help="trainer config: YAML file or shipped name (default testbed, or the checkpoint's)",
    )
    p.add_argument("--model", help="any HF causal LM by path or name (sets model.source=hf)")
    p.add_argument("--data", help="prompts from a parquet/JSONL file in verl's schema (sets task.name=math)")
    p.add_argument("--method", help="method name from the registry (default: the config's, grpo)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (sets model.device)")
    p.add_argument(
        "--optim",
        type=str,
        help="comma-separated optimiser settings name:lr (sgd or adamw), e.g. sgd:0.01,adamw:1e-4 "
        "(default sgd:0.01,sgd:0.1,adamw:1e-5,adamw:1e-4; sweep: sgd:0.01,adamw:1e-4)",
    )
    p.add_argument(
        "--prompts", type=int, help="number of prompts (default trainer.prompts_per_step; sweep 12)"
    )
    p.add_argument("--n", type=int, help="rollouts per prompt (default rollout.n)")
    p.add_argument(
        "--grad-clip", type=float, default=None, help="clip the gradient norm (default: no clipping)"
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help="rows per forward pass (default trainer.micro_batch_size; 0 = all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bins", type=int, default=20, help="bins of the binned curves (default 20)")
    p.add_argument("--out", help="output folder (default runs/probe, or runs/probe_sweep with --sweep)")
    p.add_argument("--no-plots", action="store_true", help="write the tables and JSON only")
    p.add_argument(
        "--sweep", action="store_true", help="probe testbed models of several widths, depths and vocabularies"
    )
    p.add_argument("--widths", type=_csv(int), help="sweep: hidden sizes (default 64,128,256)")
    p.add_argument("--depths", type=_csv(int), help="sweep: numbers of layers (default 1,2,4)")
    p.add_argument(
        "--vocabs",
        type=_csv(int),
        help="sweep: vocabulary sizes, 'tok' = the tokenizer's own (default tok,2048)",
    )
    p.add_argument(
        "--warm-start-steps",
        type=int,
        default=None,
        help="sweep: supervised warm-start steps per variant (default: the config's warm-start)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted trainer-config overrides")
    p.set_defaults(func=_probe)
