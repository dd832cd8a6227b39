"""``steer report RUN_DIR...``: compare any set of runs in overlaid plots and one table, written as
PNGs, ``report.md`` and a self-contained ``report.html`` (images embedded as base64).

Each run is read by a small per-format reader into records in our metrics schema (the lines of
``steer train``'s ``metrics.jsonl``: ``step``, ``entropy``, ``acc``, ``heldout/*``, ``m/*``, ...).
Formats: ``steer`` (a run directory with ``metrics.jsonl``, or that file itself). ``verl`` and
``trl`` logs are not read yet: asking for them fails with a message that says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Records = list[dict]


class ReportError(ValueError):
    """A run that cannot be read (the message names the path and what is wrong)."""


def read_steer(path: Path) -> Records:
    """Records of a ``steer train`` run: ``RUN_DIR/metrics.jsonl`` or the JSONL file itself.
    A torn last line (a killed run) is dropped; a malformed line elsewhere is an error."""
    f = path / "metrics.jsonl" if path.is_dir() else path
    if not f.exists():
        raise ReportError(f"{path}: no metrics.jsonl (not a steer run directory)")
    lines = f.read_text().splitlines()
    out: Records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break  # the torn last line of an interrupted run
            raise ReportError(f"{f}: line {i + 1} is not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "step" not in rec:
            raise ReportError(f"{f}: line {i + 1} is not a metrics record with a 'step'")
        # non-finite values are stored as strings ("nan", "inf"): turn them back into floats
        for k, v in rec.items():
            if isinstance(v, str) and v in ("nan", "inf", "-inf"):
                rec[k] = float(v)
        out.append(rec)
    if not out:
        raise ReportError(f"{f}: no records")
    return out


def _not_done(fmt: str) -> Callable[[Path], Records]:
    def reader(path: Path) -> Records:
        raise ReportError(
            f"{path}: reading {fmt} logs is not implemented yet (formats done: steer); "
            f"convert the run to a steer metrics.jsonl or wait for the {fmt} reader"
        )

    return reader


#: Per-format readers (path -> records in our schema).
READERS: dict[str, Callable[[Path], Records]] = {
    "steer": read_steer,
    "verl": _not_done("verl"),
    "trl": _not_done("trl"),
}
DONE_FORMATS = ("steer",)


def detect_format(path: Path) -> str:
    if (path.is_dir() and (path / "metrics.jsonl").exists()) or (path.is_file() and path.suffix == ".jsonl"):
        return "steer"
    if path.is_dir() and (path / "trainer_state.json").exists():
        return "trl"
    raise ReportError(
        f"{path}: cannot tell the log format (no metrics.jsonl); pass --format (one of {sorted(READERS)})"
    )


def read_run(path: str | Path, fmt: str = "auto") -> Records:
    p = Path(path)
    if not p.exists():
        raise ReportError(f"{p}: no such file or directory")
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt not in READERS:
        raise ReportError(f"unknown format {fmt!r}; valid: {sorted(READERS)} or 'auto'")
    return READERS[fmt](p)


def _labels(paths: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels:
        if len(labels) != len(paths):
            raise ReportError(f"--labels: got {len(labels)} labels for {len(paths)} runs")
        if len(set(labels)) != len(labels):
            raise ReportError("--labels: labels must be distinct")
        return list(labels)
    names = [p.name if p.name != "metrics.jsonl" else p.parent.name for p in paths]
    if len(set(names)) == len(names):
        return names
    # same last component (e.g. seed0 of two arms): use the two last components
    names = ["/".join(p.resolve().parts[-2:]) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _has(runs: Mapping[str, Records], pred: Callable[[str], bool]) -> list[str]:
    keys = sorted(
        {
            k
            for recs in runs.values()
            for r in recs
            for k, v in r.items()
            if pred(k) and isinstance(v, (int, float))
        }
    )
    return keys


def make_report(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    fmt: str = "auto",
    title: str = "steer report",
    window: int = 1,
    log=None,
) -> dict:
    """Read every run, write the plots, ``report.md`` and ``report.html``; returns
    ``{"summaries", "images", "md", "html"}``."""
    from steer.analysis.plots import plot_clip_by_prob, plot_lines, plot_passk, plot_quadrants
    from steer.analysis.summary import summarize_run, write_summary

    log = log or (lambda m: None)
    if not paths:
        raise ReportError("give at least one run directory")
    ps = [Path(p) for p in paths]
    names = _labels(ps, labels)
    runs = {}
    for name, p in zip(names, ps):
        runs[name] = read_run(p, fmt)
        log(f"report: {name}: {len(runs[name])} records from {p}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    images["entropy"] = plot_lines(
        runs,
        ["entropy"],
        out / "entropy.png",
        title="Policy entropy (rollouts)",
        ylabel="nats/token",
        window=window,
    )
    acc_keys = [k for k in ("acc", "heldout/acc") if _has(runs, lambda x, k=k: x == k)]
    if acc_keys:
        images["accuracy"] = plot_lines(
            runs,
            acc_keys,
            out / "accuracy.png",
            title="Accuracy",
            ylabel="accuracy",
            window=window,
            marker=None,
        )
    passk = _has(runs, lambda k: k.startswith("heldout/pass@"))
    if passk:
        passk.sort(key=lambda k: int(k.split("@")[1]))
        passk = sorted({passk[0], passk[-1]}, key=lambda k: int(k.split("@")[1]))  # pass@1 and the largest k
        images["passk_steps"] = plot_lines(
            runs,
            passk,
            out / "passk_steps.png",
            title="Held-out pass@k over training",
            ylabel="pass@k",
            marker="o",
        )
        images["passk"] = plot_passk(runs, out / "passk.png")
    if _has(runs, lambda k: k.startswith("m/quadrant/") and k.endswith("/share")):
        images["quadrants"] = plot_quadrants(runs, out / "quadrants.png", window=window)
    if _has(runs, lambda k: k in ("m/weight_mean", "m/weight_min")):
        images["weights"] = plot_lines(
            runs,
            ["m/weight_mean", "m/weight_min"],
            out / "weights.png",
            title="Token weight",
            ylabel="weight",
        )
    clip = _has(runs, lambda k: k.startswith("m/clipfrac"))
    if clip:
        images["clip"] = plot_lines(
            runs,
            clip,
            out / "clip.png",
            title="Clip triggers (share of tokens)",
            ylabel="fraction",
            window=window,
        )
    if _has(runs, lambda k: k.startswith("m/clip_by_prob/")):
        images["clip_by_prob"] = plot_clip_by_prob(runs, out / "clip_by_prob.png")
    summaries = {name: summarize_run(recs) for name, recs in runs.items()}
    notes = [f"{name}: {p}" for name, p in zip(names, ps)]
    md, html = write_summary(summaries, images, out, title=title, notes=notes, basename="report")
    log(f"report: wrote {md}, {html} and {len(images)} plots")
    return {"summaries": summaries, "images": images, "md": md, "html": html}
