"""The trainer's reward for answers that fail verification: never better than a wrong answer.

A policy that learns an answer the verifier always fails on (a literal of thousands of digits,
thousands of nested brackets) or never finishes must get the wrong-answer reward, and the rate of
verifier failures is a logged metric (``reward/verify_error_frac``)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

import steer.train.trainer as trainer_module
from steer.rewards.registry import SCORERS, ScorerSpec, register_scorer
from steer.train.tasks import CountdownTaskAdapter, MathTaskAdapter
from steer.train.trainer import Trainer

HOSTILE = [
    "\\boxed{" + "7" * 5000 + "}",
    "\\boxed{" + "-" * 6000 + "1}",
    "\\boxed{\\frac{1}{100000!}}",
    "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
]


def always_raises(response: str, gold: str):
    raise RuntimeError("the verifier failed")


class GoldFiveTask(CountdownTaskAdapter):
    """Countdown prompts scored by the math task's own batch scorer against the gold ``5``."""

    def __init__(self, cfg, scorer: str | None = None):
        super().__init__(cfg)
        self._scorer_name = scorer

    def correct_batch(self, problems, responses):
        golds = [SimpleNamespace(gold="5", data_source="math500") for _ in problems]
        return MathTaskAdapter.correct_batch(self, golds, responses)

    def correct(self, problem, response):
        return self.correct_batch([problem], [response])[0]


def _policy_says(monkeypatch, texts):
    """The rollouts' decoded texts replaced by ``texts`` (cycled): the policy 'outputs' them."""
    real = trainer_module.generate_rollouts

    def fake(*a, **kw):
        ro = real(*a, **kw)
        return dataclasses.replace(ro, texts=[texts[i % len(texts)] for i in range(len(ro.texts))])

    monkeypatch.setattr(trainer_module, "generate_rollouts", fake)


def test_answers_that_always_fail_get_the_wrong_reward_in_the_trainer(small_cfg, monkeypatch):
    cfg = small_cfg("method.name=grpo", "trainer.steps=1", "checkpoint.every=0")
    tr = Trainer(cfg, task=GoldFiveTask(cfg.task), log=lambda m: None)
    said = ["so \\boxed{5}", "so \\boxed{6}", *HOSTILE[:2]]
    _policy_says(monkeypatch, said)
    data = tr.collect(0)
    for i, r in enumerate(data.rewards.tolist()):
        assert r == (cfg.task.reward_correct if i % 4 == 0 else cfg.task.reward_wrong), said[i % 4][:20]
    assert data.verify_error_frac == 0.0  # judged wrong up front, not failures of the verifier
    # every group has one right answer and three wrong ones, two of them hostile: the hostile
    # ones get exactly the advantage of the plain wrong answer
    adv = data.advantages[:, 0].view(-1, 4)
    assert (adv[:, 1] == adv[:, 2]).all() and (adv[:, 1] == adv[:, 3]).all() and (adv[:, 1] < 0).all()
    _policy_says(monkeypatch, HOSTILE)
    rec = tr.train_step(0)
    assert rec["reward"] == cfg.task.reward_wrong and rec["reward/verify_error_frac"] == 0.0


@pytest.fixture
def raising_scorer():
    register_scorer(ScorerSpec("test_raises", __name__, "always_raises", 1.0, -1.0, "raises"))
    yield "test_raises"
    SCORERS.pop("test_raises", None)


def test_verifier_errors_score_wrong_and_are_logged(small_cfg, monkeypatch, raising_scorer):
    cfg = small_cfg("method.name=grpo", "trainer.steps=1", "checkpoint.every=0")
    tr = Trainer(cfg, task=GoldFiveTask(cfg.task, scorer=raising_scorer), log=lambda m: None)
    _policy_says(monkeypatch, ["so \\boxed{5}"])
    rec = tr.train_step(0)
    assert rec["reward/verify_error_frac"] == 1.0
    assert rec["reward"] == cfg.task.reward_wrong and rec["acc"] == 0.0
