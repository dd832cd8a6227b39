"""Warm-start caching and the evaluation helper (issue 3, "Testbed")."""

from __future__ import annotations

import json

import pytest
import torch

from steer.testbed import (
    CountdownConfig,
    CountdownTask,
    WarmStartConfig,
    cache_key,
    evaluate_policy,
    is_valid_cache,
    load_policy,
    warm_start,
)
from steer.testbed import warmstart as ws

TINY = dict(preset="micro", train_problems=20, steps=3, batch_size=4, warmup_steps=1)


def _count_training(monkeypatch):
    calls = []
    real = ws.train_warm_start

    def counting(config, progress=True):
        calls.append(config)
        return real(config, progress=progress)

    monkeypatch.setattr(ws, "train_warm_start", counting)
    return calls


def test_cache_key_covers_the_config():
    base = WarmStartConfig(**TINY)
    assert cache_key(base) == cache_key(WarmStartConfig(**TINY))
    variants = [
        dict(TINY, steps=4),
        dict(TINY, lr=1e-3),
        dict(TINY, seed=1),
        dict(TINY, preset="tiny"),
        dict(TINY, model_overrides={"num_hidden_layers": 1}),
        dict(TINY, task=CountdownConfig(max_number=9)),
    ]
    keys = {cache_key(WarmStartConfig(**v)) for v in variants}
    assert len(keys) == len(variants) and cache_key(base) not in keys


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        WarmStartConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        WarmStartConfig(lr=float("nan"))
    assert WarmStartConfig(task={"max_number": 9}).task.max_number == 9


def test_second_call_uses_cache(tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    cfg = WarmStartConfig(**TINY)
    p1 = warm_start(cfg, tmp_path, progress=False)
    assert len(calls) == 1 and is_valid_cache(p1, cache_key(cfg))
    meta = json.loads((p1 / "warmstart.json").read_text())
    assert meta["key"] == cache_key(cfg) and meta["config"]["steps"] == 3
    p2 = warm_start(dict(TINY), tmp_path, progress=False)
    assert p2 == p1 and len(calls) == 1
    # no temporary directories left behind
    assert [d.name for d in tmp_path.iterdir()] == [p1.name]
    model, tok = load_policy(p1)
    assert type(model).__name__ == "Qwen2ForCausalLM"


@pytest.mark.parametrize("damage", ["truncate_weights", "delete_manifest", "delete_tokenizer", "bad_key"])
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    calls = _count_training(monkeypatch)
    cfg = WarmStartConfig(**TINY)
    path = warm_start(cfg, tmp_path, progress=False)
    weights = next(path.glob("*.safetensors"))
    if damage == "truncate_weights":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "delete_manifest":
        (path / "MANIFEST.json").unlink()
    elif damage == "delete_tokenizer":
        (path / "tokenizer.json").unlink()
    else:
        meta = json.loads((path / "warmstart.json").read_text())
        meta["key"] = "0" * 16
        (path / "warmstart.json").write_text(json.dumps(meta))
    assert not is_valid_cache(path, cache_key(cfg))
    again = warm_start(cfg, tmp_path, progress=False)
    assert again == path and len(calls) == 2
    assert is_valid_cache(again, cache_key(cfg))
    load_policy(again)


def test_partial_directory_without_manifest_is_rebuilt(tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    cfg = WarmStartConfig(**TINY)
    final = tmp_path / f"warmstart-{cache_key(cfg)}"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{")  # as if a copy had been interrupted
    path = warm_start(cfg, tmp_path, progress=False)
    assert path == final and len(calls) == 1 and is_valid_cache(path)


def test_training_is_deterministic_and_loss_on_response_only():
    cfg = WarmStartConfig(**TINY)
    m1, tok, info1 = ws.train_warm_start(cfg, progress=False)
    m2, _, info2 = ws.train_warm_start(cfg, progress=False)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert info1["final_loss"] == info2["final_loss"]
    problems = CountdownTask(cfg.task).problems("train", 2)
    prompts, responses = ws._encode(tok, problems)
    assert tok.decode(prompts[0]).endswith("<|assistant|>")
    assert responses[0][0][-1] == tok.eos_token_id
    assert {tok.decode(r[:-1]) for r in responses[0]} == set(problems[0].solutions)


def test_evaluate_policy_reports_all_metrics():
    cfg = WarmStartConfig(**TINY)
    model, tok, _ = ws.train_warm_start(cfg, progress=False)
    probs = CountdownTask(cfg.task).problems("heldout", 3)
    r = evaluate_policy(model, tok, probs, k=4, temperature=1.0, top_p=1.0, return_samples=True)
    for key in ("accuracy", "entropy", "diversity", "pass@1", "pass@2", "pass@4", "response_len"):
        assert key in r
    assert 0.0 <= r["accuracy"] <= 1.0 and r["entropy"] > 0.0
    assert len(r["samples"]) == 3 and all(len(s) == 4 for s in r["samples"])
    again = evaluate_policy(model, tok, probs, k=4, return_samples=True)
    assert again["samples"] == r["samples"]  # seeded
    with pytest.raises(ValueError):
        evaluate_policy(model, tok, [], k=4)


def test_diversity_of_reference_solutions():
    from steer.testbed.diversity import distinct_correct

    p = CountdownTask().problems("heldout", 1)[0]
    assert distinct_correct(p, list(p.solutions) * 2) == len(p.solutions)
    assert distinct_correct(p, ["nonsense"]) == 0
