"""``steer reproduce CLAIM``: scripted testbed experiments that check the paper's section-3 claims,
each ending in a verdict computed from its numbers.

A claim is a set of *arms* (trainer configs that differ in the method or its parameters), each run
with several seeds over the public trainer (``load_config`` + ``Trainer(cfg).fit()``), and a list
of *comparisons* (arm vs baseline on one per-run metric, with the direction the paper predicts).

The verdict rule is fixed in code before any run (:data:`VERDICT_RULE`, :func:`compare`):

- every seed ``s`` runs every arm with ``trainer.seed = method.seed = s``, so the arms of one seed
  share the starting policy, the prompts of every step and the first rollouts; the comparison is
  *paired*: ``d_s = metric(arm, s) - metric(baseline, s)``;
- ``mean = mean_s d_s`` and ``se = sd_s(d_s) / sqrt(n)`` (sample standard deviation, n seeds);
- **reproduced** when ``mean`` has the predicted sign, ``|mean| > 2 se`` and every ``d_s`` has the
  predicted sign; **contradicted** when the same holds for the opposite sign; **inconclusive**
  otherwise (also with fewer than 2 seeds, or when a metric is missing);
- a claim is *reproduced* when all its comparisons are, *partly reproduced* when some are and none
  is contradicted, *not reproduced* when some are contradicted and none reproduced, *mixed* when
  both occur, and *inconclusive* when none is either.

Each result also states, per comparison, the paired sd, the smallest difference the seeds could
detect and the seeds needed (:mod:`steer.analysis.power`); ``--seeds auto`` adds seeds under a
sequentially corrected version of the rule (:mod:`steer.analysis.sequential`).

Per-run metrics (:func:`run_metrics`) come from ``metrics.jsonl``: ``entropy`` is the policy
entropy of the step's rollouts (Eq. 4); ``entropy_final`` its mean over the last 25% of steps;
``entropy_start`` the first step's value (the rollouts of the starting policy, identical across
the arms of a seed); ``entropy_drift`` ``|entropy_final - entropy_start| / entropy_start``;
``entropy_fluct`` the sample standard deviation of the step-to-step change of the entropy divided by
the run's mean entropy (so a run that merely keeps more entropy does not count as fluctuating
more); ``heldout_acc`` the held-out avg@n accuracy at the end of training, ``heldout_pass@k``
and ``heldout_diversity`` (distinct correct solutions per problem) from the same evaluation;
``entropy_out_frac`` / ``entropy_out_max`` the share of steps whose entropy is more than
:data:`TRAJECTORY_BAND` away from the first step's and the largest excess; ``time_step`` the mean
wall time of a step; ``cause_pred_real_pearson`` (methods that log the cause pass) the Pearson
correlation over steps of the predicted and the realised mini-batch entropy change.

The ``beyond`` claim is not the paper's: it tests this project's own methods (``steer_directional``,
``steer_causal``, ``entropy_band``) by the same rule.

Every run writes ``<out>/<claim>/<arm>/seed<k>/`` (the trainer's ``metrics.jsonl`` and
``config.yaml``, and ``run.json`` once finished). Rerunning a claim reuses every finished run whose
settings are unchanged, resumes an interrupted one from its last checkpoint, and reruns (saying
why) one whose settings changed. A failed run is reported and the others still run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

#: The verdict rule, as written in the reports.
VERDICT_RULE = (
    "paired over seeds (the arms of one seed share the starting policy, prompts and first rollouts): "
    "d_s = metric(arm, seed s) - metric(baseline, seed s); reproduced when the mean of d_s has the "
    "paper's sign, exceeds twice its standard error (sample sd / sqrt(n seeds)) and every d_s has that "
    "sign; contradicted when the same holds for the opposite sign; inconclusive otherwise"
)

#: How much of a run counts as its end for ``entropy_final``.
TAIL_FRACTION = 0.25

# ---------------------------------------------------------------------------------------------
# budgets

#: ``--quick``: a micro policy and 2 steps (seconds per claim; what the test suite runs).
QUICK_BUDGET = (
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "trainer.num_mini_batches=2",
    "rollout.n=4",
    "rollout.max_new_tokens=16",
    "task.train_size=16",
    "task.heldout_size=4",
    "eval.n_samples=4",
    "eval.ks=[1,2,4]",
    "warm_start.overrides.preset=micro",
    "warm_start.overrides.steps=40",
    "warm_start.overrides.train_problems=200",
    "warm_start.overrides.batch_size=16",
)
QUICK_SEEDS = (0, 1)

#: The default budget: the testbed policy of ``steer/configs/testbed.yaml`` (its cached
#: warm-start), 40 steps of 8 prompts x 8 rollouts, 4 mini-batches (about half a minute per run
#: on one core of the development machine).
DEFAULT_BUDGET = (
    "trainer.steps=40",
    "trainer.prompts_per_step=8",
    "trainer.num_mini_batches=4",
    "rollout.n=8",
)
DEFAULT_SEEDS = (0, 1, 2)

#: Settings every claim run gets (no held-out evaluation unless the claim needs it; one torch
#: thread per run; checkpoints only for resuming an interrupted run).
RUN_SETTINGS = (
    "eval.at_start=false",
    "eval.every=0",
    "logging.tensorboard=false",
    "logging.progress=false",
    "trainer.num_threads=1",
    "checkpoint.every=10",
    "checkpoint.keep_last=1",
    "checkpoint.save_best=false",
)


# ---------------------------------------------------------------------------------------------
# claims


@dataclass(frozen=True)
class Arm:
    """One trainer configuration of a claim: ``method`` holds ``method.*`` values (``name`` and
    parameters), ``extra`` other overrides."""

    label: str
    method: dict
    extra: tuple[str, ...] = ()

    def overrides(self) -> list[str]:
        out = [f"method.name={self.method['name']}"]
        out += [f"method.{k}={_fmt_value(v)}" for k, v in self.method.items() if k != "name"]
        return out + list(self.extra)


@dataclass(frozen=True)
class Comparison:
    """``arm`` against ``baseline`` on ``metric``; ``direction`` +1: the paper predicts the arm's
    value is larger, -1: smaller."""

    arm: str
    baseline: str
    metric: str
    direction: int
    text: str
    #: the effect the paper reports in this metric (arm - baseline, in the predicted direction), if any
    paper_effect: float | None = None
    paper_source: str = ""


@dataclass(frozen=True)
class Claim:
    name: str
    figure: str
    statement: str
    config: str
    arms: tuple[Arm, ...]
    comparisons: tuple[Comparison, ...]
    needs_eval: bool = False
    table_metrics: tuple[str, ...] = ("entropy_start", "entropy_final", "entropy_drift", "train_acc_final")
    notes: tuple[str, ...] = ()
    plot_keys: tuple[str, ...] = ("entropy",)
    #: added to the ``--quick`` budget (e.g. more steps for a metric that needs them)
    quick_overrides: tuple[str, ...] = ()
    #: whose statement it is: the paper's, or this project's own hypothesis
    source: str = "Paper"


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


GRPO = {"name": "grpo"}


def _clipping() -> Claim:
    arms = (
        Arm("grpo", GRPO),
        Arm("eps_high_0.4", {"name": "grpo", "eps_high": 0.4}),
        Arm("eps_low_0.4", {"name": "grpo", "eps_low": 0.4}),
    )
    comps = (
        Comparison("eps_high_0.4", "grpo", "entropy_final", +1, "raising eps_high 0.2 -> 0.4 raises entropy"),
        Comparison("eps_low_0.4", "grpo", "entropy_final", -1, "raising eps_low 0.2 -> 0.4 lowers entropy"),
    )
    return Claim(
        "clipping",
        "Fig. 7",
        "raising eps_high raises policy entropy; raising eps_low lowers it",
        "testbed",
        arms,
        comps,
        table_metrics=("entropy_start", "entropy_final", "clipfrac_low", "clipfrac_high", "train_acc_final"),
        plot_keys=("entropy", "m/clipfrac_high", "m/clipfrac_low"),
    )


def _psr_nsr() -> Claim:
    arms = (Arm("grpo", GRPO), Arm("psr", {"name": "psr"}), Arm("nsr", {"name": "nsr"}))
    comps = (
        Comparison("nsr", "psr", "entropy_final", +1, "NSR ends with more entropy than PSR"),
        Comparison("psr", "grpo", "entropy_final", -1, "PSR ends with less entropy than GRPO (collapse)"),
        Comparison("nsr", "grpo", "entropy_final", +1, "NSR ends with more entropy than GRPO"),
    )
    return Claim(
        "psr-nsr",
        "Fig. 8",
        "training only on positive samples collapses entropy; only on negative samples keeps it high",
        "testbed",
        arms,
        comps,
    )


QUADRANT_RAISE = (("I", "mask"), ("II", "upweight"), ("III", "mask"), ("IV", "upweight"))
QUADRANT_LOWER = (("I", "upweight"), ("II", "mask"), ("III", "upweight"), ("IV", "mask"))


def _quadrants(fractions: Sequence[float] = (0.1,)) -> Claim:
    # Fig. 6 / 22: entropy-raising interventions against standard GRPO (eps 0.2 / 0.2);
    # Fig. 23: the opposite interventions against GRPO with clip-higher (eps_high 0.28).
    arms = [Arm("grpo", GRPO), Arm("clip_higher", {"name": "grpo", "eps_high": 0.28})]
    comps = []
    for frac in fractions:
        for q, action in QUADRANT_RAISE:
            label = f"{action}_{q}_{frac:g}"
            arms.append(Arm(label, {"name": "quadrant", "target": q, "action": action, "fraction": frac}))
            comps.append(
                Comparison(
                    label,
                    "grpo",
                    "entropy_final",
                    +1,
                    f"{action} {frac:.0%} of quadrant {q} raises entropy vs GRPO",
                )
            )
        for q, action in QUADRANT_LOWER:
            label = f"{action}_{q}_{frac:g}_ch"
            arms.append(
                Arm(
                    label,
                    {"name": "quadrant", "target": q, "action": action, "fraction": frac, "eps_high": 0.28},
                )
            )
            comps.append(
                Comparison(
                    label,
                    "clip_higher",
                    "entropy_final",
                    -1,
                    f"{action} {frac:.0%} of quadrant {q} lowers entropy vs GRPO w/ clip-higher",
                )
            )
    return Claim(
        "quadrants",
        "Fig. 6, 22, 23",
        "masking quadrant I or III tokens, or doubling quadrant II or IV tokens, raises entropy relative "
        "to GRPO; the opposite interventions lower it relative to GRPO w/ clip-higher",
        "testbed",
        tuple(arms),
        tuple(comps),
        notes=(
            "tokens are selected by probability as in appendix D.2 (pi > 0.8 for quadrants I/IV, "
            "pi < 0.2 for II/III, sign of A), uniformly at random within the quadrant "
            "(method 'quadrant', by=prob)",
        ),
    )


def _entropy_adv() -> Claim:
    arms = (Arm("grpo", GRPO), Arm("entropy_adv", {"name": "entropy_adv"}))
    comps = (
        Comparison(
            "entropy_adv",
            "grpo",
            "entropy_fluct",
            +1,
            "entropy advantage fluctuates more in entropy than GRPO",
        ),
    )
    return Claim(
        "entropy-advantage",
        "Fig. 11",
        "entropy-advantage methods fluctuate more in entropy than GRPO",
        "testbed",
        arms,
        comps,
        table_metrics=("entropy_start", "entropy_final", "entropy_fluct", "train_acc_final"),
        quick_overrides=("trainer.steps=4",),  # entropy_fluct needs at least 3 steps
    )


EXTREME = {"eps_low": 0.99, "eps_high": 5.0}


def _extreme() -> Claim:
    arms = (
        Arm("grpo", {"name": "grpo", **EXTREME}),
        Arm("steer", {"name": "steer", **EXTREME}),
    )
    comps = (
        Comparison("steer", "grpo", "entropy_drift", -1, "STEER's entropy drifts less than GRPO's"),
        Comparison(
            "steer",
            "grpo",
            "heldout_acc",
            +1,
            "STEER ends with higher held-out accuracy (Table 4)",
            paper_effect=0.038,
            paper_source="Table 4 average, STEER 48.7% vs GRPO 44.9% (Qwen2.5-Math-7B, six benchmarks)",
        ),
    )
    return Claim(
        "extreme",
        "Fig. 14, Table 4",
        "with eps_low 0.99 and eps_high 5, STEER keeps entropy within a band where GRPO drifts, "
        "and reaches higher held-out accuracy",
        "testbed",
        arms,
        comps,
        needs_eval=True,
        table_metrics=("entropy_start", "entropy_final", "entropy_drift", "heldout_acc", "weight_mean"),
        notes=(
            "eps_low 0.99 / eps_high 5 set on the testbed config (the warm-start of testbed.yaml, shared "
            "with the other claims); STEER keeps its dual clip c = 10",
        ),
    )


LAMBDAS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _lambda() -> Claim:
    arms = [Arm("grpo", GRPO)]
    arms += [Arm(f"steer_{lam:g}", {"name": "steer", "lambda_min": lam}) for lam in LAMBDAS]
    arms += [
        Arm("steer_linear", {"name": "steer_linear"}),
        Arm("steer_binary", {"name": "steer_binary"}),
    ]
    comps = (
        Comparison(
            "steer_0.7",
            "steer_binary",
            "heldout_acc",
            +1,
            "exponential mapping beats binary (Table 2)",
            paper_effect=0.022,
            paper_source="Table 2 average, exponential 48.8% vs binary 46.6% (Qwen2.5-Math-7B)",
        ),
        Comparison(
            "steer_0.7", "steer_0.5", "heldout_acc", +1, "lambda_min 0.7 beats a too small 0.5 (Fig. 17)"
        ),
        Comparison(
            "steer_0.9",
            "steer_0.7",
            "entropy_drift",
            +1,
            "lambda_min 0.9 controls entropy less than 0.7 (Fig. 17)",
        ),
    )
    return Claim(
        "lambda",
        "Fig. 17, Table 2",
        "held-out accuracy is good for lambda_min in [0.6, 0.8], worse for too small (0.5) and entropy less "
        "controlled for too large lambda_min; exponential >= linear > binary mapping",
        "testbed",
        tuple(arms),
        comps,
        needs_eval=True,
        table_metrics=("entropy_final", "entropy_drift", "heldout_acc", "weight_mean", "weight_min"),
    )


#: The entropy band of the ``beyond`` claim's trajectory metrics: a step is outside it when its
#: rollout entropy is more than this fraction away from the run's first step (fixed before the runs).
TRAJECTORY_BAND = 0.2

BEYOND_ARMS = (
    ("grpo", {"name": "grpo"}),
    ("steer", {"name": "steer"}),
    ("steer_directional", {"name": "steer_directional"}),
    ("steer_causal", {"name": "steer_causal"}),
    ("entropy_band", {"name": "entropy_band"}),
    ("clip_higher", {"name": "clip_higher"}),
    ("entropy_bonus", {"name": "entropy_bonus"}),
    ("adaptive_entropy", {"name": "adaptive_entropy"}),
)


def _beyond() -> Claim:
    arms = [Arm(label, m) for label, m in BEYOND_ARMS]
    # the extreme clipping of Fig. 14 (clip-higher is meaningless there: eps_high is already 5)
    arms += [Arm(f"{label}_x", {**m, **EXTREME}) for label, m in BEYOND_ARMS if label != "clip_higher"]
    comps = (
        Comparison("entropy_band", "grpo", "entropy_drift", -1, "entropy_band's entropy drifts less than GRPO's"),
        Comparison(
            "entropy_band",
            "adaptive_entropy",
            "entropy_drift",
            -1,
            "entropy_band's entropy drifts less than the Skywork controller's (adaptive_entropy)",
        ),
        Comparison("entropy_band", "grpo", "heldout_acc", +1, "entropy_band ends with higher held-out accuracy than GRPO"),
        Comparison("steer_causal", "steer", "entropy_drift", -1, "steer_causal's entropy drifts less than STEER's"),
        Comparison(
            "steer_directional", "steer", "entropy_drift", -1, "steer_directional's entropy drifts less than STEER's"
        ),
        Comparison(
            "entropy_band_x", "grpo_x", "entropy_drift", -1, "extreme clipping: entropy_band drifts less than GRPO"
        ),
        Comparison(
            "steer_causal_x", "steer_x", "entropy_drift", -1, "extreme clipping: steer_causal drifts less than STEER"
        ),
        Comparison(
            "entropy_band_x", "grpo_x", "heldout_acc", +1, "extreme clipping: entropy_band beats GRPO on held-out accuracy"
        ),
    )
    return Claim(
        "beyond",
        "project's own methods",
        "weights on each token's cause of the batch's entropy change (steer_causal) and the closed-loop "
        "entropy_band keep the entropy closer to its start than STEER, GRPO and the Skywork adaptive "
        "controller, at the demo and at the extreme clipping, without losing held-out accuracy",
        "testbed",
        tuple(arms),
        comps,
        needs_eval=True,
        table_metrics=(
            "entropy_start",
            "entropy_final",
            "entropy_drift",
            "entropy_out_frac",
            "entropy_out_max",
            "heldout_acc",
            "heldout_pass@16",
            "heldout_diversity",
            "weight_mean",
            "time_step",
            "cause_pred_real_pearson",
        ),
        notes=(
            f"entropy_out_frac / entropy_out_max: share of steps whose rollout entropy is more than "
            f"{TRAJECTORY_BAND:.0%} away from the first step's, and the largest excess beyond that band",
            "cause_pred_real_pearson: Pearson correlation over steps of the predicted and the realised "
            "change of the mini-batch entropy (steer_causal and entropy_band log both every optimiser step)",
            "the _x arms use eps_low 0.99 / eps_high 5 (Fig. 14's setting); entropy_band's band b = 0.001 per "
            "optimiser step and steer_causal's lambda_min 0.7 are the defaults written before any run",
        ),
        source="This project's hypothesis (its own methods, not from the paper)",
    )


#: Claims run over the trainer (``estimator`` runs the probe instead; see :func:`run_estimator`).
TRAINER_CLAIMS: dict[str, Callable[..., Claim]] = {
    "clipping": _clipping,
    "psr-nsr": _psr_nsr,
    "quadrants": _quadrants,
    "entropy-advantage": _entropy_adv,
    "extreme": _extreme,
    "lambda": _lambda,
    "beyond": _beyond,
}
CLAIMS = ("estimator", *TRAINER_CLAIMS)


def build_claim(name: str, *, fractions: Sequence[float] | None = None) -> Claim:
    if name not in TRAINER_CLAIMS:
        raise ValueError(f"unknown claim {name!r}; valid: {list(CLAIMS)} or 'all'")
    if name == "quadrants" and fractions is not None:
        for f in fractions:
            if not 0.0 < float(f) <= 1.0:
                raise ValueError(f"--fractions: each fraction must lie in (0, 1], got {f!r}")
        return _quadrants(tuple(float(f) for f in fractions))
    return TRAINER_CLAIMS[name]()


# ---------------------------------------------------------------------------------------------
# per-run metrics and the verdict


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


# ---------------------------------------------------------------------------------------------
# running


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _spec_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunPlan:
    claim: str
    arm: str
    seed: int
    run_dir: Path
    overrides: list[str]
    config: str
    key: str
    action: str = "run"  # run | resume | reuse
    why: str = ""
    cfg: object = None
    result: dict = field(default_factory=dict)


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    if not path.exists():
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line of a killed run
    return out


def plan_runs(
    claim: Claim,
    out_dir: Path,
    *,
    quick: bool,
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> list[RunPlan]:
    """Every (arm, seed) run of ``claim`` with its validated config and what to do with it.
    Raises ``ConfigError`` / ``ValueError`` naming the bad key before any work. ``progress``: the
    trainer's per-step progress bar (not part of a run's settings)."""
    from steer.train.config import load_config

    budget = list(QUICK_BUDGET) + list(claim.quick_overrides) if quick else list(DEFAULT_BUDGET)
    evals = ["eval.at_end=true"] if claim.needs_eval else ["eval.at_end=false"]
    plans = []
    for arm in claim.arms:
        for seed in seeds:
            run_dir = out_dir / claim.name / arm.label / f"seed{seed}"
            ov = (
                budget
                + list(RUN_SETTINGS)
                + evals
                + arm.overrides()
                + [f"trainer.seed={seed}", f"method.seed={seed}"]
                + list(overrides)
                + [f"logging.out_dir={run_dir}"]
            )
            ui = ["logging.progress=true"] if progress else []
            cfg = load_config(claim.config, ov + ui)
            spec = {
                "config": claim.config,
                "overrides": [o for o in ov if not o.startswith("logging.out_dir=")],
            }
            p = RunPlan(claim.name, arm.label, int(seed), run_dir, ov, claim.config, _spec_key(spec), cfg=cfg)
            marker = run_dir / "run.json"
            if marker.exists():
                try:
                    info = json.loads(marker.read_text())
                except (OSError, json.JSONDecodeError):
                    info = {}
                if info.get("key") == p.key and info.get("finished"):
                    p.action, p.why = "reuse", "finished earlier with the same settings"
                else:
                    p.action, p.why = "run", "settings changed since the earlier run: rerun from scratch"
            elif (run_dir / "metrics.jsonl").exists():
                old = (run_dir / "spec.json").exists() and json.loads(
                    (run_dir / "spec.json").read_text()
                ).get("key")
                if old == p.key and (run_dir / "checkpoints").exists():
                    p.action, p.why = "resume", "interrupted earlier: resume from its last checkpoint"
                else:
                    p.action, p.why = (
                        "run",
                        "an unfinished earlier run with other settings or no checkpoint: rerun",
                    )
            plans.append(p)
    return plans


def _execute(plan: RunPlan) -> dict:
    """Train one run (in this process or a worker); returns ``{"wall_s", "error"}``."""
    from steer.train.trainer import Trainer

    t0 = time.perf_counter()
    run_dir = plan.run_dir
    try:
        if plan.action == "run" and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text(
            json.dumps({"key": plan.key, "overrides": plan.overrides}, indent=1)
        )
        Trainer(plan.cfg, log=lambda m: None).fit(resume=plan.action == "resume")
        wall = time.perf_counter() - t0
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "key": plan.key,
                    "finished": True,
                    "wall_s": wall,
                    "overrides": plan.overrides,
                    **_provenance(),
                },
                indent=1,
            )
        )
        # the checkpoints only serve to resume an interrupted run; the metrics are the record
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return {"wall_s": wall, "error": None}
    except Exception as exc:  # reported per run; the other runs go on
        return {
            "wall_s": time.perf_counter() - t0,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }


def _prepare_policy(cfg, log) -> None:
    """Build (or find in the cache) the claim's warm-started policy once, before the runs."""
    from steer.train.trainer import load_model_and_tokenizer

    t0 = time.perf_counter()
    log("  policy: building or loading the warm-started testbed policy ...")
    load_model_and_tokenizer(cfg, log=lambda m: None)
    log(f"  policy ready ({time.perf_counter() - t0:.1f} s)")


