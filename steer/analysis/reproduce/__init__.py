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

from steer.analysis.reproduce.claims import (
    BEYOND_ARMS,
    CLAIMS,
    DEFAULT_BUDGET,
    DEFAULT_SEEDS,
    EXTREME,
    GRPO,
    LAMBDAS,
    QUADRANT_LOWER,
    QUADRANT_RAISE,
    QUICK_BUDGET,
    QUICK_SEEDS,
    RUN_SETTINGS,
    TAIL_FRACTION,
    TRAINER_CLAIMS,
    TRAJECTORY_BAND,
    VERDICT_RULE,
    Arm,
    Claim,
    Comparison,
    build_claim,
)
from steer.analysis.reproduce.estimator import (
    ESTIMATOR_ARMS,
    ESTIMATOR_DEFAULT,
    ESTIMATOR_PAPER_SOURCE,
    ESTIMATOR_QUICK,
    estimator_claim,
    run_estimator,
)
from steer.analysis.reproduce.experiment import analyse, run_claim
from steer.analysis.reproduce.markdown import _claim_markdown, write_reproduction
from steer.analysis.reproduce.runs import RunPlan, _log, default_jobs, execute_plans, plan_runs
from steer.analysis.reproduce.stats import _add_power, claim_verdict, compare, run_metrics

__all__ = [
    "BEYOND_ARMS",
    "CLAIMS",
    "DEFAULT_BUDGET",
    "DEFAULT_SEEDS",
    "ESTIMATOR_ARMS",
    "ESTIMATOR_DEFAULT",
    "ESTIMATOR_PAPER_SOURCE",
    "ESTIMATOR_QUICK",
    "EXTREME",
    "GRPO",
    "LAMBDAS",
    "QUADRANT_LOWER",
    "QUADRANT_RAISE",
    "QUICK_BUDGET",
    "QUICK_SEEDS",
    "RUN_SETTINGS",
    "TAIL_FRACTION",
    "TRAINER_CLAIMS",
    "TRAJECTORY_BAND",
    "VERDICT_RULE",
    "Arm",
    "Claim",
    "Comparison",
    "RunPlan",
    "_add_power",
    "_claim_markdown",
    "_log",
    "analyse",
    "build_claim",
    "claim_verdict",
    "compare",
    "default_jobs",
    "estimator_claim",
    "execute_plans",
    "plan_runs",
    "run_claim",
    "run_estimator",
    "run_metrics",
    "write_reproduction",
]
