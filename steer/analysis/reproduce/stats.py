"""Per-run metrics and the verdict rule of ``steer reproduce``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from steer.analysis.reproduce.claims import TAIL_FRACTION, TRAJECTORY_BAND


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _sd(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def run_metrics(records: Sequence[dict]) -> dict:
    """The per-run metrics of the verdicts (see the module docstring) from metrics records."""
    train = [r for r in records if _finite(r.get("entropy"))]
    out: dict = {"steps": len(train)}
    if not train:
        return out
    h = [float(r["entropy"]) for r in train]
    tail = max(1, math.ceil(TAIL_FRACTION * len(h)))
    out["entropy_start"] = h[0]
    out["entropy_final"] = _mean(h[-tail:])
    out["entropy_drift"] = abs(out["entropy_final"] - h[0]) / h[0] if h[0] > 0 else float("nan")
    diffs = [b - a for a, b in zip(h, h[1:])]
    mh = _mean(h)
    out["entropy_fluct"] = _sd(diffs) / mh if len(diffs) >= 2 and mh > 0 else float("nan")
    for key, name in (
        ("acc", "train_acc_final"),
        ("m/clipfrac_low", "clipfrac_low"),
        ("m/clipfrac_high", "clipfrac_high"),
        ("m/weight_mean", "weight_mean"),
    ):
        vals = [float(r[key]) for r in train if _finite(r.get(key))]
        if vals:
            out[name] = _mean(vals[-tail:]) if name == "train_acc_final" else _mean(vals)
    if h[0] > 0:
        dev = [abs(x / h[0] - 1.0) for x in h]
        out["entropy_out_frac"] = sum(d > TRAJECTORY_BAND for d in dev) / len(dev)
        out["entropy_out_max"] = max(0.0, max(dev) - TRAJECTORY_BAND)
    times = [float(r["time/step"]) for r in train if _finite(r.get("time/step"))]
    if times:
        out["time_step"] = _mean(times)
    pairs = [
        (float(r["cause/pred_change"]), float(r["cause/real_change"]))
        for r in train
        if _finite(r.get("cause/pred_change")) and _finite(r.get("cause/real_change"))
    ]
    if len(pairs) >= 3:
        out["cause_pred_real_pearson"] = _pearson([a for a, _ in pairs], [b for _, b in pairs])
    wmin = [float(r["m/weight_min"]) for r in train if _finite(r.get("m/weight_min"))]
    if wmin:
        out["weight_min"] = min(wmin)
    for r in reversed(records):
        if _finite(r.get("heldout/acc")):
            out["heldout_acc"] = float(r["heldout/acc"])
            if _finite(r.get("heldout/acc_se")):
                out["heldout_acc_se"] = float(r["heldout/acc_se"])
            for k, v in r.items():
                if (k.startswith("heldout/pass@") or k == "heldout/diversity") and _finite(v):
                    out["heldout_" + k.split("/", 1)[1]] = float(v)
            break
    return out


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    import torch

    from steer.analysis.correlation import pearson

    return pearson(torch.tensor(list(xs), dtype=torch.float64), torch.tensor(list(ys), dtype=torch.float64))


def compare(
    arm_values: dict[int, float], base_values: dict[int, float], direction: int, k: float = 2.0
) -> dict:
    """The paired verdict of one comparison (``{seed: value}`` for each side). ``k``: the standard-error
    multiple (2 for the rule; ``steer reproduce --seeds auto`` passes its per-look thresholds)."""
    seeds = sorted(s for s in arm_values if s in base_values)
    d = [arm_values[s] - base_values[s] for s in seeds if _finite(arm_values[s]) and _finite(base_values[s])]
    out: dict = {"n": len(d), "diffs": d}
    if not d:
        out.update(mean=float("nan"), se=float("nan"), verdict="inconclusive", why="no paired values")
        return out
    m = _mean(d)
    se = _sd(d) / math.sqrt(len(d)) if len(d) >= 2 else float("nan")
    out.update(mean=m, se=se)
    if len(d) < 2:
        out.update(verdict="inconclusive", why="fewer than 2 seeds: no standard error")
        return out
    sign = 1 if m > 0 else (-1 if m < 0 else 0)
    same_sign = all((x > 0) if sign > 0 else (x < 0) for x in d) if sign else False
    big = abs(m) > k * se
    if sign == direction and big and same_sign:
        out.update(
            verdict="reproduced",
            why=f"abs(mean) {abs(m):.4g} > {k:g} se {k * se:.4g}, same sign in every seed",
        )
    elif sign == -direction and big and same_sign:
        out.update(
            verdict="contradicted",
            why=f"opposite sign: abs(mean) {abs(m):.4g} > {k:g} se {k * se:.4g}, same sign in every seed",
        )
    else:
        reasons = []
        if sign == 0:
            reasons.append("zero difference")
        else:
            if not big:
                reasons.append(f"abs(mean) {abs(m):.4g} <= {k:g} se {k * se:.4g}")
            if not same_sign:
                reasons.append("the seeds disagree in sign")
        out.update(verdict="inconclusive", why="; ".join(reasons))
    return out


def claim_verdict(verdicts: Sequence[str]) -> str:
    rep = sum(v == "reproduced" for v in verdicts)
    con = sum(v == "contradicted" for v in verdicts)
    n = len(verdicts)
    if n and rep == n:
        return "reproduced"
    if rep and con:
        return f"mixed ({rep} of {n} reproduced, {con} contradicted)"
    if rep:
        return f"partly reproduced ({rep} of {n})"
    if con:
        return f"not reproduced ({con} of {n} contradicted)"
    return "inconclusive"


def _add_power(claim, comps: list[dict]) -> None:
    """Each comparison's paired sd, detectable difference and seeds needed (steer.analysis.power)."""
    from steer.analysis.power import comparison_power

    for c, spec in zip(comps, claim.comparisons):
        c["power"] = comparison_power(
            c["diffs"], paper_effect=spec.paper_effect, paper_source=spec.paper_source
        )


def summarise(per_seed: dict[int, dict], metrics: Sequence[str]) -> dict:
    """Mean, sd and count over the seeds of each metric with a finite value."""
    row = {}
    for m in metrics:
        vals = [d[m] for d in per_seed.values() if _finite(d.get(m))]
        if vals:
            row[m] = {"mean": _mean(vals), "sd": _sd(vals), "n": len(vals)}
    return row


def judge(claim, runs: dict[str, dict[int, dict]], failed: list, what: str) -> tuple[list[dict], str]:
    """The claim's comparisons on the per-seed metrics ``runs[arm][seed]`` (each with its power)
    and the claim's verdict; ``what`` names the units that failed (runs, probes)."""
    comps = []
    for c in claim.comparisons:
        a = {s: d.get(c.metric, float("nan")) for s, d in runs.get(c.arm, {}).items()}
        b = {s: d.get(c.metric, float("nan")) for s, d in runs.get(c.baseline, {}).items()}
        comps.append(
            {
                "arm": c.arm,
                "baseline": c.baseline,
                "metric": c.metric,
                "direction": c.direction,
                "text": c.text,
                **compare(a, b, c.direction),
            }
        )
    _add_power(claim, comps)
    verdict = claim_verdict([c["verdict"] for c in comps])
    if failed:
        verdict = f"incomplete ({len(failed)} {what} failed); from the finished {what}: {verdict}"
    return comps, verdict
