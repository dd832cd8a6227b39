"""The one generation path (``steer.evaluation.generate.sample``) and the one held-out evaluator
(``steer.evaluation.heldout``): the stop-token rule, masks and texts against an independent
re-derivation from the raw ``generate`` output, the model's own generation defaults not leaking,
seeding, and the reduced metrics against a plain-loop reference."""

from __future__ import annotations

import math
import random

import pytest
import torch

from steer.evaluation.generate import response_mask_from_ids, sample, stop_token_ids
from steer.evaluation.heldout import HeldoutResult, evaluate_heldout
from steer.evaluation.passk import pass_at_k


@pytest.fixture(scope="module")
def tiny():
    """A random tiny Qwen2 policy with the testbed tokenizer (untrained: varied answers); its
    generation config adds the ten digits as stop tokens, so that both endings occur."""
    from steer.testbed import build_model, build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, preset="micro", seed=3)
    digits = [tok.convert_tokens_to_ids(d) for d in "0123456789"]
    model.generation_config.eos_token_id = [tok.eos_token_id, *digits]
    return model, tok, digits


def _prompts(tok, n):
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": f"make {10 + i} from 2 {3 + i}"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(n)
    ]


def test_stop_token_ids_union_and_error():
    class Tok:
        eos_token_id = 5

    class Model:
        class generation_config:
            eos_token_id = [7, 5]

    assert stop_token_ids(Tok(), Model()) == [5, 7]
    assert stop_token_ids(Tok()) == [5]

    class NoEos:
        eos_token_id = None

    with pytest.raises(ValueError, match="end-of-sequence"):
        stop_token_ids(NoEos())


def test_response_mask_against_loop():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (50, 9), generator=g)
    stops = [1, 4]
    got = response_mask_from_ids(ids, stops)
    for r in range(ids.shape[0]):
        seen = False
        for t in range(ids.shape[1]):
            assert bool(got[r, t]) == (not seen), (r, t)
            if int(ids[r, t]) in stops:
                seen = True


def test_sample_masks_texts_and_finish_follow_one_rule(tiny):
    model, tok, digits = tiny
    stops = stop_token_ids(tok, model)
    assert stops == sorted({tok.eos_token_id, *digits})
    prompts = _prompts(tok, 3)
    g = sample(model, tok, prompts, 4, temperature=1.0, top_p=1.0, max_new_tokens=12, batch_size=8, seed=1)
    assert g.batch_size == 12 and g.group_ids.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    finishes = set()
    for r in range(g.batch_size):
        row = g.response_ids[r].tolist()
        mask = g.response_mask[r].tolist()
        # independent re-derivation: valid = up to and including the first stop token
        first = next((i for i, t in enumerate(row) if t in stops and mask[i]), None)
        n = sum(mask)
        assert mask == [True] * n + [False] * (len(row) - n)
        if first is not None:
            assert n == first + 1 and g.finish[r] == "stop"
        else:
            assert n == 12 and g.finish[r] == "length"
        assert g.n_tokens[r] == n
        kept = [t for t in row[:n] if t not in stops]
        assert g.texts[r] == tok.decode(kept, skip_special_tokens=True)
        assert not any(d in g.texts[r] for d in "0123456789")  # stop tokens never reach a text
        finishes.add(g.finish[r])
    assert finishes == {"stop", "length"}, "the test policy should produce both endings"
    # prompts are left-padded; each row's prompt is its group's prompt
    for r in range(g.batch_size):
        ids = g.prompt_ids[r][g.prompt_mask[r]].tolist()
        assert tok.decode(ids) == prompts[r // 4]
        assert not g.prompt_mask[r, : (~g.prompt_mask[r]).sum()].any()


def test_sample_seeding_batches_and_caller_stream(tiny):
    model, tok, _ = tiny
    prompts = _prompts(tok, 4)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = sample(model, tok, prompts, 2, max_new_tokens=8, seed=5, batch_size=4)
    after = torch.rand(1)
    assert torch.equal(before, after), "a seeded call must leave the caller's RNG stream alone"
    b = sample(model, tok, prompts, 2, max_new_tokens=8, seed=5, batch_size=4)
    assert a.texts == b.texts and torch.equal(a.response_ids, b.response_ids)
    greedy = sample(model, tok, prompts[:1], 2, temperature=0.0, max_new_tokens=8)
    assert greedy.texts[0] == greedy.texts[1]


def test_model_generation_defaults_do_not_leak(tiny):
    """A checkpoint's own sampling settings (here a huge repetition penalty and top-k 1) must not
    change what ``sample`` draws: rollouts are scored under the plain softmax policy."""
    model, tok, _ = tiny
    prompts = _prompts(tok, 3)
    ref = sample(model, tok, prompts, 3, max_new_tokens=10, seed=9)
    gc = model.generation_config
    old = (gc.repetition_penalty, gc.top_k)
    gc.repetition_penalty, gc.top_k = 50.0, 1
    try:
        got = sample(model, tok, prompts, 3, max_new_tokens=10, seed=9)
        assert got.texts == ref.texts
        assert model.generation_config is gc and gc.repetition_penalty == 50.0
        # the same call straight through generate does pick the model's settings up (the test
        # would notice a leak)
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(9)
        direct = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=10)
        torch.manual_seed(9)
        gc.repetition_penalty, gc.top_k = old
        plain = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=10)
        assert not torch.equal(direct, plain)
    finally:
        gc.repetition_penalty, gc.top_k = old


