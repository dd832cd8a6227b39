"""``steer probe --sweep``: the probe over testbed policies of several widths, depths and vocabularies.

Where, if anywhere, do the per-token estimators start to track the measured entropy change? Each
variant is warm-started (cached by the testbed) and probed with :func:`steer.analysis.probe.run_probe`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from steer.analysis.probe.report import _atomic_text, _fmt, _jsonable
from steer.analysis.probe.run import run_probe
from steer.analysis.probe.settings import (
    ESTIMATOR_NAMES,
    PER_TOKEN_ESTIMATORS,
    TRACKS,
    _log_default,
    parse_optimizers,
)

__all__ = ["SWEEP_DEPTHS", "SWEEP_VOCABS", "SWEEP_WIDTHS", "run_sweep", "sweep_markdown", "sweep_variants"]

#: The sweep's base model (the testbed's micro preset) and its one-factor-at-a-time axes.
SWEEP_BASE = {"preset": "tiny", "hidden_size": 128, "num_hidden_layers": 2, "vocab_size": None}
SWEEP_WIDTHS = (64, 128, 256)
SWEEP_DEPTHS = (1, 2, 4)
SWEEP_VOCABS = (None, 2048)


def sweep_variants(widths=SWEEP_WIDTHS, depths=SWEEP_DEPTHS, vocabs=SWEEP_VOCABS) -> list[dict]:
    """The sweep's model variants: the base model, then each axis varied alone (duplicates dropped).

    ``vocab_size`` None = the testbed tokenizer's own vocabulary; a larger value adds output rows no
    text ever uses (their probability mass enters every entropy)."""
    base = {
        "hidden_size": SWEEP_BASE["hidden_size"],
        "num_hidden_layers": SWEEP_BASE["num_hidden_layers"],
        "vocab_size": None,
    }
    out, seen = [], set()

    def add(v):
        key = (v["hidden_size"], v["num_hidden_layers"], v["vocab_size"])
        if key not in seen:
            seen.add(key)
            out.append(dict(v))

    add(base)
    for w in widths:
        add({**base, "hidden_size": int(w)})
    for L in depths:
        add({**base, "num_hidden_layers": int(L)})
    for V in vocabs:
        add({**base, "vocab_size": None if V in (None, 0) else int(V)})
    return out


def run_sweep(
    config=None,
    overrides: Sequence[str] = (),
    *,
    widths=SWEEP_WIDTHS,
    depths=SWEEP_DEPTHS,
    vocabs=SWEEP_VOCABS,
    warm_start_steps: int | None = None,
    optimizers: Sequence = ("sgd:0.01", "adamw:1e-4"),
    num_prompts: int | None = 12,
    n: int | None = 8,
    seed: int = 0,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    plots: bool = True,
    task=None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """The probe over testbed policies of several widths, depths and vocabulary sizes.

    Each variant is a testbed model (the ``tiny`` preset, 4 heads, with ``hidden_size``/
    ``num_hidden_layers``/``vocab_size`` overridden; MLP width 3 x hidden) warm-started exactly like
    the config's policy (its ``warm_start.overrides``: steps, problems, ...; ``warm_start_steps``
    replaces the number of steps; cached by the testbed), then probed with :func:`run_probe` (``config``/``overrides`` as
    there; the model keys are set by the sweep; ``task`` replaces the config's task). A variant whose
    probe fails (e.g. every group equal-reward) is recorded with its error and the sweep goes on.
    Returns ``{"variants": [...], "rows": [...]}`` with
    the Spearman/sign agreement of every estimator per variant and setting; writes ``sweep.json``,
    ``sweep.md`` and ``sweep.png`` (plus one probe folder per variant) into ``out_dir``.
    """
    from steer.train.config import Config, load_config

    log = log or _log_default
    cfg = config if isinstance(config, Config) else load_config(config or "testbed", list(overrides))
    ws_base = _warm_start_settings(cfg, warm_start_steps)
    if cache_dir is None:
        cache_dir = cfg.warm_start.cache_dir
    variants = sweep_variants(widths, depths, vocabs)
    rows = []
    errors: list[dict] = []
    t0 = time.perf_counter()
    d = Path(out_dir) if out_dir is not None else None
    for i, var in enumerate(variants):
        name = f"h{var['hidden_size']}_L{var['num_hidden_layers']}_V{var['vocab_size'] or 'tok'}"
        log(f"[{i + 1}/{len(variants)}] {name}: warm-start ({ws_base.get('steps', 'default')} steps, cached)")
        path = _warm_start_variant(var, ws_base, cache_dir, log)
        try:
            res = run_probe(
                config,
                [*overrides, "model.source=testbed", f"model.name_or_path={path}"],
                task=task,
                optimizers=optimizers,
                num_prompts=num_prompts,
                n=n,
                seed=seed,
                out_dir=(d / name) if d is not None else None,
                plots=plots,
                log=log,
            )
        except ValueError as exc:
            log(f"  {name}: probe failed: {exc}")
            errors.append({"variant": name, **var, "error": str(exc)})
            continue
        rows += _variant_rows(name, var, res)
    out = {
        "variants": variants,
        "rows": rows,
        "errors": errors,
        "warm_start": ws_base,
        "optimizers": [s.tag for s in parse_optimizers(optimizers)],
        "time_s": time.perf_counter() - t0,
        "verdict": _sweep_verdict(rows),
    }
    if d is not None:
        _write_sweep(out, d, plots, log)
    return out


def _warm_start_settings(cfg, warm_start_steps: int | None) -> dict:
    """The warm-start of every variant: the config's, with ``warm_start_steps`` steps if given."""
    ws_base = dict(cfg.warm_start.overrides)
    if warm_start_steps is not None:
        if not (isinstance(warm_start_steps, int) and warm_start_steps >= 1):
            raise ValueError(f"warm_start_steps must be an integer >= 1, got {warm_start_steps!r}")
        ws_base["steps"] = warm_start_steps
    ws_base.setdefault("threads", 1)  # part of the cache key; one thread is the fastest on a shared machine
    return ws_base


def _warm_start_variant(var: dict, ws_base: dict, cache_dir, log) -> Path:
    """The variant's warm-started testbed policy (cached by the testbed): its folder."""
    from steer.testbed import warm_start

    mo = {
        "hidden_size": var["hidden_size"],
        "num_hidden_layers": var["num_hidden_layers"],
        "intermediate_size": 3 * var["hidden_size"],
    }
    if var["vocab_size"] is not None:
        mo["vocab_size"] = var["vocab_size"]
    t_ws = time.perf_counter()
    path = warm_start(
        {**ws_base, "preset": SWEEP_BASE["preset"], "model_overrides": mo}, cache_dir, progress=False
    )
    log(f"  warm-start ready in {time.perf_counter() - t_ws:.0f} s: {path}")
    return path


def _variant_rows(name: str, var: dict, res: dict) -> list[dict]:
    """One row per optimiser setting of a variant's probe: every estimator's Spearman and sign
    agreement with the measured change."""
    rows = []
    for tag, r in res["settings"].items():
        row = {
            "variant": name,
            **var,
            "parameters": res["model"]["parameters"],
            "vocab_size_effective": res["model"]["vocab_size"],
            "setting": tag,
            "accuracy": res["data"]["accuracy"],
            "tokens": res["data"]["valid_tokens"],
            "measured_abs_mean": r["measured"]["abs_mean"],
        }
        for k in ESTIMATOR_NAMES:
            row[f"{k}_spearman"] = r["agreement"][k]["spearman"]
            row[f"{k}_sign"] = r["agreement"][k]["sign_agreement"]
        row["cause_vs_jvp_spearman"] = r["cause_vs_jvp"]["spearman"]
        rows.append(row)
    return rows


def _write_sweep(out: dict, d: Path, plots: bool, log) -> None:
    d.mkdir(parents=True, exist_ok=True)
    _atomic_text(d / "sweep.json", json.dumps(_jsonable(out), indent=1))
    _atomic_text(d / "sweep.md", sweep_markdown(out))
    if plots:
        from steer.analysis.probe.plots import plot_sweep

        plot_sweep(out, d / "sweep.png")
    log(f"wrote {d / 'sweep.json'}, {d / 'sweep.md'}")


def _sweep_verdict(rows: list[dict]) -> str:
    if not rows:
        return "no variant ran"
    best = max(
        (
            (r[f"{k}_spearman"], k, r["variant"], r["setting"])
            for r in rows
            for k in PER_TOKEN_ESTIMATORS
            if r[f"{k}_spearman"] is not None and r[f"{k}_spearman"] == r[f"{k}_spearman"]
        ),
        default=None,
    )
    if best is None:
        return "no per-token estimator gave a finite correlation"
    rho, k, var, tag = best
    if rho >= TRACKS:
        return f"per-token estimators start to track the measured change: best {k} Spearman {rho:.2f} ({var}, {tag})"
    return (
        f"no variant reaches Spearman {TRACKS} for any per-token estimator: best {k} {rho:.2f} ({var}, {tag}); "
        "at this scale the per-token estimators do not track the measured change"
    )


def sweep_markdown(out: dict) -> str:
    lines = [
        "# steer probe --sweep",
        "",
        f"**Verdict:** {out['verdict']}.",
        "",
        f"Warm-start per variant: {out['warm_start']}; settings {', '.join(out['optimizers'])}; "
        f"{out['time_s']:.0f} s in total.",
        "",
        "| variant | params | setting | acc | mean abs dH | "
        + " | ".join(f"{k} rho" for k in ESTIMATOR_NAMES)
        + " | c_t vs jvp rho | paper sign |",
        "|---|---|---|---|---|" + "---|" * (len(ESTIMATOR_NAMES) + 2),
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['variant']} | {r['parameters']:,} | {r['setting']} | {_fmt(r['accuracy'])} | {_fmt(r['measured_abs_mean'])} | "
            + " | ".join(_fmt(r[f"{k}_spearman"]) for k in ESTIMATOR_NAMES)
            + f" | {_fmt(r['cause_vs_jvp_spearman'])} | {_fmt(r['paper_sign'])} |"
        )
    for e in out.get("errors", []):
        lines.append(f"\n{e['variant']}: no result ({e['error']})")
    return "\n".join(lines) + "\n"
