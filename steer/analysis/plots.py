"""Plots of training runs (matplotlib, Agg backend: no display needed).

Every function takes ``runs``: a mapping from a run label (e.g. the method name) to its list
of metrics records (the lines of ``metrics.jsonl``), and writes one PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Records = Sequence[dict]


def series(records: Records, key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of every record that has a finite numeric ``key``."""
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            xs.append(int(r["step"]))
            ys.append(float(v))
    return xs, ys


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (window 1 = unchanged)."""
    if window <= 1:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


#: readable names of the usual metric keys (panel titles); others through :func:`pretty_key`'s rules
KEY_NAMES = {
    "entropy": "policy entropy (nats/token)",
    "acc": "train accuracy",
    "reward": "mean reward",
    "loss": "loss",
    "grad_norm": "gradient norm",
    "response_length": "response length (tokens)",
    "groups_all_correct": "groups all correct (share)",
    "groups_all_wrong": "groups all wrong (share)",
    "heldout/acc": "held-out accuracy",
    "heldout/entropy": "held-out entropy (nats/token)",
    "heldout/distinct_correct": "distinct correct solutions (held-out)",
    "m/steer_weight_mean": "mean STEER token weight",
    "m/steer_weight_min": "min STEER token weight",
    "m/clipfrac_low": "clipped tokens, low side (share)",
    "m/clipfrac_high": "clipped tokens, high side (share)",
    "m/clipfrac": "clipped tokens (share)",
}


def pretty_key(key: str) -> str:
    """A readable panel title for a metric key: ``heldout/pass@4`` -> ``held-out pass@4``,
    ``m/clipfrac_low`` -> ``clipped tokens, low side (share)``, others with their separators
    turned into spaces."""
    if key in KEY_NAMES:
        return KEY_NAMES[key]
    head, _, rest = key.partition("/")
    if head == "heldout" and rest:
        return "held-out " + rest.replace("_", " ")
    if head in ("m", "ctrl", "cause") and rest:
        return rest.replace("_", " ").replace("/", " ") + ("" if head == "m" else f" ({head})")
    return key.replace("_", " ").replace("/", " ")


def _save(fig, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:  # steps are integers: no ticks such as 1.25
        if ax.get_xlabel() == "step":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lines(
    runs: Mapping[str, Records],
    keys: Sequence[str],
    path: str | Path,
    *,
    title: str,
    ylabel: str,
    window: int = 1,
    marker: str | None = None,
) -> Path:
    """One panel per key, one line per run."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, recs in runs.items():
            xs, ys = series(recs, key)
            if xs:
                ax.plot(xs, smooth(ys, window), label=label, marker=marker)
        ax.set_title(pretty_key(key) if len(keys) > 1 else title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if len(keys) > 1:
        fig.suptitle(title)
    return _save(fig, Path(path))


def plot_passk(runs: Mapping[str, Records], path: str | Path, *, baseline: Records | None = None) -> Path:
    """Held-out pass@k against k at the last evaluation of each run (log2 k axis), plus the
    starting policy (first evaluation) when given."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    curves = dict(runs)
    if baseline is not None:
        curves = {"start (warm-start)": [first_eval(baseline)], **curves}
    for label, recs in curves.items():
        last = last_eval(recs)
        if not last:
            continue
        ks = sorted(int(k.split("@")[1]) for k in last if k.startswith("heldout/pass@"))
        ax.plot(ks, [last[f"heldout/pass@{k}"] for k in ks], marker="o", label=label)
        ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("held-out pass@k")
    ax.set_title("Held-out pass@k (final policy)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, Path(path))


def plot_quadrants(runs: Mapping[str, Records], path: str | Path, *, window: int = 5) -> Path:
    """Share of update tokens per quadrant (sign of A x sign of the entropy-change indicator)."""
    fig, axes = plt.subplots(1, max(1, len(runs)), figsize=(5.2 * max(1, len(runs)), 3.6), squeeze=False)
    for ax, (label, recs) in zip(axes[0], runs.items()):
        for q in ("I", "II", "III", "IV"):
            xs, ys = series(recs, f"m/quadrant/{q}/share")
            if xs:
                ax.plot(xs, smooth(ys, window), label=f"quadrant {q}")
        ax.set_title(f"{label}: token share per quadrant")
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no quadrant metrics logged", ha="center", transform=ax.transAxes)
    return _save(fig, Path(path))


def first_eval(records: Records) -> dict:
    for r in records:
        if "heldout/acc" in r:
            return r
    return {}


def last_eval(records: Records) -> dict:
    for r in reversed(records):
        if "heldout/acc" in r:
            return r
    return {}


def plot_all(runs: Mapping[str, Records], out_dir: str | Path, *, window: int = 5) -> dict[str, Path]:
    """Every standard plot of a comparison; returns ``{name: path}``."""
    out = Path(out_dir)
    base = next(iter(runs.values())) if runs else None

    def lines(keys: list[str], file: str, title: str, ylabel: str, **options) -> Path:
        return plot_lines(runs, keys, out / file, title=title, ylabel=ylabel, **options)

    return {
        "entropy": lines(
            ["entropy"], "entropy.png", "Policy entropy (Eq. 4, rollouts)", "nats/token", window=1
        ),
        "reward_acc": lines(["acc", "heldout/acc"], "accuracy.png", "Accuracy", "accuracy", window=window),
        "passk": plot_passk(runs, out / "passk.png", baseline=base),
        "diversity": lines(
            ["heldout/diversity"],
            "diversity.png",
            "Distinct correct solutions per held-out problem",
            "solutions",
            marker="o",
        ),
        "quadrants": plot_quadrants(runs, out / "quadrants.png", window=window),
        "weights": lines(
            ["m/weight_mean", "m/weight_min"], "steer_weights.png", "STEER token weight", "weight"
        ),
        "length": lines(
            ["response_length"], "response_length.png", "Response length", "tokens", window=window
        ),
    }


def plot_arm_bands(
    groups: Mapping[str, Mapping[int, Records]],
    key: str,
    path: str | Path,
    *,
    title: str,
    ylabel: str | None = None,
) -> Path:
    """One line per arm: the mean of ``key`` over that arm's seeds at each step, with a band from
    the minimum to the maximum over seeds (``groups``: ``{arm: {seed: records}}``)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for label, by_seed in groups.items():
        per_step: dict[int, list[float]] = {}
        for recs in by_seed.values():
            for x, y in zip(*series(recs, key)):
                per_step.setdefault(x, []).append(y)
        if not per_step:
            continue
        xs = sorted(per_step)
        mean = [sum(per_step[x]) / len(per_step[x]) for x in xs]
        (line,) = ax.plot(xs, mean, label=f"{label} (n={len(by_seed)})")
        if len(by_seed) > 1:
            ax.fill_between(
                xs,
                [min(per_step[x]) for x in xs],
                [max(per_step[x]) for x in xs],
                color=line.get_color(),
                alpha=0.15,
            )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or key)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, ncol=2 if len(groups) > 6 else 1)
    else:
        ax.text(0.5, 0.5, f"no '{key}' logged", ha="center", transform=ax.transAxes)
    return _save(fig, Path(path))


