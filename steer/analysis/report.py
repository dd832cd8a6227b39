"""``steer report RUN_DIR...``: compare any set of runs in overlaid plots and one table, written as
PNGs, ``report.md`` and a self-contained ``report.html`` (images embedded as base64).

Each run is read by a small per-format reader into records in our metrics schema (the lines of
``steer train``'s ``metrics.jsonl``: ``step``, ``entropy``, ``acc``, ``heldout/*``, ``m/*``, ...).
Formats: ``steer`` (a run directory with ``metrics.jsonl``, or that file itself), ``verl`` (the
console output of ``verl.trainer.main_ppo`` with ``trainer.logger=[console]`` saved to a file: its
``step:N - key:value - ...`` lines) and ``trl`` (the ``trainer_state.json`` that transformers'
Trainer writes: its ``log_history``). The verl and TRL readers map onto our keys only what has the
same meaning (:data:`VERL_KEYS`, :data:`TRL_KEYS`, and each integration's ``steer/`` metrics, which
are the core's own) and leave the rest out; docs/reproduce.md lists the mapping.
"""

from __future__ import annotations

import json
import re
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
    text = f.read_text(errors="replace")
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise ReportError(
            f"{f}: NUL bytes from line {line} on: the file was damaged (cut or overwritten while a run "
            "was appending to it)"
        )
    lines = text.splitlines()
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


def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


# ---------------------------------------------------------------------------------------------
# verl: the console logger's step lines

#: verl's keys -> ours, where the meaning is the same. ``actor/entropy`` is the token-mean entropy
#: of the step's rollouts under the policy that sampled them (verl's old-log-prob pass), as our
#: ``entropy`` (Eq. 4); ``critic/score/mean`` the mean reward-function score of the rollouts (before
#: any KL-in-reward), as our ``reward``. Every ``actor/steer/<key>`` (the plugin's core metrics,
#: reduced over the whole step by ``steer.core.metrics``) becomes ``m/<key>``.
VERL_KEYS: dict[str, str] = {
    "actor/entropy": "entropy",
    "critic/score/mean": "reward",
    "response_length/mean": "response_length",
    "response_length/max": "response_length_max",
    "actor/grad_norm": "grad_norm",
    "actor/lr": "lr",
    "actor/pg_loss": "m/pg_loss",
    "timing_s/step": "time/step",
}
#: used only when the line has no ``actor/steer/clipfrac_dual`` (verl's own losses): verl's
#: ``pg_clipfrac_lower`` is the dual clip's share (A < 0 and r > c), the core's ``clipfrac_dual``.
#: verl's ``actor/pg_clipfrac`` (lower and upper clip together) has no single key of ours and is
#: left out.
VERL_FALLBACK_KEYS: dict[str, str] = {"actor/pg_clipfrac_lower": "m/clipfrac_dual"}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_VERL_STEP = re.compile(r"(?:^|\s)step:(\d+) - (.*)$")
_VERL_VALUE = re.compile(r"^(?:np\.\w+\()?\s*([-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|nan|inf))\s*\)?$")


def _verl_value(text: str) -> float | None:
    m = _VERL_VALUE.match(text.strip())
    if not m:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def parse_verl_line(line: str) -> dict | None:
    """verl's ``key:value`` pairs of one console step line (``None`` if the line is not one);
    numbers only (``np.int64(2)`` reads as 2.0), other values are dropped."""
    m = _VERL_STEP.search(_ANSI.sub("", line).rstrip())
    if not m:
        return None
    out: dict = {"step": int(m.group(1))}
    for item in m.group(2).split(" - "):
        key, sep, val = item.rpartition(":")
        if not sep or not key.strip():
            continue
        v = _verl_value(val)
        if v is not None:
            out[key.strip()] = v
    return out


def verl_to_steer(raw: Mapping) -> dict:
    """One verl step (a parsed line) in our schema: :data:`VERL_KEYS`, ``actor/steer/*`` -> ``m/*``."""
    rec: dict = {"step": int(raw["step"])}
    for k, v in raw.items():
        if k in VERL_KEYS:
            rec[VERL_KEYS[k]] = v
        elif k.startswith("actor/steer/"):
            rec["m/" + k[len("actor/steer/") :]] = v
    for k, ours in VERL_FALLBACK_KEYS.items():
        if k in raw and ours not in rec:
            rec[ours] = raw[k]
    return rec