def execute_plans(plans: list[RunPlan], *, jobs: int, log=_log) -> None:
    todo = [p for p in plans if p.action != "reuse"]
    for p in plans:
        if p.action == "reuse":
            p.result = {"wall_s": 0.0, "error": None, "reused": True}
    if not todo:
        log(f"  all {len(plans)} runs finished earlier with the same settings: reusing them")
        return
    for p in todo:
        if p.action != "run" or p.why:
            log(f"  {p.arm} seed {p.seed}: {p.why}")
    _prepare_policy(todo[0].cfg, log)
    n, done, t0 = len(todo), 0, time.perf_counter()

    def report(p: RunPlan) -> None:
        nonlocal done
        done += 1
        status = (
            "FAILED: " + p.result["error"] if p.result.get("error") else f"done in {p.result['wall_s']:.1f} s"
        )
        eta = (time.perf_counter() - t0) / done * (n - done)
        log(f"  [{done}/{n}] {p.arm} seed {p.seed}: {status} (about {eta:.0f} s left)")

    log(f"  training {n} runs ({len(plans) - n} reused), {jobs} at a time ...")
    if jobs <= 1:
        for p in todo:
            p.result = _execute(p)
            report(p)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futs = {pool.submit(_execute, p): p for p in todo}
            for fut in as_completed(futs):
                p = futs[fut]
                try:
                    p.result = fut.result()
                except Exception as exc:  # a worker that died
                    p.result = {"wall_s": 0.0, "error": f"{type(exc).__name__}: {exc}"}
                report(p)


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def analyse(claim: Claim, plans: list[RunPlan]) -> dict:
    """Per-run metrics, per-arm spread, comparisons and the claim's verdict."""
    runs: dict[str, dict[int, dict]] = {}
    records: dict[str, dict[int, list[dict]]] = {}
    failed = []
    for p in plans:
        if p.result.get("error"):
            failed.append({"arm": p.arm, "seed": p.seed, "error": p.result["error"]})
            continue
        recs = _read_jsonl(p.run_dir / "metrics.jsonl")
        records.setdefault(p.arm, {})[p.seed] = recs
        runs.setdefault(p.arm, {})[p.seed] = run_metrics(recs)
    arms = {}
    for arm in claim.arms:
        per_seed = runs.get(arm.label, {})
        row = {}
        for m in sorted({k for d in per_seed.values() for k in d}):
            vals = [d[m] for d in per_seed.values() if _finite(d.get(m))]
            if vals:
                row[m] = {"mean": _mean(vals), "sd": _sd(vals), "n": len(vals)}
        arms[arm.label] = {"method": arm.method, "per_seed": per_seed, "summary": row}
    comps = []
    for c in claim.comparisons:
        a = {s: d.get(c.metric, float("nan")) for s, d in runs.get(c.arm, {}).items()}
        b = {s: d.get(c.metric, float("nan")) for s, d in runs.get(c.baseline, {}).items()}
        res = compare(a, b, c.direction)
        comps.append(
            {
                "arm": c.arm,
                "baseline": c.baseline,
                "metric": c.metric,
                "direction": c.direction,
                "text": c.text,
                **res,
            }
        )
    _add_power(claim, comps)
    verdict = claim_verdict([c["verdict"] for c in comps])
    if failed:
        verdict = f"incomplete ({len(failed)} runs failed); from the finished runs: {verdict}"
    return {"arms": arms, "comparisons": comps, "verdict": verdict, "failed": failed, "records": records}


