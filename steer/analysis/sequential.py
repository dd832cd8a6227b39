"""``steer reproduce CLAIM --seeds auto --budget MINUTES``: add seeds until every comparison is
decided, or the budget or the last look is reached.

The design, fixed here before any run:

- **Looks.** The comparisons are looked at with 3, 4, ..., :data:`SEQ_LAST` (8) seeds: at most
  ``K = 6`` looks. Seeds are 0, 1, 2, ... so every look reuses the runs of the previous ones (the
  run cache of ``steer reproduce``).
- **The rule at a look** is the verdict rule of :func:`steer.analysis.reproduce.compare` with its
  standard-error multiple 2 replaced by the look's threshold :data:`SEQ_THRESHOLDS` (never below 2:
  a look is never laxer than the fixed rule): reproduced when the mean paired difference has the
  predicted sign, exceeds ``k_n`` standard errors and every seed has that sign; contradicted in
  the mirror case.
- **The correction (Bonferroni over the looks).** Each look may give a false verdict (reproduced
  or contradicted when the true effect is zero) with probability at most ``alpha / K`` =
  0.05 / 6, so over all looks the chance of any false verdict is at most :data:`SEQ_ALPHA` = 5%
  whatever the dependence between looks (a union bound). ``k_n`` is the ``1 - alpha/K`` quantile,
  under normal paired differences with zero mean, of ``|t|`` on the paths whose seeds all share a
  sign (0 elsewhere), rounded up; at 8 seeds the every-seed-sign clause alone already has
  probability 2 / 2^8 < alpha / K, so the rule's own 2 stays. The constants were computed with
  2,000,000 float64 normal paths; ``tests/analysis/test_sequential.py`` recomputes them.
  Stopping early (budget) or skipping looks only lowers the false-verdict chance.
- **A comparison is settled** at the first look where it is reproduced or contradicted (its verdict
  then stays), or once its seeds disagree in sign (or one difference is exactly 0): the
  every-seed-sign clause can then never hold again, so no further seed can decide it, and it ends
  inconclusive. The claim stops when every comparison is settled, after the look with
  :data:`SEQ_LAST` seeds, or when the next seed's estimated training time would overrun the budget.

Each comparison is its own sequential test at 5%; as with the fixed rule there is no correction
across the comparisons of a claim.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: The chance of any false verdict (per comparison, over all looks) when the effect is zero.
SEQ_ALPHA = 0.05
SEQ_FIRST = 3
SEQ_LAST = 8
#: The standard-error multiple at each look (seeds -> k); Bonferroni at SEQ_ALPHA / 6 per look.
SEQ_THRESHOLDS = {3: 10.90, 4: 6.21, 5: 4.86, 6: 4.19, 7: 3.61, 8: 2.0}

SEQ_METHOD = (
    f"Bonferroni over at most {len(SEQ_THRESHOLDS)} looks (with {SEQ_FIRST}..{SEQ_LAST} seeds), each at "
    f"{SEQ_ALPHA:g}/{len(SEQ_THRESHOLDS)}: the rule with the standard-error multiple 2 raised to "
    + ", ".join(f"{k:g} at {n}" for n, k in SEQ_THRESHOLDS.items())
    + f" seeds; at most {SEQ_ALPHA:.0%} false verdicts per comparison when the effect is zero"
)


def _settled_by_sign(diffs: Sequence[float]) -> bool:
    """True when the every-seed-sign clause can no longer hold, whatever further seeds give."""
    return not (all(x > 0 for x in diffs) or all(x < 0 for x in diffs))


def look_verdict(diffs: Sequence[float], direction: int) -> dict:
    """The rule at a look with ``len(diffs)`` seeds (inconclusive outside the schedule)."""
    from steer.analysis.reproduce import compare

    d = [float(x) for x in diffs if math.isfinite(x)]
    n = len(d)
    if n not in SEQ_THRESHOLDS:
        return {"verdict": "inconclusive", "why": f"{n} paired seeds: not a look of the design", "k": None}
    k = SEQ_THRESHOLDS[n]
    res = compare(dict(enumerate(d)), dict.fromkeys(range(n), 0.0), direction, k=k)
    return {"verdict": res["verdict"], "why": res["why"], "k": k}


def _look_at(state: list[dict], comps: list[dict], n: int) -> None:
    """One look of the design at ``n`` seeds: decide every open comparison that the rule (or the
    seeds' signs) settles, in place."""
    for s, c in zip(state, comps):
        if s["verdict"] is not None:
            continue
        d = [x for x in c["diffs"] if math.isfinite(x)]
        if len(d) != n:  # a seed without a value (kept by the run cache): no look of the design
            s.update(  # can use it any more
                verdict="inconclusive",
                look=n,
                why=f"{n - len(d)} of {n} seeds without a value: no further look of the design",
            )
            continue
        v = look_verdict(d, c["direction"])
        s.update(diffs=d, k=v["k"], why=v["why"])
        if v["verdict"] != "inconclusive":
            s.update(verdict=v["verdict"], look=n)
        elif len(d) >= 2 and _settled_by_sign(d):
            s.update(
                verdict="inconclusive",
                look=n,
                why="the seeds disagree in sign (or a difference is 0): no further seed can decide it",
            )


def auto_loop(
    look: Callable[[int], dict],
    *,
    budget_s: float,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda m: None,
) -> dict:
    """Run the sequential design. ``look(n)`` brings seeds ``0..n-1`` to the comparisons and returns
    ``{"comparisons": [{"text", "direction", "diffs"}, ...], "seed_cost_s": estimated seconds of one
    more seed}``. Returns ``{"comparisons": [...], "verdict", "stop", "looks", "n", "method"}``."""
    from steer.analysis.reproduce import claim_verdict

    if not budget_s > 0:
        raise ValueError(f"--budget must be a positive number of minutes, got {budget_s / 60:g}")
    t0 = clock()
    state: list[dict] = []
    looks = []
    n = SEQ_FIRST
    while True:
        res = look(n)
        if res.get("failed"):
            # an incomplete look is not a look of the design: stop, and let a rerun (which reuses
            # the finished runs and retries the failed ones) repeat it
            stop = (
                f"{len(res['failed'])} runs failed at {n} seeds: rerun the command (finished runs are reused)"
            )
            n -= 1
            break
        comps = res["comparisons"]
        if not state:
            state = [{"text": c["text"], "verdict": None, "look": None, "why": ""} for c in comps]
        _look_at(state, comps, n)
        looks.append({"n": n, "elapsed_s": clock() - t0, "open": sum(s["verdict"] is None for s in state)})
        log(f"  look at {n} seeds: " + "; ".join(f"{s['text']}: {s['verdict'] or 'open'}" for s in state))
        if all(s["verdict"] is not None for s in state):
            stop = "settled: every comparison decided, or undecidable by further seeds"
            break
        if n >= SEQ_LAST:
            stop = f"the last look ({SEQ_LAST} seeds) reached"
            break
        cost = float(res.get("seed_cost_s", 0.0))
        if clock() - t0 + cost > budget_s:
            stop = (
                f"budget: the next seed (about {cost:.0f} s) would overrun the {budget_s / 60:g} min budget "
                f"({(clock() - t0) / 60:.1f} min spent)"
            )
            break
        n += 1
    for s in state:
        if s["verdict"] is None:
            s.update(verdict="inconclusive", look=n, why=f"{s['why']}; still open when the design stopped")
    verdict = claim_verdict([s["verdict"] for s in state]) if state else "incomplete: no complete look"
    return {
        "comparisons": state,
        "verdict": verdict,
        "stop": stop,
        "looks": looks,
        "n": n,
        "method": SEQ_METHOD,
        "alpha": SEQ_ALPHA,
    }


def auto_markdown(auto: dict, budget_min: float) -> list[str]:
    lines = [
        "## Sequential verdict (`--seeds auto`)",
        "",
        f"**Verdict with the sequential correction: {auto['verdict']}** (stopped: {auto['stop']}; "
        f"{auto['n']} seeds, budget {budget_min:g} min, {auto['wall_s']:.0f} s in all).",
        "",
        f"Correction: {auto['method']}. The fixed rule's verdicts above, on all {auto['n']} seeds, are "
        "not corrected for the looks; this one is.",
        "",
        "| prediction | settled at (seeds) | threshold (se) | verdict | why |",
        "|---|---|---|---|---|",
    ]
    for s in auto["comparisons"]:
        lines.append(
            f"| {s['text']} | {s['look']} | {s.get('k') if s.get('k') is not None else '-'} | "
            f"{s['verdict']} | {s['why']} |"
        )
    return lines + [""]


def _seed_cost(out: Path, name: str, jobs: int) -> float:
    """Estimated seconds to train one more seed of a claim: the mean recorded wall time of its
    finished runs per arm, summed over the arms, shared by ``jobs`` parallel runs."""
    per_arm: dict[str, list[float]] = {}
    for f in (out / name).glob("**/run.json"):
        try:
            w = json.loads(f.read_text()).get("wall_s")
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(w, (int, float)) and math.isfinite(w):
            per_arm.setdefault(str(f.parent.parent.relative_to(out / name)), []).append(float(w))
    if not per_arm:
        return 0.0
    walls = [sum(v) / len(v) for v in per_arm.values()]
    return sum(walls) / max(1, min(jobs, len(walls)))


def run_claim_auto(
    name: str,
    out_dir: str | Path = "runs/reproduce",
    *,
    budget_min: float,
    quick: bool = False,
    jobs: int | None = None,
    overrides: Sequence[str] = (),
    fractions: Sequence[float] | None = None,
    config: str | None = None,
    command: str = "",
    log=None,
) -> dict:
    """``steer reproduce NAME --seeds auto --budget MINUTES`` (see the module docstring): the claim's
    result at the last look, with the sequential verdict under ``auto`` in result.json and a section
    in result.md."""
    from steer.analysis import reproduce as R

    log = log or R._log
    if not (isinstance(budget_min, (int, float)) and math.isfinite(budget_min) and budget_min > 0):
        raise ValueError(f"--budget must be a positive number of minutes, got {budget_min!r}")
    out = Path(out_dir)
    n_jobs = jobs or (1 if quick else R.default_jobs())
    last: dict = {}

    def look(n: int) -> dict:
        res = R.run_claim(
            name,
            out,
            quick=quick,
            seeds=tuple(range(n)),
            jobs=n_jobs,
            overrides=overrides,
            fractions=fractions,
            config=config,
            command=command,
            log=log,
        )
        last.clear()
        last.update(res)
        return {
            "comparisons": res["comparisons"],
            "failed": res.get("failed", []),
            "seed_cost_s": _seed_cost(out, name, n_jobs),
        }

    t0 = time.perf_counter()
    auto = auto_loop(look, budget_s=60.0 * budget_min, log=log)
    auto["budget_min"] = budget_min
    auto["wall_s"] = time.perf_counter() - t0
    fixed = last.get("verdict", "")
    result = {
        **last,
        "auto": auto,
        "verdict_fixed_rule": fixed,
        "wall_s_last_look": last.get("wall_s"),
        "wall_s": auto["wall_s"],
        "verdict": f"{auto['verdict']} (sequential, {auto['n']} seeds)",
    }
    cdir = out / name
    (cdir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = (
        (cdir / "result.md")
        .read_text()
        .replace(
            f"**Verdict: {fixed}**",
            f"**Verdict (sequential, `--seeds auto`): {auto['verdict']}** (the fixed rule on all {auto['n']} "
            f"seeds: {fixed}; not corrected for the looks)",
            1,
        )
    )
    section = "\n".join(auto_markdown(auto, budget_min))
    cut = md.find("## Per arm")
    md = md[:cut] + section + "\n" + md[cut:] if cut >= 0 else md + "\n" + section
    (cdir / "result.md").write_text(md)
    log(f"reproduce {name} --seeds auto: {auto['verdict']} ({auto['stop']}; {auto['wall_s']:.0f} s)")
    return result


def conditional_power(
    diffs: Sequence[float],
    effect: float | None = None,
    sd: float | None = None,
    *,
    draws: int = 20_000,
    seed: int = 0,
) -> dict:
    """The chance that ``--seeds auto`` settles an open comparison as reproduced-in-the-positive-
    direction ("up") or negative ("down") given its first seeds ``diffs``, when the later seeds'
    differences are normal with mean ``effect`` and sd ``sd`` (default: the observed mean and sd).
    Looks from ``len(diffs)`` (at least :data:`SEQ_FIRST`) to :data:`SEQ_LAST`; Monte Carlo
    (``draws`` float64 paths, fixed ``seed``)."""
    import numpy as np

    d = np.array([float(x) for x in diffs if math.isfinite(x)], dtype=np.float64)
    n0 = len(d)
    if n0 < 2:
        raise ValueError("conditional_power needs at least 2 paired seeds")
    effect = float(np.mean(d)) if effect is None else float(effect)
    sd = float(np.std(d, ddof=1)) if sd is None else float(sd)
    extra = max(0, SEQ_LAST - n0)
    rng = np.random.default_rng(seed)
    paths = np.concatenate(
        [np.broadcast_to(d, (draws, n0)), effect + sd * rng.standard_normal((draws, extra))], 1
    )
    up = np.zeros(draws, dtype=bool)
    down = np.zeros(draws, dtype=bool)
    for n in range(max(SEQ_FIRST, n0), SEQ_LAST + 1):
        y = paths[:, :n]
        m = y.mean(1)
        se = y.std(1, ddof=1) / math.sqrt(n)
        big = np.abs(m) > SEQ_THRESHOLDS[n] * se
        open_ = ~(up | down)
        up |= open_ & big & (y > 0).all(1)
        down |= open_ & big & (y < 0).all(1)
    return {"up": float(up.mean()), "down": float(down.mean()), "effect": effect, "sd": sd}