def plot_clip_by_prob(runs: Mapping[str, Records], path: str | Path, *, first_steps: int = 10) -> Path:
    """Clip triggers per probability decile of the sampled token (``m/clip_by_prob/p{k}/{low,high}``
    counts), averaged over each run's first ``first_steps`` steps, as in the paper's Fig. 9; one
    panel per run, lower and upper clip side by side."""
    n = max(1, len(runs))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    for ax, (label, recs) in zip(axes[0], runs.items()):
        train = [r for r in recs if "entropy" in r][:first_steps]
        for j, side in enumerate(("low", "high")):
            vals = []
            for k in range(10):
                xs = [r.get(f"m/clip_by_prob/p{k}/{side}") for r in train]
                xs = [float(x) for x in xs if isinstance(x, (int, float)) and x == x]
                vals.append(sum(xs) / len(xs) if xs else 0.0)
            ax.bar([k + 0.4 * j - 0.2 for k in range(10)], vals, width=0.4, label=f"{side} clip")
        ax.set_xticks(range(10), [f"{k / 10:.1f}" for k in range(10)], fontsize=7)
        ax.set_xlabel("probability of the sampled token (decile start)")
        ax.set_ylabel(f"triggers per step (first {len(train)} steps)")
        ax.set_title(f"{label}: clip triggers by probability", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    return _save(fig, Path(path))
