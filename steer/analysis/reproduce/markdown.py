"""The markdown of ``steer reproduce``: a claim's ``result.md`` and ``REPRODUCTION.md``."""

from __future__ import annotations

import json
from pathlib import Path

from steer.analysis.reproduce.claims import CLAIMS, VERDICT_RULE, Claim
from steer.analysis.reproduce.stats import _finite


def _num(v, digits: int = 4) -> str:
    if not _finite(v):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def write_result(cdir: Path, claim: Claim, res: dict, meta: dict) -> dict:
    """Write a claim's ``result.json`` and ``result.md`` into ``cdir``; returns the result."""
    result = {**meta, **res}
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (cdir / "result.md").write_text(_claim_markdown(claim, res, meta))
    return result


def _claim_markdown(claim: Claim, res: dict, meta: dict) -> str:
    lines = [
        f"# steer reproduce {claim.name} ({claim.figure})",
        "",
        f"**{claim.source}:** {claim.statement}.",
        "",
        f"**Verdict: {res['verdict']}**",
        "",
        f"Verdict rule (fixed before the runs): {VERDICT_RULE}.",
        "",
        "## Comparisons",
        "",
        "| prediction | metric | mean difference (arm - baseline) | se | per seed | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in res["comparisons"]:
        lines.append(
            f"| {c['text']} | {c['metric']} | {_num(c['mean'])} | {_num(c['se'])} | "
            f"{', '.join(_num(x) for x in c['diffs'])} | {c['verdict']} ({c.get('why', '')}) |"
        )
    from steer.analysis.power import markdown as power_markdown

    lines += [""] + power_markdown(res["comparisons"])
    lines += ["## Per arm (mean ± sd over seeds)", ""]
    ms = list(claim.table_metrics)
    lines.append("| arm | method | " + " | ".join(ms) + " |")
    lines.append("|---|---|" + "---|" * len(ms))
    for label, a in res["arms"].items():
        cells = []
        for m in ms:
            s = a["summary"].get(m)
            cells.append(f"{_num(s['mean'])} ± {_num(s['sd'])}" if s else "-")
        lines.append(f"| {label} | {json.dumps(a['method'])} | " + " | ".join(cells) + " |")
    if res["failed"]:
        lines += ["", "## Failed runs", ""] + [
            f"- {f['arm']} seed {f['seed']}: {f['error']}" for f in res["failed"]
        ]
    lines += [
        "",
        "## Setup",
        "",
        f"- command: `{meta['command']}`",
        f"- budget: {'--quick' if meta['quick'] else 'default'}: {', '.join(meta['budget'])}; seeds {meta['seeds']}",
        f"- config: {claim.config}; extra overrides: {meta['overrides'] or 'none'}",
        f"- wall time {meta['wall_s']:.1f} s ({meta['n_run']} runs trained, {meta['n_reused']} reused), "
        f"{meta['date']}, {meta['machine']}",
    ]
    lines += [f"- {n}" for n in claim.notes]
    if meta.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in meta["plots"]]
    return "\n".join(lines) + "\n"


def write_reproduction(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """The table of every claim's result found under ``out_dir`` (full-budget runs only; a claim
    with only a ``--quick`` result, or none, is listed as not run)."""
    out = Path(out_dir)
    path = Path(path) if path else out / "REPRODUCTION.md"
    rows, details = [], []
    for name in CLAIMS:
        f = out / name / "result.json"
        res = json.loads(f.read_text()) if f.exists() else None
        if res is None or res.get("quick"):
            rows.append(
                f"| {name} | - | not run at the default budget | not run | `steer reproduce {name}` |"
            )
            continue
        nums = "; ".join(
            f"{c['text']}: {c['metric']} {_num(c['mean'])} ± {_num(c['se'])} (n={c['n']}) -> {c['verdict']}"
            for c in res["comparisons"]
        )
        rows.append(
            f"| {name} | {res['figure']} | {nums} | **{res['verdict']}** | `{res['command']}` "
            f"({res['wall_s']:.0f} s, {res['date']}) |"
        )
        md = out / name / "result.md"
        if md.exists():
            body = md.read_text()
            start = body.find("## Comparisons")
            end = body.find("## Plots")
            section = body[start : end if end >= 0 else len(body)].replace("## ", "### ")
            details += [f"## {name} ({res['figure']}): {res['verdict']}", "", section.strip(), ""]
    text = "\n".join(
        [
            "# Reproduction of the paper's section-3 claims on the CPU testbed",
            "",
            f"Verdict rule: {VERDICT_RULE}.",
            "",
            "| claim | paper | our numbers (mean difference ± se over seeds) | verdict | command |",
            "|---|---|---|---|---|",
            *rows,
            "",
            *details,
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