def test_sample_entropy_against_reference(tiny):
    model, tok, _ = tiny
    prompts = _prompts(tok, 2)
    g = sample(model, tok, prompts, 2, max_new_tokens=6, seed=2, with_entropy=True)
    # reference: re-score each response with a plain forward in float64 (raw logits, temperature 1)
    for r in range(g.batch_size):
        p = g.prompt_ids[r][g.prompt_mask[r]]
        n = g.n_tokens[r]
        resp = g.response_ids[r, :n]
        seq = torch.cat([p, resp]).unsqueeze(0)
        with torch.no_grad():
            logits = model(input_ids=seq).logits[0, len(p) - 1 : len(p) - 1 + n].double()
        h = 0.0
        for t in range(n):
            probs = torch.softmax(logits[t], -1)
            h += float(-(probs * probs.log()).sum())
        assert g.entropy_sum[r] == pytest.approx(h, rel=1e-4, abs=1e-5)


def test_sample_rejects_bad_arguments(tiny):
    model, tok, _ = tiny
    for kw, msg in (
        ({"n": 0}, "n must"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_p": 0.0}, "top_p"),
    ):
        with pytest.raises(ValueError, match=msg):
            sample(model, tok, ["x"], **kw)
    with pytest.raises(ValueError, match="no prompts"):
        sample(model, tok, [])


def _reference_metrics(correct, n_tokens, finish, forms, ks):
    """Plain-loop float64-free reference of HeldoutResult.metrics."""
    P = len(correct)
    flat = [c for cs in correct for c in cs]
    out = {"acc": sum(flat) / len(flat), "solved": sum(1 for cs in correct if any(cs)) / P}
    pp = [sum(cs) / len(cs) for cs in correct]
    m = sum(pp) / P
    out["acc_se"] = math.sqrt(sum((x - m) ** 2 for x in pp) / (P - 1) / P)
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(len(cs), sum(cs), k) for cs in correct) / P
    out["response_length"] = sum(sum(x) for x in n_tokens) / len(flat)
    out["truncated_frac"] = sum(1 for fs in finish for f in fs if f == "length") / len(flat)
    out["diversity"] = (
        sum(len({f for f, ok in zip(fs, cs) if ok and f is not None}) for fs, cs in zip(forms, correct)) / P
    )
    return out


def test_heldout_metrics_against_reference():
    rng = random.Random(0)
    for trial in range(20):
        P, n = rng.randint(2, 6), rng.randint(1, 6)
        # include all-correct and all-wrong problems (equal-reward groups)
        correct = [
            [rng.random() < q for _ in range(n)] for q in [rng.choice([0.0, 1.0, 0.5, 0.2]) for _ in range(P)]
        ]
        n_tokens = [[rng.randint(1, 9) for _ in range(n)] for _ in range(P)]
        finish = [[rng.choice(["stop", "length"]) for _ in range(n)] for _ in range(P)]
        forms = [[rng.choice(["a", "b", "c", None]) for _ in range(n)] for _ in range(P)]
        distinct = [
            len({f for f, ok in zip(fs, cs) if ok and f is not None}) for fs, cs in zip(forms, correct)
        ]
        ks = [k for k in (1, 2, 4) if k <= n]
        res = HeldoutResult(
            texts=[[""] * n] * P, correct=correct, n_tokens=n_tokens, finish=finish, distinct=distinct
        )
        got = res.metrics(ks, prefix="h/")
        want = _reference_metrics(correct, n_tokens, finish, forms, ks)
        assert set(got) == {"h/" + k for k in want}, trial
        for k, v in want.items():
            assert got["h/" + k] == pytest.approx(v, rel=1e-12, abs=1e-12), (trial, k)


def test_evaluate_heldout_scores_every_sample_once(tiny):
    model, tok, _ = tiny
    prompts = _prompts(tok, 3)
    seen = []

    def score(idx, texts):
        seen.append((list(idx), list(texts)))
        return [len(t) % 2 == 0 for t in texts]

    res = evaluate_heldout(
        model,
        tok,
        prompts,
        score,
        n=4,
        max_new_tokens=8,
        batch_size=5,
        seed=4,
        canonical=lambda i, t: t[:2],
        with_entropy=True,
    )
    assert len(seen) == 1 and seen[0][0] == [0] * 4 + [1] * 4 + [2] * 4
    assert [len(c) for c in res.correct] == [4, 4, 4]
    for i in range(3):
        assert res.correct[i] == [len(t) % 2 == 0 for t in res.texts[i]]
        assert res.distinct[i] == len({t[:2] for t, ok in zip(res.texts[i], res.correct[i]) if ok})
    m = res.metrics([1, 4])
    assert 0 <= m["acc"] <= 1 and m["pass@4"] >= m["pass@1"] and m["entropy"] > 0
    again = evaluate_heldout(model, tok, prompts, score, n=4, max_new_tokens=8, batch_size=5, seed=4)
    assert again.texts == res.texts  # seeded: the same samples whatever else is asked for
    with pytest.raises(ValueError, match="no problems"):
        evaluate_heldout(model, tok, [], score, n=2)
    with pytest.raises(ValueError, match="verdicts"):
        evaluate_heldout(model, tok, prompts, lambda i, t: [True], n=2, max_new_tokens=4)
