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
    p.add_argument("--output", default=None, help="samples JSONL (default: eval_out/<model>/samples.jsonl)")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark only")
    p.add_argument("--data-dir", default=None, help="folder with the benchmark parquet files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify-timeout", type=float, default=5.0, help="hard limit per verification, seconds")
    p.add_argument("--verify-workers", type=int, default=None, help="verification processes (default: cores)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from steer.evaluation.evaluate import evaluate
    from steer.evaluation.generate import HFBackend, VLLMBackend
    from steer.rewards.pool import VerifierPool

    benches = [b for b in args.benchmarks.split(",") if b.strip()]
    model_label = Path(args.model).name or args.model
    output = args.output or str(Path("eval_out") / model_label / "samples.jsonl")
    if args.backend == "vllm":
        backend = VLLMBackend(args.model, dtype=args.dtype, seed=args.seed)
    else:
        backend = HFBackend.from_pretrained(
            args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size
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
    parser = argparse.ArgumentParser(prog="steer")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