def read_verl(path: Path) -> Records:
    """Records of a verl run from its console output saved to a file (``python -m
    verl.trainer.main_ppo ... trainer.logger=[console] > run.log 2>&1``): every ``step:N - ...``
    line; Ray's ``(TaskRunner pid=...)`` prefixes and colour codes are allowed, other lines are
    skipped; a step printed twice (a resumed run) keeps its last line."""
    if path.is_dir():
        raise ReportError(
            f"{path}: a verl run is read from its console log file (the trainer.logger=[console] "
            "output saved to a file), not from a directory"
        )
    by_step: dict[int, dict] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            raw = parse_verl_line(line)
            if raw is not None:
                by_step[raw["step"]] = verl_to_steer(raw)
    if not by_step:
        raise ReportError(
            f"{path}: no verl step lines ('step:N - key:value - ...'; run verl with "
            "trainer.logger=[console] and save its output)"
        )
    return [by_step[s] for s in sorted(by_step)]


# ---------------------------------------------------------------------------------------------
# TRL: trainer_state.json's log_history

#: TRL's GRPOTrainer keys -> ours, where the meaning is the same. TRL's ``entropy`` is the
#: token-mean entropy of the policy on the step's completions, computed in the loss (for the first
#: pass over a batch, the policy that sampled it: our ``entropy``); ``reward`` the mean of the
#: reward functions' weighted sum over the completions, as our ``reward``.
TRL_KEYS: dict[str, str] = {
    "entropy": "entropy",
    "reward": "reward",
    "completions/mean_length": "response_length",
    "completions/max_length": "response_length_max",
    "grad_norm": "grad_norm",
    "learning_rate": "lr",
    "loss": "loss",
    "step_time": "time/step",
}
#: used only when the entry has no ``steer/`` clip metrics (a stock GRPOTrainer): TRL's
#: ``clip_ratio/low_mean`` is the share of tokens with A < 0 and r < 1 - eps (the core's
#: ``clipfrac_low``), ``clip_ratio/high_mean`` those with A > 0 and r > 1 + eps_high (``clipfrac_high``).
TRL_FALLBACK_KEYS: dict[str, str] = {
    "clip_ratio/low_mean": "m/clipfrac_low",
    "clip_ratio/high_mean": "m/clipfrac_high",
}
#: steer's TRL metrics log STEER's Omega keys without the method prefix our trainer writes
_TRL_RENAME = {"steer/omega_max": "m/steer/omega_max", "steer/omega_abs_mean": "m/steer/omega_abs_mean"}


def trl_to_steer(entry: Mapping) -> dict | None:
    """One ``log_history`` entry in our schema (``None`` for an entry that is not a training
    step's log: the final ``train_runtime`` summary, evaluation entries)."""
    if not isinstance(entry.get("step"), int) or not any(k in entry for k in ("entropy", "reward", "loss")):
        return None
    rec: dict = {"step": int(entry["step"])}
    for k, v in entry.items():
        x = _number(v)
        if x is None:
            continue
        if k in TRL_KEYS:
            rec[TRL_KEYS[k]] = x
        elif k in _TRL_RENAME:
            rec[_TRL_RENAME[k]] = x
        elif k.startswith("steer/"):
            rec["m/" + k[len("steer/") :]] = x
    for k, ours in TRL_FALLBACK_KEYS.items():
        x = _number(entry.get(k))
        if x is not None and ours not in rec:
            rec[ours] = x
    return rec


def _checkpoint_step(p: Path) -> int | None:
    tail = p.parent.name[len("checkpoint-") :]
    return int(tail) if tail.isdigit() else None


def _trl_state_file(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / "trainer_state.json").exists():
        return path / "trainer_state.json"
    ckpts = [p for p in path.glob("checkpoint-*/trainer_state.json") if _checkpoint_step(p) is not None]
    if ckpts:  # the latest checkpoint's state holds the whole history
        return max(ckpts, key=_checkpoint_step)
    raise ReportError(
        f"{path}: no trainer_state.json (neither in the directory nor in a checkpoint-*/; "
        "call trainer.save_state() or save a checkpoint)"
    )


