"""``steer eval``: sample, verify and report avg@k / pass@k on the math benchmarks.

Example (the paper's setting, section 5.1)::

    steer eval --model Qwen/Qwen2.5-Math-7B --benchmarks aime24,aime25,amc23,math500,minerva,olympiad \\
        --k 32 --temperature 1.0 --top-p 0.7 --max-tokens 3072 --backend vllm

Without ``--k`` each benchmark uses the paper's k (32 for AIME24/AIME25/AMC23, 1 elsewhere).
Samples go to ``--output`` (JSONL, resumable); the table is printed and written next to it
(``.summary.md`` / ``.summary.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_args(p: argparse.ArgumentParser) -> None:
    from steer.data.benchmarks import BENCHMARKS
    from steer.data.templates import TEMPLATES
    from steer.rewards.registry import list_scorers

    p.add_argument("--model", required=True, help="local folder (save_pretrained) or model name")
    p.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help=f"comma-separated, from: {', '.join(BENCHMARKS)} (default: all)",
    )
    p.add_argument(
        "--k", type=int, default=None, help="samples per problem (default: paper's k per benchmark)"
    )
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=3072)
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    p.add_argument(
        "--device", default=None, help="hf backend: cpu, cuda, cuda:1 (default: cuda if available)"
    )
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, ...")
    p.add_argument("--batch-size", type=int, default=16, help="hf backend: sequences per generate call")
    p.add_argument("--template", choices=TEMPLATES, default="as_is", help="prompt template")
    p.add_argument("--scorer", choices=list_scorers(), default="math_verify")
    p.add_argument(
        "--out",
        "--output",
        dest="output",
        default=None,
        help="samples JSONL (default: eval_out/<model>/samples.jsonl); the tables go next to it",
    )
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark only")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the benchmark parquet files (default: $STEER_DATA_DIR, else the copies shipped "
        "with the package)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify-timeout", type=float, default=5.0, help="hard limit per verification, seconds")
    p.add_argument("--verify-workers", type=int, default=None, help="verification processes (default: cores)")
    p.add_argument("--no-progress", action="store_true")


def check_args(args: argparse.Namespace) -> list[str]:
    """Every argument, path and the output folder, before any model is loaded; returns the
    canonical benchmark names. UserError (one line) on the first problem."""
    from steer.data.benchmarks import benchmark_path, canonical_name
    from steer.errors import UserError
    from steer.preflight import check_exists, check_model_source, is_steer_checkpoint

    benches = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    if not benches:
        raise UserError("--benchmarks: no benchmark named")
    try:
        benches = [canonical_name(b) for b in benches]
    except ValueError as exc:
        raise UserError(f"--benchmarks: {exc}") from None
    for flag, val, ok in (
        ("--k", args.k, args.k is None or args.k >= 1),
        ("--limit", args.limit, args.limit is None or args.limit >= 1),
        ("--max-tokens", args.max_tokens, args.max_tokens >= 1),
        ("--batch-size", args.batch_size, args.batch_size >= 1),
        ("--temperature", args.temperature, args.temperature >= 0),
        ("--top-p", args.top_p, 0 < args.top_p <= 1),
        ("--verify-timeout", args.verify_timeout, args.verify_timeout > 0),
        ("--verify-workers", args.verify_workers, args.verify_workers is None or args.verify_workers >= 1),
    ):
        if not ok:
            bound = (
                "in (0, 1]"
                if flag == "--top-p"
                else ">= 0"
                if flag == "--temperature"
                else ("> 0" if flag == "--verify-timeout" else ">= 1")
            )
            raise UserError(f"{flag} must be {bound}, got {val}")
    check_exists(args.data_dir, "--data-dir", kind="dir")
    for b in benches:
        try:
            benchmark_path(b, args.data_dir)
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
    if not is_steer_checkpoint(args.model):
        check_model_source(args.model, what="--model")
    if args.output is not None and Path(args.output).is_dir():
        raise UserError(
            f"--out {args.output} is a folder; give the samples file, e.g. {args.output}/samples.jsonl"
        )
    return benches


def run(args: argparse.Namespace) -> int:
    from steer.evaluation.evaluate import evaluate
    from steer.evaluation.generate import HFBackend, VLLMBackend
    from steer.preflight import check_writable
    from steer.rewards.pool import VerifierPool

    benches = check_args(args)
    model_label = Path(args.model.rstrip("/")).name or args.model
    if model_label in ("best",) or model_label.startswith("step_"):
        model_label = f"{Path(args.model.rstrip('/')).parent.parent.name}-{model_label}"
    output = args.output or str(Path("eval_out") / model_label / "samples.jsonl")
    check_writable(Path(output).parent, "--out folder")
    model = args.model
    tmp = None
    from steer.preflight import is_steer_checkpoint

    if is_steer_checkpoint(model) and not (Path(model) / "config.json").is_file():
        import tempfile

        from steer.train.export import export_checkpoint

        tmp = tempfile.TemporaryDirectory(prefix="steer-eval-")
        model = str(export_checkpoint(model, tmp.name))
    if args.backend == "vllm":
        backend = VLLMBackend(model, dtype=args.dtype, seed=args.seed)
    else:
        backend = HFBackend.from_pretrained(
            model, device=args.device, dtype=args.dtype, batch_size=args.batch_size
        )
    with VerifierPool(args.verify_workers, timeout=args.verify_timeout) as pool:
        report = evaluate(
            backend=backend,
            tokenizer=backend.tokenizer,
            benchmarks=benches,
            k=args.k,
            temperature=args.temperature,
            top_p=args.top_p,
            max_tokens=args.max_tokens,
            template=args.template,
            scorer=args.scorer,
            output=output,
            limit=args.limit,
            data_dir=args.data_dir,
            seed=args.seed,
            pool=pool,
            progress=not args.no_progress,
            model_name=args.model,
        )
    table = report.table(model_label)
    print(table)
    print(
        f"\n{report.generated} samples generated, {report.skipped} taken from {output}, "
        f"{report.seconds:.1f} s; samples: {output}"
    )
    base = Path(output)
    base.with_suffix(".summary.md").write_text(table + "\n")
    base.with_suffix(".summary.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    print(f"tables: {base.with_suffix('.summary.md')} and {base.with_suffix('.summary.json')}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def register(subparsers) -> None:
    """Add ``eval`` to the ``steer`` command."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on the math benchmarks (avg@k, pass@k)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_args(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``python -m steer.evaluation.cli eval ...``: the ``steer`` command (one-line user errors)."""
    from steer.cli import main as steer_main

    return steer_main(argv)


if __name__ == "__main__":
    sys.exit(main())