# ---------------------------------------------------------------------------------------------
# writing


def _num(v, digits: int = 4) -> str:
    if not _finite(v):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def _add_power(claim: Claim, comps: list[dict]) -> None:
    """Each comparison's paired sd, detectable difference and seeds needed (steer.analysis.power)."""
    from steer.analysis.power import comparison_power

    for c, spec in zip(comps, claim.comparisons):
        c["power"] = comparison_power(
            c["diffs"], paper_effect=spec.paper_effect, paper_source=spec.paper_source
        )


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


def _machine() -> str:
    import platform

    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"


def run_claim(
    name: str,
    out_dir: str | Path = "runs/reproduce",
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    jobs: int | None = None,
    overrides: Sequence[str] = (),
    fractions: Sequence[float] | None = None,
    command: str = "",
    log=_log,
) -> dict:
    """Run (or reuse) every run of one claim, then write ``<out>/<claim>/result.json``,
    ``result.md`` and plots. Returns the result (without the raw records)."""
    if name == "estimator":
        return run_estimator(out_dir, quick=quick, seeds=seeds, overrides=overrides, command=command, log=log)
    claim = build_claim(name, fractions=fractions)
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (QUICK_SEEDS if quick else DEFAULT_SEEDS)))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    out = Path(out_dir)
    t0 = time.perf_counter()
    log(f"reproduce {name} ({claim.figure}): {len(claim.arms)} arms x {len(seeds)} seeds")
    n_jobs = jobs if jobs else (1 if quick else default_jobs())
    # a per-step bar of each run when they train one at a time on a terminal
    bar = n_jobs == 1 and log is _log and sys.stderr.isatty()
    plans = plan_runs(claim, out, quick=quick, seeds=seeds, overrides=overrides, progress=bar)
    execute_plans(plans, jobs=n_jobs, log=log)
    res = analyse(claim, plans)
    records = res.pop("records")
    from steer.analysis.plots import plot_arm_bands

    plots = []
    cdir = out / name
    for key in claim.plot_keys:
        fname = key.replace("/", "_") + ".png"
        plots.append(
            plot_arm_bands(
                records, key, cdir / fname, title=f"{name}: {key} (mean over seeds, band = min..max)"
            )
        )
    meta = {
        "claim": name,
        "figure": claim.figure,
        "statement": claim.statement,
        "quick": quick,
        "seeds": list(seeds),
        "budget": list(QUICK_BUDGET) + list(claim.quick_overrides) if quick else list(DEFAULT_BUDGET),
        "overrides": list(overrides),
        "command": command or f"steer reproduce {name}" + (" --quick" if quick else ""),
        "wall_s": time.perf_counter() - t0,
        "n_run": sum(p.action != "reuse" for p in plans),
        "n_reused": sum(p.action == "reuse" for p in plans),
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "rule": VERDICT_RULE,
        "plots": [str(p) for p in plots],
        **_provenance(),
    }
    result = {**meta, **res}
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (cdir / "result.md").write_text(_claim_markdown(claim, res, meta))
    log(f"reproduce {name}: {res['verdict']}")
    for c in res["comparisons"]:
        log(f"  - {c['text']}: {c['metric']} diff {_num(c['mean'])} (se {_num(c['se'])}): {c['verdict']}")
    log(f"  wrote {cdir / 'result.md'}")
    return result


