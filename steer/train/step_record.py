"""The step's metrics record (the last stage of a step): what the mini-batch updates of a step
returned, tallied (:class:`UpdateTally`), and the record built from it and the step's data
(:func:`step_record`): rewards, accuracy, the rollout entropy (Eq. 4, token mean), lengths, the
shares of equal-reward groups, the method's metrics each reduced by its declared reduction
(``steer.core.metrics``, logged as ``m/...``), its controller's keys (``ctrl/...``), the cause
pass's means and the stage timings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from steer.core.metrics import MetricReducer

__all__ = ["UpdateTally", "step_record"]


@dataclass
class UpdateTally:
    """What the mini-batch updates of one step returned, gathered in order."""

    reducer: MetricReducer = field(default_factory=MetricReducer)  # each key by its declared reduction
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    cause_log: list[dict] = field(default_factory=list)
    steps_taken: int = 0
    skipped: int = 0

    def add(self, upd: dict) -> None:
        """One optimiser step taken (``upd``: ``Trainer.update_minibatch``'s result, no problem)."""
        if upd["cause"] is not None:
            self.cause_log.append(upd["cause"])
        self.steps_taken += 1
        self.grad_norms.append(upd["grad_norm"])
        self.losses.append(upd["loss"])
        for m, tok in upd["metrics"]:
            self.reducer.add(m, tok)


def step_record(
    data, tally: UpdateTally, *, n: int, lr: float, nonfinite_total: int, method, t_update: float
) -> dict:
    """The metrics record of step ``data.step`` (``n``: rollouts per prompt; ``nonfinite_total``:
    the run's skipped optimiser steps so far), without held-out keys and ``time/step``."""
    mask = data.rollouts.response_mask
    valid = mask.sum()
    lengths = mask.sum(1).float()
    rec: dict = {"step": data.step + 1}
    rec["reward"] = float(data.rewards.mean())
    rec["acc"] = float(data.correct.float().mean())
    rec["reward/verify_error_frac"] = data.verify_error_frac
    rec["entropy"] = float((data.old_entropy * mask).sum() / valid.clamp(min=1))  # Eq. 4, token mean
    rec["response_length"] = float(lengths.mean())
    rec["response_length_max"] = float(lengths.max())
    groups = data.correct.view(-1, n).float().mean(1)
    rec["groups_all_correct"] = float((groups == 1).float().mean())
    rec["groups_all_wrong"] = float((groups == 0).float().mean())
    rec["adv_abs_mean"] = float((data.advantages.abs() * mask).sum() / valid.clamp(min=1))
    rec["lr"] = lr
    rec["loss"] = float(np.mean(tally.losses)) if tally.losses else float("nan")
    rec["grad_norm"] = float(np.mean(tally.grad_norms)) if tally.grad_norms else float("nan")
    rec["optimizer_steps"] = tally.steps_taken
    rec["nonfinite_skips"] = tally.skipped
    rec["nonfinite_skips_total"] = nonfinite_total
    agg = tally.reducer.result()
    for k, v in agg.items():
        rec[f"m/{k}"] = v
    extra = method.on_step_end({**rec, **agg}) or {}
    for k, v in extra.items():
        rec[f"ctrl/{k}"] = v
    cause_log = tally.cause_log
    if cause_log:
        for k in cause_log[0]:
            vals = [c[k] for c in cause_log if math.isfinite(c[k])]
            rec[k] = float(np.mean(vals)) if vals else float("nan")
    rec["tokens/rollout"] = int(valid)
    rec["time/rollout"] = data.t_rollout
    rec["time/old_forward"] = data.t_old
    rec["time/update"] = t_update
    return rec
