"""The "what more seeds would settle" figures of every comparison recorded in REPRODUCTION.md.

Reads the per-seed paired differences from the comparison tables of REPRODUCTION.md (printed there
with 4 significant digits, so the sd differs from the run's own in the 4th digit), matches each
row to its claim's comparison (for the paper's effect size, where it reports one) and prints a
markdown table (steer.analysis.power):

    PYTHONPATH=. python benchmarks/reproduction_power.py [REPRODUCTION.md]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from steer.analysis import power as P
from steer.analysis import reproduce as R
from steer.analysis import sequential as S


def auto_text(diffs: list[float], direction: int) -> str:
    """What ``--seeds auto`` can still do with a comparison, starting from these seeds."""
    if len(diffs) < 2:
        return "-"
    if not (all(x > 0 for x in diffs) or all(x < 0 for x in diffs)):
        return "settled: the seeds disagree in sign (or a difference is 0), no further seed can decide it"
    first = S.look_verdict(diffs[: S.SEQ_FIRST], direction)["verdict"]
    if first != "inconclusive":
        return f"{first} at the first look"
    cp = S.conditional_power(diffs)
    up, down = (cp["up"], cp["down"]) if direction > 0 else (cp["down"], cp["up"])
    return (
        f"open: by {S.SEQ_LAST} seeds, reproduced {up:.0%} / contradicted {down:.0%} "
        "if the observed mean and sd hold"
    )


def _specs() -> dict[tuple[str, str], R.Comparison]:
    out = {}
    claims = [R.estimator_claim()] + [R.build_claim(n) for n in R.TRAINER_CLAIMS]
    for claim in claims:
        for c in claim.comparisons:
            out[(claim.name, c.text)] = c
    return out


def rows(text: str) -> list[dict]:
    specs = _specs()
    claim, out = None, []
    for line in text.splitlines():
        h = re.match(r"^## (\S+) \(.*\): ", line)
        if h:
            claim = h.group(1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if claim is None or len(cells) != 6 or (claim, cells[0]) not in specs:
            continue
        spec = specs[(claim, cells[0])]
        diffs = [float(x) for x in cells[4].split(",")]
        f = P.comparison_power(diffs, paper_effect=spec.paper_effect, paper_source=spec.paper_source)
        out.append(
            {
                "claim": claim,
                "text": cells[0],
                "metric": cells[1],
                "verdict": cells[5].split(" (")[0],
                "auto": auto_text(diffs, spec.direction),
                **f,
            }
        )
    return out


def markdown(rs: list[dict]) -> str:
    lines = [
        "| claim | prediction | metric | verdict (3 seeds) | paired sd | detectable difference (80% power) "
        "| effect aimed at | effect / sd | seeds needed (80% power) | without the sign clause (not the rule) "
        "| `--seeds auto` from these seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        lines.append(
            f"| {r['claim']} | {r['text']} | {r['metric']} | {r['verdict']} | {P._fmt(r['sd'])} | "
            f"{P._fmt(r['detectable'])} | {P._fmt(r['target'])} ({r['target_source']}) | "
            f"{P._fmt(r.get('effect_sd'))} | {P.needed_text(r)} | {P.no_sign_text(r)} | {r['auto']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "REPRODUCTION.md")
    rs = rows(path.read_text())
    print(markdown(rs))
    print(f"\n{len(rs)} comparisons", file=sys.stderr)