# ---------------------------------------------------------------------------------------------
# the estimator claim (the probe)


#: Estimators compared with the measured per-token entropy change (``steer.analysis.probe``):
#: the paper's Omega (Eq. 7), the released code's form, the exact first-order value, Cui et al.'s
#: covariance proxy, the JVP-linearised change along the real update and each token's own-gradient
#: cause c_t.
ESTIMATOR_ARMS = ("paper", "reference", "exact", "cov", "jvp", "cause")

#: The probe sweep per budget: model variants (widths, depths, vocabularies around the micro
#: testbed model), their warm-start, the optimiser steps, prompts x rollouts.
ESTIMATOR_QUICK = {
    "widths": (),
    "depths": (),
    "vocabs": (),
    # the base variant of the default sweep, warm-started like the default (the same cache entry):
    # with 100 warm-start steps every group was equal-reward (all wrong) and no probe could run
    "warm_start_steps": None,
    "optimizers": ("sgd:0.01",),
    "num_prompts": 8,
    "n": 8,
}
#: The probe's own default sweep (``steer probe --sweep``); ``warm_start_steps`` None: warm-started
#: like the testbed config's policy.
ESTIMATOR_DEFAULT = {
    "widths": (64, 128, 256),
    "depths": (1, 2, 4),
    "vocabs": (None, 2048),
    "warm_start_steps": None,
    "optimizers": ("sgd:0.01", "adamw:1e-4"),
    "num_prompts": 12,
    "n": 8,
}


