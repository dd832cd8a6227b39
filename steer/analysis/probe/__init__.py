"""``steer probe``: the measured entropy change of one real optimiser step against every estimator.

Public API (docs/probe.md): :func:`run_probe` (one probe, a dict of every number, files in
``out_dir``), :func:`run_sweep` (the probe over testbed models of several widths, depths and
vocabulary sizes), :func:`parse_optimizers`. The forward-mode primitives it uses are in
:mod:`steer.train.jvp`.
"""

from steer.analysis.probe.report import markdown_report, write_outputs
from steer.analysis.probe.run import run_probe
from steer.analysis.probe.settings import (
    DEFAULT_OPTIMIZERS,
    ESTIMATOR_NAMES,
    PER_TOKEN_ESTIMATORS,
    PROB_BUCKETS,
    OptimSetting,
    parse_optimizers,
)
from steer.analysis.probe.sweep import run_sweep, sweep_markdown, sweep_variants

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "ESTIMATOR_NAMES",
    "PER_TOKEN_ESTIMATORS",
    "PROB_BUCKETS",
    "OptimSetting",
    "markdown_report",
    "parse_optimizers",
    "run_probe",
    "run_sweep",
    "sweep_markdown",
    "sweep_variants",
    "write_outputs",
]
