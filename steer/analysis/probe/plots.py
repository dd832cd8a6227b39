"""PNG figures of a probe (paper Fig. 1, a scatter, Fig. 10, Fig. 15) and of a sweep (matplotlib, Agg)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from steer.analysis.probe.settings import ESTIMATOR_NAMES

__all__ = ["plot_setting", "plot_sweep"]

_COLORS = {
    "paper": "tab:blue",
    "reference": "tab:cyan",
    "exact": "tab:green",
    "cov": "tab:gray",
    "jvp": "tab:red",
    "cause": "tab:purple",
}
_LABELS = {
    "paper": "Omega (paper, Eq. 7)",
    "reference": "Omega (released code)",
    "exact": "exact first-order (tabular)",
    "cov": "Cov (Cui et al.)",
    "jvp": "JVP-linearised (per state)",
    "cause": "c_t (own-gradient cause)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path.name


def _centres(edges: list[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]


def _binned_axes(
    ax, b: dict, series: dict[str, list[float]], xlabel: str, ylabel: str, labels=None, colors=None
):
    if not b.get("edges"):
        ax.text(0.5, 0.5, "no tokens", ha="center", transform=ax.transAxes)
        return
    x = _centres(b["edges"])
    width = (b["edges"][1] - b["edges"][0]) * 0.9
    ax2 = ax.twinx()
    ax2.bar(x, b["count"], width=width, color="0.85", zorder=0, label="tokens per bin")
    ax2.set_ylabel("tokens per bin")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    for k, y in series.items():
        ax.plot(
            x,
            [v if v is not None else math.nan for v in y],
            marker="o",
            ms=3,
            label=(labels or {}).get(k, k),
            color=(colors or {}).get(k),
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def plot_setting(res: dict, tokens: dict, out_dir: Path, tag: str) -> dict[str, str]:
    """Four PNGs of one optimiser setting; returns ``{figure: file name}``."""
    plt = _plt()
    out_dir = Path(out_dir)
    files = {}
    title = f"{tag}: one real step"

    # Fig. 1: binned estimate vs measured, with the token-count histogram
    b = res["fig1_binned"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    series = {"measured": b["x_mean"], **b["series"]}
    labels = {"measured": "measured (identity)", **_LABELS}
    colors = {"measured": "black", **_COLORS}
    _binned_axes(
        ax,
        b,
        series,
        "measured entropy change per token (bin)",
        "mean estimate in bin (scaled to measured std)",
        labels,
        colors,
    )
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{title}: estimated vs measured (Fig. 1)")
    files["fig1_binned"] = _save(fig, out_dir / f"{tag}_fig1_binned.png")
    plt.close(fig)

    # scatter of every estimator against the measured change
    meas = tokens["measured"].numpy()
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.5))
    for ax, k in zip(axes.flat, ESTIMATOR_NAMES):
        e = tokens[f"est_{k}"].numpy()
        ax.scatter(meas, e, s=3, alpha=0.35, color=_COLORS[k])
        a = res["agreement"][k]
        rho = a["spearman"]
        ax.set_title(f"{_LABELS[k]}\nSpearman {rho:.3f}" if rho == rho else _LABELS[k], fontsize=8)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("measured dH", fontsize=7)
    fig.suptitle(f"{title}: per-token estimate vs measured entropy change", fontsize=9)
    fig.tight_layout()
    files["scatter"] = _save(fig, out_dir / f"{tag}_scatter.png")
    plt.close(fig)

    # Fig. 10: entropy vs |measured change|; Fig. 15: mean STEER weight vs |measured change|.
    # figure, its bins, series, label, colour, x label, y label, title
    b10 = res["fig10_entropy_vs_abs_change"]
    single = [
        ("fig10_entropy", b10, "abs_measured", "|measured dH|", "tab:red", "token entropy H (bin)",
         "mean |measured dH|", f"entropy vs |entropy change| (Fig. 10), Spearman {b10['spearman']:.3f}"),
        ("fig15_weight", res["fig15_weight_vs_abs_change"], "steer_weight", "STEER weight", "tab:blue",
         "|measured dH| (bin)", "mean STEER weight", "STEER weight vs |entropy change| (Fig. 15)"),
    ]  # fmt: skip
    for name, b, key, label, color, xlabel, ylabel, heading in single:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        _binned_axes(ax, b, {key: b["series"].get(key, [])}, xlabel, ylabel, {key: label}, {key: color})
        ax.set_title(f"{title}: {heading}", fontsize=9)
        files[name] = _save(fig, out_dir / f"{tag}_{name}.png")
        plt.close(fig)
    return files


def plot_sweep(out: dict, path: Path) -> str:
    """Spearman of every estimator against the measured change, per variant and setting."""
    plt = _plt()
    rows = out["rows"]
    settings = sorted({r["setting"] for r in rows})
    if not settings:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no variant gave a result", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        name = _save(fig, Path(path))
        plt.close(fig)
        return name
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.2), squeeze=False)
    for ax, s in zip(axes[0], settings):
        sub = [r for r in rows if r["setting"] == s]
        x = list(range(len(sub)))
        for k in ESTIMATOR_NAMES:
            ys = [r[f"{k}_spearman"] if r[f"{k}_spearman"] is not None else math.nan for r in sub]
            ax.plot(x, ys, marker="o", label=_LABELS[k], color=_COLORS[k])
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{r['variant']}\n{r['parameters'] / 1e3:.0f}k" for r in sub], fontsize=6, rotation=45
        )
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_ylabel("Spearman vs measured dH")
        ax.set_title(s, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    name = _save(fig, path)
    plt.close(fig)
    return name