#: Fig. 2's SRCC of Omega minus Cov's: 0.61, 0.64 and 0.55 on the three models; the smallest.
ESTIMATOR_PAPER_SOURCE = "Fig. 2, SRCC Omega - Cov, smallest of 3 models (0.61 - 0.06 on Qwen-Math-7B)"


def estimator_claim() -> Claim:
    arms = tuple(Arm(e, {"name": e}) for e in ESTIMATOR_ARMS)
    comps = (
        Comparison(
            "paper",
            "cov",
            "spearman",
            +1,
            "Omega (Eq. 7) ranks the measured change better than Cov (Fig. 2)",
            paper_effect=0.55,
            paper_source=ESTIMATOR_PAPER_SOURCE,
        ),
        Comparison(
            "reference",
            "cov",
            "spearman",
            +1,
            "the released code's Omega ranks it better than Cov",
            paper_effect=0.55,
            paper_source=ESTIMATOR_PAPER_SOURCE,
        ),
    )
    return Claim(
        "estimator",
        "Fig. 2 (and Fig. 1, D.1)",
        "Omega tracks the measured token entropy change far better than Cov (SRCC 0.61-0.72 vs 0.04-0.08)",
        "testbed",
        arms,
        comps,
        table_metrics=("spearman", "sign_agreement", "probes"),
        notes=(
            "per seed: one probe sweep (steer.analysis.probe.run_sweep: model variants x optimiser steps, "
            "each one real step from the same parameters); an estimator's metric is its Spearman "
            "correlation with the measured per-token change, averaged over the sweep's variants and "
            "optimiser settings; seeds draw other prompts and rollouts",
            "jvp (the linearised change along the real update) and cause (c_t) are not estimators a "
            "reweighting can use before the step; they show how much of the change is first-order",
        ),
    )


