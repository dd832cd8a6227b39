"""Sub-commands ``steer reproduce CLAIM`` and ``steer report RUN_DIR...``."""

from __future__ import annotations

import argparse
import shlex
import sys


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _seeds(text: str):
    """``--seeds``: comma-separated integers, or ``auto`` (the sequential mode)."""
    return "auto" if text.strip() == "auto" else _ints(text)


def _minutes(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of minutes, got {text!r}")
    return v


def register(subparsers) -> None:
    from steer.analysis.reproduce import CLAIMS

    p = subparsers.add_parser(
        "reproduce",
        help="scripted testbed experiments that check the paper's claims, each with a verdict",
        description=(
            "Run one of the paper's section-3 claims on the CPU testbed (several seeds, a verdict rule "
            "fixed in advance) or 'all'. Finished runs are reused when the settings are unchanged; "
            "results go to OUT/<claim>/result.md and result.json, and a default-budget run updates "
            "OUT/REPRODUCTION.md. See docs/reproduce.md."
        ),
    )
    p.add_argument("claim", choices=[*CLAIMS, "all"], help="the claim to run")
    p.add_argument("--quick", action="store_true", help="a tiny budget (a micro policy, 2 steps, 2 seeds)")
    p.add_argument("--out", default="runs/reproduce", help="output directory (default: runs/reproduce)")
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=None,
        help="comma-separated seeds (default 0,1,2; quick 0,1), or 'auto': add seeds until every "
        "comparison is decided (sequentially corrected; needs --budget; docs/reproduce.md)",
    )
    p.add_argument(
        "--budget", type=_minutes, default=None, help="--seeds auto: wall-clock budget in minutes per claim"
    )
    p.add_argument(
        "--jobs", type=int, default=0, help="runs trained at the same time (0 = one per CPU, max 8)"
    )
    p.add_argument(
        "--fractions",
        type=_floats,
        default=None,
        help="quadrants: intervention fractions (default 0.1; appendix D.2 uses 0.05,0.1,0.2)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="run the claim's arms on another trainer config (a shipped name such as chain_sum, or a "
        "YAML path) instead of its own: does the conclusion hold beyond one task? Use its own --out",
    )
    p.add_argument("--reproduction", default=None, help="also write the REPRODUCTION.md table to this path")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="extra trainer overrides applied to every run (write them right after CLAIM)",
    )
    p.set_defaults(func=_reproduce)

    c = subparsers.add_parser(
        "cause-check",
        help="predicted (cause pass) against realised entropy change of one step, per token weighting",
        description=(
            "At one training state per policy size and seed (after a few GRPO steps), one optimiser step "
            "under each token weighting from the same parameters: the cause pass's first-order prediction "
            "against the realised change of the mini-batch's entropy. Writes OUT/result.md and result.json. "
            "See docs/methods.md (the cause of a token)."
        ),
    )
    c.add_argument("--out", default="runs/cause-check", help="output directory (default: runs/cause-check)")
    c.add_argument(
        "--sizes", default=None, help="testbed presets (default tiny,small; with --quick tiny only)"
    )
    c.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    c.add_argument("--warm-steps", type=int, default=3, help="GRPO steps before the checked one (default 3)")
    c.add_argument("--quick", action="store_true", help="a tiny budget (short responses, small batches)")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="extra trainer overrides")
    c.set_defaults(func=_cause_check)

    r = subparsers.add_parser(
        "report",
        help="compare runs: overlaid curves and a final table (PNG, report.md, self-contained report.html)",
    )
    r.add_argument("runs", nargs="+", help="run directories (or metrics.jsonl files)")
    r.add_argument("--out", default="runs/report", help="output directory (default: runs/report)")
    r.add_argument("--labels", default=None, help="comma-separated labels, one per run")
    r.add_argument(
        "--format",
        default="auto",
        help="log format: auto, steer, verl (a console log file), trl (trainer_state.json or its folder)",
    )
    r.add_argument("--title", default="steer report")
    r.add_argument("--window", type=int, default=1, help="moving-average window of the curves")
    r.set_defaults(func=_report)


