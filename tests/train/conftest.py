"""Shared fixtures: a small warm-started testbed policy (micro preset, a few dozen supervised
steps, cached per test session) and small trainer configs."""

from __future__ import annotations

import pytest

from steer.train.config import load_config

#: A budget small enough for unit tests (a few seconds per step on 2 cores).
SMALL = [
    "trainer.steps=2",
    "trainer.prompts_per_step=4",
    "trainer.num_mini_batches=2",
    "rollout.n=4",
    "rollout.max_new_tokens=20",
    "task.train_size=32",
    "task.heldout_size=4",
    "eval.every=0",
    "eval.at_start=false",
    "eval.at_end=false",
    "eval.n_samples=4",
    "eval.ks=[1,2,4]",
    "checkpoint.every=1",
    "logging.progress=false",
    "logging.tensorboard=false",
    "trainer.num_threads=1",
]

WARM = [
    "warm_start.overrides.preset=micro",
    "warm_start.overrides.steps=60",
    "warm_start.overrides.train_problems=300",
    "warm_start.overrides.batch_size=32",
]


@pytest.fixture(scope="session")
def ws_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("warmstart")


@pytest.fixture(scope="session")
def policy_path(ws_cache):
    """Path of the micro warm-started policy (trained once per session, about 10-20 s)."""
    from steer.testbed import warm_start

    overrides = {k.split("=")[0].split(".")[-1]: v.split("=")[1] for k, v in ((w, w) for w in WARM)}
    cfg = {k: (int(v) if v.isdigit() else v) for k, v in overrides.items()}
    cfg["threads"] = 1
    return warm_start(cfg, ws_cache, progress=False)


@pytest.fixture
def small_cfg(tmp_path, policy_path):
    """A factory of small validated configs training the cached micro policy."""

    def make(*overrides: str, out: str = "run"):
        return load_config(
            "testbed",
            [*SMALL, f"model.name_or_path={policy_path}", f"logging.out_dir={tmp_path / out}", *overrides],
        )

    return make