def run_estimator(
    out_dir="runs/reproduce",
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    command: str = "",
    task=None,
    budget: dict | None = None,
    log=_log,
) -> dict:
    """The ``estimator`` claim over the probe's size sweep (one sweep per seed; a finished sweep
    with the same settings is reused). ``task`` replaces the countdown task of the probes and
    ``budget`` updates the sweep settings (:data:`ESTIMATOR_DEFAULT` keys; tests use both)."""
    from steer.analysis.probe import run_sweep
    from steer.train.config import load_config

    claim = estimator_claim()
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (QUICK_SEEDS if quick else DEFAULT_SEEDS)))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    budget = {**(ESTIMATOR_QUICK if quick else ESTIMATOR_DEFAULT), **(budget or {})}
    unknown = set(budget) - set(ESTIMATOR_DEFAULT)
    if unknown:
        raise ValueError(
            f"unknown estimator budget keys {sorted(unknown)}; valid: {sorted(ESTIMATOR_DEFAULT)}"
        )
    base_ov = ["trainer.num_threads=1", "logging.progress=false", *overrides]
    load_config("testbed", base_ov)  # a bad override fails here, before any work
    cache = next((o.split("=", 1)[1] for o in overrides if o.startswith("warm_start.cache_dir=")), None)
    cdir = Path(out_dir) / "estimator"
    t0 = time.perf_counter()
    log(f"reproduce estimator ({claim.figure}): probe sweep x {len(seeds)} seeds")
    per_seed: dict[int, dict] = {}
    failed, n_run, n_reused = [], 0, 0
    for i, seed in enumerate(seeds):
        sdir = cdir / f"seed{seed}"
        key = _spec_key(
            {"budget": budget, "overrides": base_ov, "seed": seed, "task": getattr(task, "name", None)}
        )
        marker = sdir / "run.json"
        sweep = None
        if marker.exists() and (sdir / "sweep.json").exists():
            info = json.loads(marker.read_text())
            if info.get("key") == key and info.get("finished"):
                sweep = json.loads((sdir / "sweep.json").read_text())
                n_reused += 1
                log(f"  [{i + 1}/{len(seeds)}] seed {seed}: finished earlier with the same settings: reused")
            else:
                log(f"  seed {seed}: settings changed since the earlier run: rerun")
        if sweep is None:
            ts = time.perf_counter()
            log(f"  [{i + 1}/{len(seeds)}] seed {seed}: probe sweep ...")
            try:
                if sdir.exists():
                    shutil.rmtree(sdir)
                sweep = run_sweep(
                    "testbed",
                    base_ov,
                    widths=budget["widths"],
                    depths=budget["depths"],
                    vocabs=budget["vocabs"],
                    warm_start_steps=budget["warm_start_steps"],
                    optimizers=budget["optimizers"],
                    num_prompts=budget["num_prompts"],
                    n=budget["n"],
                    seed=seed,
                    out_dir=sdir,
                    cache_dir=cache,
                    plots=False,
                    task=task,
                    log=lambda m: None,
                )
                sweep = json.loads((sdir / "sweep.json").read_text())
                marker.write_text(
                    json.dumps(
                        {"key": key, "finished": True, "wall_s": time.perf_counter() - ts, **_provenance()}
                    )
                )
                n_run += 1
                log(f"  seed {seed}: done in {time.perf_counter() - ts:.1f} s ({len(sweep['rows'])} probes)")
            except Exception as exc:
                failed.append({"arm": "sweep", "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
                log(f"  seed {seed}: FAILED: {type(exc).__name__}: {exc}")
                continue
        for err in sweep.get("errors", []):
            failed.append({"arm": err.get("variant", "?"), "seed": seed, "error": err.get("error", "")})
        per_seed[seed] = sweep
    arms: dict = {}
    for e in ESTIMATOR_ARMS:
        ps = {}
        for seed, sw in per_seed.items():
            sp = [r.get(f"{e}_spearman") for r in sw["rows"]]
            sg = [r.get(f"{e}_sign") for r in sw["rows"]]
            sp = [x for x in sp if _finite(x)]
            sg = [x for x in sg if _finite(x)]
            ps[seed] = {"spearman": _mean(sp), "sign_agreement": _mean(sg), "probes": float(len(sp))}
        summary = {}
        for m in claim.table_metrics:
            vals = [d[m] for d in ps.values() if _finite(d.get(m))]
            if vals:
                summary[m] = {"mean": _mean(vals), "sd": _sd(vals), "n": len(vals)}
        arms[e] = {"method": {"name": e}, "per_seed": ps, "summary": summary}
    comps = []
    for c in claim.comparisons:
        a = {s: d["spearman"] for s, d in arms[c.arm]["per_seed"].items()}
        b = {s: d["spearman"] for s, d in arms[c.baseline]["per_seed"].items()}
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
        verdict = f"incomplete ({len(failed)} probes failed); from the finished probes: {verdict}"
    res = {"arms": arms, "comparisons": comps, "verdict": verdict, "failed": failed}
    meta = {
        "claim": "estimator",
        "figure": claim.figure,
        "statement": claim.statement,
        "quick": quick,
        "seeds": list(seeds),
        "budget": [f"{k}={v}" for k, v in budget.items()],
        "overrides": list(overrides),
        "command": command or "steer reproduce estimator" + (" --quick" if quick else ""),
        "wall_s": time.perf_counter() - t0,
        "n_run": n_run,
        "n_reused": n_reused,
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "rule": VERDICT_RULE,
        "plots": [],
        **_provenance(),
    }
    result = {**meta, **res}
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (cdir / "result.md").write_text(_claim_markdown(claim, res, meta))
    log(f"reproduce estimator: {verdict}")
    for c in comps:
        log(f"  - {c['text']}: spearman diff {_num(c['mean'])} (se {_num(c['se'])}): {c['verdict']}")
    return result


def _provenance() -> dict:
    """The code a result came from (the git commit of the checkout, when there is one)."""
    import subprocess

    from steer import __version__

    out = {"steer_version": __version__}
    try:
        root = Path(__file__).resolve().parents[2]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode == 0:
            out["git_commit"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ---------------------------------------------------------------------------------------------
# REPRODUCTION.md


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