def _check_out(out: str) -> None:
    from steer.preflight import check_writable

    check_writable(out, "--out")  # UserError: one line, exit 2 (steer/cli.py)


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _reproduce(args) -> int:
    from steer.analysis.reproduce import CLAIMS, run_claim, write_reproduction
    from steer.train.config import ConfigError

    names = list(CLAIMS) if args.claim == "all" else [args.claim]
    if args.jobs < 0:
        return _err("--jobs must be >= 0")
    auto = args.seeds == "auto"
    if auto and args.budget is None:
        return _err("--seeds auto needs --budget MINUTES")
    if args.budget is not None and not auto:
        return _err("--budget only applies with --seeds auto")
    _check_out(args.out)
    bad = 0
    for name in names:
        cmd = "steer reproduce " + " ".join(
            shlex.quote(a)
            for a in [name]
            + (["--quick"] if args.quick else [])
            + ["--out", args.out]
            + (["--config", args.config] if args.config else [])
            + (["--seeds", "auto", "--budget", f"{args.budget:g}"] if auto else [])
            + (["--seeds", ",".join(map(str, args.seeds))] if args.seeds and not auto else [])
            + (
                ["--fractions", ",".join(f"{f:g}" for f in args.fractions)]
                if args.fractions and name == "quadrants"
                else []
            )
            + list(args.overrides)
        )
        common = dict(
            quick=args.quick,
            jobs=args.jobs or None,
            overrides=args.overrides,
            fractions=args.fractions if name == "quadrants" else None,
            config=args.config,
            command=cmd,
        )
        try:
            if auto:
                from steer.analysis.sequential import run_claim_auto

                res = run_claim_auto(name, args.out, budget_min=args.budget, **common)
                if res.get("failed"):
                    bad += 1
                continue
            res = run_claim(name, args.out, seeds=args.seeds, **common)
        except (ConfigError, ValueError) as exc:
            return _err(str(exc))
        except NotImplementedError as exc:
            print(f"reproduce {name}: not run: {exc}", file=sys.stderr)
            continue
        if res.get("failed"):
            bad += 1
    if not args.quick:
        path = write_reproduction(args.out, args.reproduction)
        print(f"wrote {path}", file=sys.stderr)
    return 1 if bad else 0


def _cause_check(args) -> int:
    from steer.analysis.cause_check import run_cause_check
    from steer.testbed import PRESETS
    from steer.train.config import ConfigError

    sizes_arg = args.sizes if args.sizes is not None else ("tiny" if args.quick else "tiny,small")
    sizes = [x.strip() for x in sizes_arg.split(",") if x.strip()]
    bad = [x for x in sizes if x not in PRESETS]
    if bad or not sizes:
        return _err(f"--sizes: unknown preset(s) {bad}; valid: {sorted(PRESETS)}")
    _check_out(args.out)
    cmd = "steer cause-check " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        run_cause_check(
            args.out,
            sizes=sizes,
            seeds=args.seeds,
            warm_steps=args.warm_steps,
            quick=args.quick,
            overrides=args.overrides,
            command=cmd.strip(),
        )
    except (ConfigError, ValueError) as exc:
        return _err(str(exc))
    return 0


def _report(args) -> int:
    from steer.analysis.report import ReportError, make_report

    labels = [x for x in args.labels.split(",")] if args.labels else None
    if args.window < 1:
        return _err("--window must be >= 1")
    _check_out(args.out)
    try:
        res = make_report(
            args.runs,
            args.out,
            labels=labels,
            fmt=args.format,
            title=args.title,
            window=args.window,
            log=lambda m: print(m, file=sys.stderr),
        )
    except ReportError as exc:
        return _err(str(exc))
    from steer.analysis.summary import print_table

    print_table(res["summaries"], title=args.title)
    print(f"wrote {res['md']} and {res['html']}")
    return 0