def read_trl(path: Path) -> Records:
    """Records of a TRL run: ``trainer_state.json`` (the file, its directory, or an output
    directory with ``checkpoint-*/``: the latest checkpoint's), one record per training log entry
    (``logging_steps`` apart); a step logged twice keeps its last entry."""
    f = _trl_state_file(path)
    try:
        state = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{f}: not JSON ({exc.msg})") from None
    hist = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(hist, list):
        raise ReportError(f"{f}: no 'log_history' list (not a transformers trainer_state.json)")
    by_step: dict[int, dict] = {}
    for entry in hist:
        rec = trl_to_steer(entry) if isinstance(entry, dict) else None
        if rec is not None:
            by_step[rec["step"]] = rec
    if not by_step:
        raise ReportError(f"{f}: log_history has no training log entries")
    return [by_step[s] for s in sorted(by_step)]


#: Per-format readers (path -> records in our schema).
READERS: dict[str, Callable[[Path], Records]] = {
    "steer": read_steer,
    "verl": read_verl,
    "trl": read_trl,
}
DONE_FORMATS = ("steer", "verl", "trl")


def _looks_like_verl(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return any(parse_verl_line(line) is not None for line in fh)
    except OSError:
        return False


def detect_format(path: Path) -> str:
    if (path.is_dir() and (path / "metrics.jsonl").exists()) or (path.is_file() and path.suffix == ".jsonl"):
        return "steer"
    if path.is_file() and path.name == "trainer_state.json":
        return "trl"
    if path.is_dir() and (
        (path / "trainer_state.json").exists() or any(path.glob("checkpoint-*/trainer_state.json"))
    ):
        return "trl"
    if path.is_file() and _looks_like_verl(path):
        return "verl"
    raise ReportError(
        f"{path}: cannot tell the log format (no metrics.jsonl, trainer_state.json or verl step "
        f"lines); pass --format (one of {sorted(READERS)})"
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


def _plots(runs: dict, out: Path, window: int) -> dict[str, Path]:
    """Every plot the runs' metrics allow (entropy always; accuracy, reward, pass@k, quadrants,
    weights and clipping where some run logged them), written into ``out``."""
    from steer.analysis.plots import plot_clip_by_prob, plot_lines, plot_passk, plot_quadrants

    images: dict[str, Path] = {}

    def lines(name: str, keys: list[str], title: str, ylabel: str, **options) -> None:
        """``images[name]``: ``keys`` over the steps, one panel each (nothing when ``keys`` is empty)."""
        if keys:
            images[name] = plot_lines(runs, keys, out / f"{name}.png", title=title, ylabel=ylabel, **options)

    lines("entropy", ["entropy"], "Policy entropy (rollouts)", "nats/token", window=window)
    acc_keys = [k for k in ("acc", "heldout/acc") if _has(runs, lambda x, k=k: x == k)]
    lines("accuracy", acc_keys, "Accuracy", "accuracy", window=window, marker=None)
    if _has(runs, lambda k: k == "reward"):
        lines("reward", ["reward"], "Mean reward of the step's rollouts", "reward", window=window)
    passk = _has(runs, lambda k: k.startswith("heldout/pass@"))
    if passk:
        passk.sort(key=lambda k: int(k.split("@")[1]))
        passk = sorted({passk[0], passk[-1]}, key=lambda k: int(k.split("@")[1]))  # pass@1 and the largest k
        lines("passk_steps", passk, "Held-out pass@k over training", "pass@k", marker="o")
        images["passk"] = plot_passk(runs, out / "passk.png")
    if _has(runs, lambda k: k.startswith("m/quadrant/") and k.endswith("/share")):
        images["quadrants"] = plot_quadrants(runs, out / "quadrants.png", window=window)
    if _has(runs, lambda k: k in ("m/weight_mean", "m/weight_min")):
        lines("weights", ["m/weight_mean", "m/weight_min"], "Token weight", "weight")
    clip = _has(runs, lambda k: k.startswith("m/clipfrac"))
    lines("clip", clip, "Clip triggers (share of tokens)", "fraction", window=window)
    if _has(runs, lambda k: k.startswith("m/clip_by_prob/")):
        images["clip_by_prob"] = plot_clip_by_prob(runs, out / "clip_by_prob.png")
    return images


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
    images = _plots(runs, out, window)
    summaries = {name: summarize_run(recs) for name, recs in runs.items()}
    notes = [f"{name}: {p}" for name, p in zip(names, ps)]
    md, html = write_summary(summaries, images, out, title=title, notes=notes, basename="report")
    log(f"report: wrote {md}, {html} and {len(images)} plots")
    return {"summaries": summaries, "images": images, "md": md, "html": html}
