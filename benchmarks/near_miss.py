"""Self-check, one-digit near misses and cross-gold false positives over the golds of the data files.

For every distinct gold of the parquet files (``reward_model.ground_truth``), with every scorer,
through the verifier pool (the response is ``\\boxed{answer}``):

* **self-check**: the gold as the answer must be accepted;
* **near miss**: the gold with one digit changed (up to ``--variants`` digit positions per gold,
  drawn with a fixed seed, each digit replaced by another drawn digit) must be rejected; a change
  that leaves the string's value the same cannot be told from a real near miss here, so every
  accepted one is listed for a reader to judge;
* **cross-gold**: each gold offered as the answer to the next distinct gold of the same file
  (``--shifts`` neighbours) must be rejected unless the two are the same value (listed too).

Usage::

    python -m benchmarks.near_miss [--data ../shared/data] [--files aime24 math500 ...]
        [--scorers math_verify dapo qwen qwen_strict] [--variants 2] [--shifts 1]
        [--workers 2] [--out benchmarks/results/near_miss]

Writes ``<out>.json`` (every count and every accepted near miss / cross-gold pair) and
``<out>.md`` (the table in docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from steer.rewards import ScoreItem, VerifierPool

SCORERS = ("math_verify", "dapo", "qwen", "qwen_strict")
_DIGIT = re.compile(r"\d")


def load_golds(data: Path, files: list[str] | None) -> dict[str, list[str]]:
    """Distinct gold strings per file, in file order."""
    import pandas as pd

    out: dict[str, list[str]] = {}
    for f in sorted(data.glob("*.parquet")):
        if files and f.stem not in files:
            continue
        df = pd.read_parquet(f, columns=["reward_model"])
        seen: dict[str, None] = {}
        for rm in df["reward_model"]:
            seen.setdefault(str(rm["ground_truth"]).strip(), None)
        out[f.stem] = [g for g in seen if g]
    return out


def near_misses(gold: str, k: int, rng: random.Random) -> list[str]:
    """Up to ``k`` copies of ``gold`` with one digit changed (distinct positions)."""
    pos = [m.start() for m in _DIGIT.finditer(gold)]
    out = []
    for i in rng.sample(pos, min(k, len(pos))):
        d = rng.choice([c for c in "0123456789" if c != gold[i]])
        out.append(gold[:i] + d + gold[i + 1 :])
    return out


def run(args) -> dict:
    golds = load_golds(Path(args.data), args.files)
    rng = random.Random(args.seed)
    tasks: list[tuple[str, str, str, str]] = []  # (kind, file, gold, answer)
    for name, gs in golds.items():
        for i, g in enumerate(gs):
            tasks.append(("self", name, g, g))
            for v in near_misses(g, args.variants, rng):
                tasks.append(("near", name, g, v))
            for s in range(1, args.shifts + 1):
                if len(gs) > s:
                    tasks.append(("cross", name, g, gs[(i + s) % len(gs)]))
    report: dict = {"files": {n: len(g) for n, g in golds.items()}, "scorers": {}}
    with VerifierPool(args.workers, timeout=args.timeout) as pool:
        for scorer in args.scorers:
            t0 = time.perf_counter()
            verdicts = pool.score_batch([ScoreItem(f"\\boxed{{{a}}}", g, scorer) for _, _, g, a in tasks])
            res: dict = {
                k: {"n": 0, "accepted": 0, "errors": 0, "by_file": {}} for k in ("self", "near", "cross")
            }
            res["near"]["accepted_items"] = []
            res["cross"]["accepted_items"] = []
            res["self"]["failed_items"] = []
            res["error_items"] = []
            for (kind, name, g, a), v in zip(tasks, verdicts):
                r = res[kind]
                r["n"] += 1
                bf = r["by_file"].setdefault(name, [0, 0])
                bf[0] += 1
                if v.correct:
                    r["accepted"] += 1
                    bf[1] += 1
                    if kind != "self":
                        r["accepted_items"].append({"file": name, "gold": g, "answer": a})
                elif kind == "self":
                    r["failed_items"].append({"file": name, "gold": g, "reason": v.reason})
                if v.reason == "timeout" or v.reason.startswith("error"):
                    r["errors"] += 1
                    res["error_items"].append(
                        {"kind": kind, "file": name, "gold": g, "answer": a, "reason": v.reason}
                    )
            res["seconds"] = time.perf_counter() - t0
            report["scorers"][scorer] = res
            print(
                f"{scorer}: self {res['self']['accepted']}/{res['self']['n']}, near misses accepted "
                f"{res['near']['accepted']}/{res['near']['n']}, cross-gold accepted "
                f"{res['cross']['accepted']}/{res['cross']['n']} ({res['seconds']:.0f} s)",
                flush=True,
            )
    return report


def markdown(report: dict, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| scorer | self-check accepted | one-digit near misses accepted | rate | cross-gold accepted | errors/timeouts |",
        "|---|---|---|---|---|---|",
    ]
    for s, r in report["scorers"].items():
        n, a = r["near"]["n"], r["near"]["accepted"]
        errs = r["self"]["errors"] + r["near"]["errors"] + r["cross"]["errors"]
        lines.append(
            f"| {s} | {r['self']['accepted']}/{r['self']['n']} | {a}/{n} | {100 * a / max(n, 1):.2f}% | "
            f"{r['cross']['accepted']}/{r['cross']['n']} | {errs} |"
        )
    for s, r in report["scorers"].items():
        if (
            r["near"]["accepted_items"]
            or r["cross"]["accepted_items"]
            or r["self"]["failed_items"]
            or r["error_items"]
        ):
            lines += ["", f"{s}:"]
            for it in r["error_items"]:
                lines.append(
                    f"- {it['reason'][:60]} ({it['kind']}, {it['file']}): `{it['answer'][:80]}` for `{it['gold'][:80]}`"
                )
            for it in r["self"]["failed_items"]:
                lines.append(f"- self-check failed ({it['file']}): `{it['gold']}` ({it['reason']})")
            for it in r["near"]["accepted_items"]:
                lines.append(f"- near miss accepted ({it['file']}): `{it['answer']}` for `{it['gold']}`")
            for it in r["cross"]["accepted_items"]:
                lines.append(f"- cross-gold accepted ({it['file']}): `{it['answer']}` for `{it['gold']}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import sys

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--files", nargs="*", default=None, help="file stems (default: all)")
    p.add_argument("--scorers", nargs="*", default=list(SCORERS))
    p.add_argument("--variants", type=int, default=2, help="near misses per gold")
    p.add_argument("--shifts", type=int, default=1, help="cross-gold neighbours per gold")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/near_miss")
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        p.error(f"--data {args.data}: no such directory")
    report = run(args)
    report["args"] = vars(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    cmd = "python -m benchmarks.near_miss " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".md").write_text(markdown(report, cmd.strip()))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
