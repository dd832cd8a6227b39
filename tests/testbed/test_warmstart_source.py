"""The warm-start can learn a reasoning-gym dataset's answers (``source``), and the countdown
warm-start's cache key is what it was before ``source`` existed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from steer.testbed.warmstart import WARMSTART_VERSION, WarmStartConfig, cache_key, train_warm_start


def test_countdown_cache_key_unchanged():
    cfg = WarmStartConfig(threads=1, steps=250, train_problems=150)
    old = asdict(cfg)
    old["betas"] = list(cfg.betas)
    del old["source"], old["source_config"]  # the fields of earlier versions only
    payload = json.dumps({"version": WARMSTART_VERSION, **old}, sort_keys=True)
    assert cache_key(cfg) == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert cache_key(WarmStartConfig(source="chain_sum")) != cache_key(WarmStartConfig())


def test_reasoning_gym_source_trains_on_its_answers():
    cfg = WarmStartConfig(
        source="chain_sum", preset="micro", steps=3, train_problems=8, batch_size=4, threads=1
    )
    model, tok, info = train_warm_start(cfg, progress=False)
    assert info["train_problems"] == 8 and info["final_loss"] == info["final_loss"]
