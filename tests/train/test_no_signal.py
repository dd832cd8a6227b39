"""The trainer warns when most groups have equal rewards for several steps in a row (no learning
signal), for any task: once per stretch, and not when the groups are mixed."""

from __future__ import annotations

from steer.train.tasks import CountdownTaskAdapter
from steer.train.trainer import Trainer

from .helpers import CoinTask


class NeverTask(CountdownTaskAdapter):
    """Countdown prompts that no response solves (a task far too hard for the policy)."""

    def correct(self, problem, response: str) -> bool:
        return False


def _logs(cfg, task) -> list[str]:
    logs: list[str] = []
    tr = Trainer(cfg, task=task, log=logs.append)
    tr.NO_SIGNAL_STEPS = 2
    tr.fit()
    return [m for m in logs if "no learning signal" in m]


def test_all_wrong_groups_warn_once_per_stretch(small_cfg):
    cfg = small_cfg("trainer.steps=3", "checkpoint.every=0", "checkpoint.save_best=false")
    warned = _logs(cfg, NeverTask(cfg.task))
    assert len(warned) == 1, warned
    assert "100% all wrong" in warned[0] and "step 2" in warned[0]


def test_mixed_groups_do_not_warn(small_cfg):
    cfg = small_cfg("trainer.steps=3", "rollout.n=8", "checkpoint.every=0", "checkpoint.save_best=false")
    assert _logs(cfg, CoinTask(cfg.task)) == []
