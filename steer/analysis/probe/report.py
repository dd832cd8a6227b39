"""The probe's outputs: ``probe.json``, ``probe.md`` and ``tokens.npz``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from steer.analysis.probe.settings import ESTIMATOR_NAMES, PER_TOKEN_ESTIMATORS, _log_default


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN; None = undefined (e.g. a constant series)
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e4 or (0 < abs(x) < 1e-3)):
        return f"{x:.2e}"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _setting_markdown(tag: str, r: dict) -> list[str]:
    """One optimiser setting's section of ``probe.md``."""
    u = r["update"]
    lines = [
        f"## {tag}",
        "",
        f"**Verdict:** {r['verdict']}.",
        "",
        f"Update norm {_fmt(u['update_norm'])}, gradient norm {_fmt(u['grad_norm'])}, "
        f"mean |measured dH| {_fmt(r['measured']['abs_mean'])}; preconditioner: {u['preconditioner']}; "
        f"residual |dtheta - P(-grad L)| / |dtheta| = {_fmt(u['residual_vs_preconditioned_gradient'])}.",
        "",
        "| estimator | MSE | Pearson | Spearman | sign agreement |",
        "|---|---|---|---|---|",
    ]
    for k in ESTIMATOR_NAMES:
        a = r["agreement"][k]
        lines.append(
            f"| {k} | {_fmt(a['mse'])} | {_fmt(a['pearson'])} | {_fmt(a['spearman'])} | {_fmt(a['sign_agreement'])} |"
        )
    nzs = r["agreement_nonzero_advantage"]
    lines += [
        "",
        f"Only the {nzs['jvp']['tokens']} tokens with a non-zero advantage (the per-token estimators are 0 on "
        "the others): Spearman "
        + ", ".join(f"{k} {_fmt(nzs[k]['spearman'])}" for k in ESTIMATOR_NAMES)
        + "; sign agreement "
        + ", ".join(f"{k} {_fmt(nzs[k]['sign_agreement'])}" for k in ESTIMATOR_NAMES)
        + ".",
    ]
    c = r["cause_vs_jvp"]
    lines += [
        "",
        f"c_t vs JVP-linearised per-state change: Pearson {_fmt(c['pearson'])}, Spearman "
        f"{_fmt(c['spearman'])}, sign agreement {_fmt(c['sign_agreement'])}.",
        "",
        "Spearman per probability bucket (probability of the sampled token):",
        "",
        "| bucket | tokens | " + " | ".join(ESTIMATOR_NAMES) + " |",
        "|---|---|" + "---|" * len(ESTIMATOR_NAMES),
    ]
    for b, row in r["per_prob_bucket"].items():
        lines.append(
            f"| {b} | {row['jvp']['tokens']} | "
            + " | ".join(_fmt(row[k]["spearman"]) for k in ESTIMATOR_NAMES)
            + " |"
        )
    t = r["totals"]
    lines += [
        "",
        "Total entropy change of the batch (sum over tokens):",
        "",
        "| measured | JVP along the update | sum c_t | " + " | ".join(PER_TOKEN_ESTIMATORS) + " |",
        "|---|---|---|" + "---|" * len(PER_TOKEN_ESTIMATORS),
        f"| {_fmt(t['measured'], 5)} | {_fmt(t['jvp'], 5)} | {_fmt(t['cause'], 5)} | "
        + " | ".join(_fmt(t[k], 5) for k in PER_TOKEN_ESTIMATORS)
        + " |",
        "",
        f"Sum of c_t vs the measured total: relative error {_fmt(t['sum_cause_rel_error'])}.",
        "",
        f"Entropy vs |measured dH| (Fig. 10): Spearman {_fmt(r['fig10_entropy_vs_abs_change']['spearman'])}. "
        f"STEER weight vs |measured dH| (Fig. 15; weights: {r['fig15_weight_vs_abs_change']['weights_from']}): "
        f"Spearman {_fmt(r['fig15_weight_vs_abs_change']['spearman'])}, mean weight "
        f"{_fmt(r['fig15_weight_vs_abs_change']['weight_mean'])}, min "
        f"{_fmt(r['fig15_weight_vs_abs_change'].get('weight_min'))}, share below 0.9 "
        f"{_fmt(r['fig15_weight_vs_abs_change'].get('weight_share_below_0_9'))}.",
        "",
    ]
    return lines


def markdown_report(out: dict) -> str:
    """The probe's tables as Markdown (what ``probe.md`` holds)."""
    m, d = out["model"], out["data"]
    lines = [
        "# steer probe",
        "",
        f"Policy: {m['source']} {m['name_or_path'] or '(testbed warm-start)'}, {m['parameters']:,} parameters "
        f"(hidden {m['hidden_size']}, {m['num_hidden_layers']} layers, vocabulary {m['vocab_size']}), "
        f"{m['dtype']} on {m['device']}"
        + (
            f", weights and AdamW state from checkpoint {out['checkpoint']['path']} (step {out['checkpoint']['step']})"
            if out.get("checkpoint")
            else ""
        )
        + f". Method {out['method']['name']}. "
        f"{d['prompts']} prompts x {d['rollouts_per_prompt']} rollouts = {d['responses']} responses, "
        f"{d['valid_tokens']} tokens ({d['tokens_with_nonzero_advantage']} with a non-zero advantage), "
        f"accuracy {d['accuracy']:.3f}, mean entropy {d['entropy_mean']:.3f} nats/token.",
        "",
        "Paper (Fig. 2, 1.5-7B Qwen): Spearman 0.61-0.72 for Omega, 0.04-0.08 for Cov.",
        "",
    ]
    for tag, r in out["settings"].items():
        lines += _setting_markdown(tag, r)
    return "\n".join(lines)


def write_outputs(
    out: dict, tokens: dict, out_dir: str | Path, *, plots: bool = True, log=_log_default
) -> Path:
    """Write ``probe.json``, ``probe.md``, ``tokens.npz`` (per-token arrays per setting) and, with
    ``plots``, the PNGs of every setting into ``out_dir`` (each file written atomically)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files = {"json": "probe.json", "markdown": "probe.md", "tokens": "tokens.npz"}
    if plots:
        from steer.analysis.probe.plots import plot_setting

        files["plots"] = {}
        for tag, r in out["settings"].items():
            files["plots"][tag] = plot_setting(r, tokens[tag], d, tag)
    out["files"] = files
    _atomic_text(d / "probe.json", json.dumps(_jsonable(out), indent=1, sort_keys=False))
    _atomic_text(d / "probe.md", markdown_report(out))
    arrays = {f"{tag}/{k}": v.numpy() for tag, tok in tokens.items() for k, v in tok.items()}
    tmp = d / "tokens.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, d / "tokens.npz")
    log(f"wrote {d / 'probe.json'}, {d / 'probe.md'}, {d / 'tokens.npz'}" + (" and PNGs" if plots else ""))
    return d


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
