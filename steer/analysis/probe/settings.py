"""The probe's settings: what it compares, its optimiser settings and its verdict thresholds."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

#: What every probe compares with the measured change: the four core estimators, the JVP
#: linearisation of each state's entropy along the update, and each token's own-gradient cause c_t.
ESTIMATOR_NAMES = ("paper", "reference", "exact", "cov", "jvp", "cause")
#: The per-token estimators of the core (Assumption 1 or batch-centred): what a reweighting uses today.
PER_TOKEN_ESTIMATORS = ("paper", "reference", "exact", "cov")
#: Edges of the probability buckets (probability of the sampled token under theta_0).
PROB_BUCKETS = (0.0, 0.5, 0.9, 0.99, 1.0)
#: SGD at two learning rates and AdamW at two (fresh state: the first AdamW step); on the testbed
#: policy the larger of each is near the edge of the linear regime (docs/probe.md).
DEFAULT_OPTIMIZERS = ("sgd:0.01", "sgd:0.1", "adamw:1e-5", "adamw:1e-4")
#: Verdict thresholds on Spearman's rho (docs/probe.md, "Verdicts").
LINEAR_OK = 0.9
TRACKS = 0.6
WEAK = 0.3
#: The paper's Fig. 2 (SRCC of Omega and of Cov against the measured change, 1.5-7B Qwen models).
PAPER_FIG2 = {"omega_spearman": (0.61, 0.72), "cov_spearman": (0.04, 0.08)}


@dataclass(frozen=True)
class OptimSetting:
    """One optimiser setting of the probe: ``name`` 'sgd' or 'adamw', learning rate ``lr``."""

    name: str
    lr: float

    @property
    def tag(self) -> str:
        return f"{self.name}_lr{self.lr:g}"


def parse_optimizers(specs: Sequence[str | tuple | OptimSetting] | str) -> list[OptimSetting]:
    """``["sgd:1", "adamw:1e-4"]`` (or one comma-separated string, or ``(name, lr)`` pairs) ->
    settings. ValueError names a bad entry (unknown optimiser, lr not a finite number > 0)."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    out: list[OptimSetting] = []
    for s in specs:
        if isinstance(s, OptimSetting):
            name, lr = s.name, s.lr
        elif isinstance(s, str):
            if ":" not in s:
                raise ValueError(f"optimiser setting {s!r} must look like 'sgd:1.0' or 'adamw:1e-4'")
            name, lr_s = s.split(":", 1)
            try:
                lr = float(lr_s)
            except ValueError:
                raise ValueError(f"optimiser setting {s!r}: learning rate {lr_s!r} is not a number") from None
        else:
            name, lr = s
        name = str(name).strip().lower()
        if name not in ("sgd", "adamw"):
            raise ValueError(f"optimiser setting {s!r}: unknown optimiser {name!r} (valid: sgd, adamw)")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"optimiser setting {s!r}: learning rate must be a finite number > 0")
        out.append(OptimSetting(name, float(lr)))
    if not out:
        raise ValueError("at least one optimiser setting is needed (e.g. 'sgd:1,adamw:1e-4')")
    return out


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
