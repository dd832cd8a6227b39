"""The claim catalogue of ``steer reproduce``: budgets, arms, comparisons and every claim's
settings, fixed in code before any run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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


def _beyond_comparisons() -> tuple[Comparison, ...]:
    return (
        Comparison(
            "entropy_band", "grpo", "entropy_drift", -1, "entropy_band's entropy drifts less than GRPO's"
        ),
        Comparison(
            "entropy_band",
            "adaptive_entropy",
            "entropy_drift",
            -1,
            "entropy_band's entropy drifts less than the Skywork controller's (adaptive_entropy)",
        ),
        Comparison(
            "entropy_band",
            "grpo",
            "heldout_acc",
            +1,
            "entropy_band ends with higher held-out accuracy than GRPO",
        ),
        Comparison(
            "steer_causal", "steer", "entropy_drift", -1, "steer_causal's entropy drifts less than STEER's"
        ),
        Comparison(
            "steer_directional",
            "steer",
            "entropy_drift",
            -1,
            "steer_directional's entropy drifts less than STEER's",
        ),
        Comparison(
            "entropy_band_x",
            "grpo_x",
            "entropy_drift",
            -1,
            "extreme clipping: entropy_band drifts less than GRPO",
        ),
        Comparison(
            "steer_causal_x",
            "steer_x",
            "entropy_drift",
            -1,
            "extreme clipping: steer_causal drifts less than STEER",
        ),
        Comparison(
            "entropy_band_x",
            "grpo_x",
            "heldout_acc",
            +1,
            "extreme clipping: entropy_band beats GRPO on held-out accuracy",
        ),
    )


def _beyond() -> Claim:
    arms = [Arm(label, m) for label, m in BEYOND_ARMS]
    # the extreme clipping of Fig. 14 (clip-higher is meaningless there: eps_high is already 5)
    arms += [Arm(f"{label}_x", {**m, **EXTREME}) for label, m in BEYOND_ARMS if label != "clip_higher"]
    comps = _beyond_comparisons()
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


def claim_seeds(seeds: Sequence[int] | None, quick: bool) -> tuple[int, ...]:
    """The seeds of a claim's runs: those given, else the budget's default."""
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (QUICK_SEEDS if quick else DEFAULT_SEEDS)))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    return seeds


def build_claim(name: str, *, fractions: Sequence[float] | None = None, config: str | None = None) -> Claim:
    """The claim ``name``; ``config``: run its arms on another trainer config (a shipped name such as
    ``chain_sum`` or a YAML path) instead of the claim's own, the arms, comparisons, budget and
    verdict rule unchanged (does a conclusion hold beyond one task?)."""
    if name not in TRAINER_CLAIMS:
        raise ValueError(f"unknown claim {name!r}; valid: {list(CLAIMS)} or 'all'")
    if name == "quadrants" and fractions is not None:
        for f in fractions:
            if not 0.0 < float(f) <= 1.0:
                raise ValueError(f"--fractions: each fraction must lie in (0, 1], got {f!r}")
        claim = _quadrants(tuple(float(f) for f in fractions))
    else:
        claim = TRAINER_CLAIMS[name]()
    if config is None or config == claim.config:
        return claim
    if not isinstance(config, str) or not config.strip():
        raise ValueError(f"--config: expected a config name or a YAML path, got {config!r}")
    note = (
        f"run on the config {config} instead of the claim's own {claim.config} (arms, comparisons, "
        "budget and verdict rule unchanged); notes about the warm-start of the claim's own config "
        "do not apply"
    )
    return replace(claim, config=config, notes=claim.notes + (note,))
