"""Summaries of training runs: a per-run digest, a comparison table, and an honest verdict.

The verdict only states what the numbers say: which run kept more entropy, which ended with
the higher held-out accuracy, and whether that difference exceeds twice the combined standard
error over held-out problems (otherwise it is reported as within noise).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from steer.analysis.plots import first_eval, last_eval, series

Records = Sequence[dict]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summarize_run(records: Records) -> dict:
    """Digest of one run's metrics records."""
    train = [r for r in records if "entropy" in r]
    out: dict = {"steps": len(train)}
    if not train:
        return out
    tail = max(1, len(train) // 10)
    _, ent = series(train, "entropy")
    out["entropy_first"] = ent[0]
    out["entropy_last"] = ent[-1]
    out["entropy_min"] = min(ent)
    out["entropy_tail_mean"] = _mean(ent[-tail:])
    out["entropy_head_mean"] = _mean(ent[:tail])
    out["entropy_change_pct"] = (
        100.0 * (out["entropy_tail_mean"] / out["entropy_head_mean"] - 1.0)
        if out["entropy_head_mean"]
        else float("nan")
    )
    _, acc = series(train, "acc")
    out["train_acc_head"] = _mean(acc[:tail])
    out["train_acc_tail"] = _mean(acc[-tail:])
    _, lengths = series(train, "response_length")
    out["response_length_tail"] = _mean(lengths[-tail:])
    for key in ("m/weight_mean", "m/weight_min", "m/clipfrac_low", "m/clipfrac_high"):
        _, v = series(train, key)
        if v:
            out[key.split("/", 1)[1] + "_avg"] = _mean(v)
    if any("m/weight_min" in r for r in train):
        out["weight_min_overall"] = min(series(train, "m/weight_min")[1])
    times = [r.get("time/step", 0.0) + r.get("time/eval", 0.0) for r in records]
    out["wall_s"] = float(sum(t for t in times if isinstance(t, (int, float))))
    out["skipped_steps"] = int(sum(r.get("nonfinite_skips", 0) for r in train))
    first, last = first_eval(records), last_eval(records)
    for tag, ev in (("start", first), ("end", last)):
        for k, v in ev.items():
            if k.startswith("heldout/"):
                out[f"{tag}/{k.split('/', 1)[1]}"] = v
    return out


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


ROWS: list[tuple[str, str, int]] = [
    ("steps", "RL steps", 0),
    ("wall_s", "wall time (s)", 1),
    ("entropy_head_mean", "entropy, first 10% of steps (nats/token)", 3),
    ("entropy_tail_mean", "entropy, last 10% of steps", 3),
    ("entropy_change_pct", "entropy change (%)", 1),
    ("entropy_min", "entropy, minimum", 3),
    ("train_acc_head", "train accuracy, first 10%", 3),
    ("train_acc_tail", "train accuracy, last 10%", 3),
    ("start/acc", "held-out accuracy at start", 3),
    ("end/acc", "held-out accuracy at end", 3),
    ("end/acc_se", "  (standard error)", 3),
    ("end/pass@1", "held-out pass@1", 3),
    ("end/pass@4", "held-out pass@4", 3),
    ("end/pass@16", "held-out pass@16", 3),
    ("start/diversity", "distinct correct solutions/problem at start", 2),
    ("end/diversity", "distinct correct solutions/problem at end", 2),
    ("weight_mean_avg", "STEER weight, mean", 4),
    ("weight_min_overall", "STEER weight, minimum", 3),
    ("clipfrac_high_avg", "clip fraction (high)", 4),
    ("skipped_steps", "skipped non-finite steps", 0),
]


def comparison_rows(summaries: Mapping[str, dict]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", *summaries.keys()]
    rows = []
    for key, label, digits in ROWS:
        if not any(key in s for s in summaries.values()):
            continue
        rows.append([label, *(_fmt(s.get(key), digits) for s in summaries.values())])
    return header, rows


def verdict(summaries: Mapping[str, dict], *, baseline: str = "grpo", candidate: str = "steer") -> list[str]:
    """Plain sentences comparing ``candidate`` with ``baseline`` as measured."""
    if baseline not in summaries or candidate not in summaries:
        return []
    b, c = summaries[baseline], summaries[candidate]
    B, C = baseline.upper(), candidate.upper()
    lines = []
    bd, cd = b.get("entropy_change_pct"), c.get("entropy_change_pct")
    if bd is not None and cd is not None:
        decline = "declined" if bd < -10 else ("rose" if bd > 10 else "stayed roughly flat")
        lines.append(
            f"Entropy: under {B} the policy entropy {decline} ({_fmt(b['entropy_head_mean'])} -> "
            f"{_fmt(b['entropy_tail_mean'])} nats/token, {bd:+.1f}%); under {C} it went "
            f"{_fmt(c['entropy_head_mean'])} -> {_fmt(c['entropy_tail_mean'])} ({cd:+.1f}%)."
        )
        if cd > bd + 5:
            lines.append(f"{C} kept more entropy than {B} by the end of training.")
        elif cd < bd - 5:
            lines.append(f"{C} ended with less entropy than {B}.")
        else:
            lines.append(
                f"{C} and {B} ended with similar entropy (within 5 percentage points of relative change)."
            )
    ba, ca = b.get("end/acc"), c.get("end/acc")
    if ba is not None and ca is not None:
        se = math.hypot(b.get("end/acc_se", 0.0) or 0.0, c.get("end/acc_se", 0.0) or 0.0)
        diff = ca - ba
        if diff == 0:
            judge = "identical: no winner"
        elif se == 0:
            judge = f"{C} {'better' if diff > 0 else 'worse'} by {diff:+.3f} (no standard error available)"
        elif abs(diff) <= 2 * se:
            judge = f"the difference ({diff:+.3f}) is within twice the combined standard error ({2 * se:.3f}): no measurable winner"
        elif diff > 0:
            judge = f"{C} is better by {diff:+.3f} (more than twice the combined standard error {2 * se:.3f})"
        else:
            judge = f"{C} does NOT beat {B}: it is worse by {diff:+.3f} (combined standard error {se:.3f})"
        lines.append(f"Held-out accuracy at the end: {B} {ba:.3f}, {C} {ca:.3f}; {judge}.")
    bp, cp = b.get("end/pass@16"), c.get("end/pass@16")
    if bp is not None and cp is not None:
        lines.append(f"Held-out pass@16: {B} {bp:.3f}, {C} {cp:.3f}.")
    bv, cv = b.get("end/diversity"), c.get("end/diversity")
    if bv is not None and cv is not None:
        lines.append(
            f"Distinct correct solutions per held-out problem: start {_fmt(b.get('start/diversity'), 2)}, "
            f"{B} {bv:.2f}, {C} {cv:.2f}."
        )
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def write_summary(
    summaries: Mapping[str, dict],
    images: Mapping[str, str | Path],
    out_dir: str | Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    verdict_lines: Sequence[str] = (),
    basename: str = "summary",
) -> tuple[Path, Path]:
    """``<basename>.md`` (images linked) and ``<basename>.html`` (images embedded as base64, no
    external reference: the page is self-contained)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = comparison_rows(summaries)
    md = [f"# {title}", ""]
    if verdict_lines:
        md += ["## Outcome (as measured)", ""] + [f"- {line}" for line in verdict_lines] + [""]
    md += ["## Numbers", "", markdown_table(header, rows), ""]
    if notes:
        md += ["## Setup", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Plots", ""]
    for name, path in images.items():
        md.append(f"![{name}]({Path(path).name})")
    md_path = out / f"{basename}.md"
    md_path.write_text("\n".join(md) + "\n")

    h = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:1em 0}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if verdict_lines:
        h.append("<h2>Outcome (as measured)</h2><ul>")
        h += [f"<li>{html.escape(line)}</li>" for line in verdict_lines]
        h.append("</ul>")
    h.append("<h2>Numbers</h2><table><tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in header) + "</tr>")
    for r in rows:
        h.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>")
    h.append("</table>")
    if notes:
        h.append("<h2>Setup</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    h.append("<h2>Plots</h2>")
    for name, path in images.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        h.append(f"<div><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'></div>")
    h.append("</body></html>")
    html_path = out / f"{basename}.html"
    html_path.write_text("\n".join(h) + "\n")
    return md_path, html_path


def print_table(summaries: Mapping[str, dict], *, title: str = "", verdict_lines: Sequence[str] = ()) -> None:
    """The comparison table on stdout (rich when available, plain text otherwise)."""
    header, rows = comparison_rows(summaries)
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title or None)
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        console = Console()
        console.print(table)
        for line in verdict_lines:
            console.print(f"- {line}", highlight=False, markup=False)
    except ImportError:  # pragma: no cover - rich is a dependency of the environment
        if title:
            print(title)
        print(markdown_table(header, rows))
        for line in verdict_lines:
            print(f"- {line}")
