"""``steer eval`` end to end on a tiny saved model (real from_pretrained path), resume after an
interruption, metrics through a scripted backend, the trainer's in-memory validation."""

from __future__ import annotations

import json

import pytest

from steer.data import Problem, load_benchmark
from steer.evaluation.evaluate import evaluate, evaluate_problems, summarize
from steer.evaluation.generate import Completion


def _cli_main():
    try:
        from steer.cli import main  # the real dispatcher (imports steer.train.cli as well)

        return main
    except ImportError:  # the trainer's CLI not there yet: the eval module's own entry
        from steer.evaluation.cli import main

        return main


def _samples(path):
    return [json.loads(line) for line in open(path) if json.loads(line).get("type") == "sample"]


def test_steer_eval_end_to_end_and_resume(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run" / "samples.jsonl"
    argv = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--benchmarks",
        "math500,aime24",
        "--k",
        "2",
        "--limit",
        "2",
        "--max-tokens",
        "4",
        "--batch-size",
        "4",
        "--output",
        str(out),
        "--verify-workers",
        "1",
        "--no-progress",
    ]
    main = _cli_main()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| Method | MATH500 | AIME24 | Avg. |" in text
    assert "8 samples generated, 0 taken" in text
    recs = _samples(out)
    assert len(recs) == 8
    assert {(r["benchmark"], r["sample"]) for r in recs} == {
        (b, s) for b in ("math500", "aime24") for s in (0, 1)
    }
    for r in recs:
        assert r["n_tokens"] <= 4 and r["finish"] in ("stop", "length")
        assert isinstance(r["correct"], bool) and r["reason"]
    summ = json.loads((tmp_path / "run" / "samples.summary.json").read_text())
    assert summ["results"]["aime24"]["k"] == 2 and summ["results"]["aime24"]["problems"] == 2
    assert (tmp_path / "run" / "samples.summary.md").read_text().startswith("avg@k")

    # finished run: nothing is generated again
    assert main(argv) == 0
    assert "0 samples generated, 8 taken" in capsys.readouterr().out

    # interrupted run: keep the meta line + 5 samples and a torn 6th line
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:6]) + lines[6][:20])
    assert main(argv) == 0
    assert "3 samples generated, 5 taken" in capsys.readouterr().out
    recs = _samples(out)
    assert len(recs) == 8
    assert len({(r["benchmark"], r["problem_id"], r["sample"]) for r in recs}) == 8

    # other settings into the same file are refused
    with pytest.raises(ValueError, match="other settings"):
        main([*argv, "--temperature", "0.5"])


class ScriptedBackend:
    """Answers with the gold for the first ``n_right`` samples of each prompt, else a wrong one."""

    name = "scripted"
    batch_size = 5

    def __init__(self, golds: dict[str, str], n_right: dict[str, int]):
        self.golds, self.n_right, self.seen = golds, n_right, {}
        self.tokenizer = None

    def generate(self, prompts, *, temperature, top_p, max_tokens, seed=None):
        out = []
        for p in prompts:
            key = next(k for k in self.golds if k in p)
            i = self.seen.get(key, 0)
            self.seen[key] = i + 1
            ans = self.golds[key] if i < self.n_right[key] else "-12345"
            out.append(Completion(f"work\nAnswer: {ans}", 3, "stop"))
        return out


def test_metrics_through_a_scripted_backend(pool):
    probs = load_benchmark("aime24", limit=3)
    golds = {p.problem[:60]: p.gold for p in probs}
    n_right = dict(zip(golds, [0, 1, 4]))
    rep = evaluate(
        backend=ScriptedBackend(golds, n_right), benchmarks={"aime24": probs}, k=4, pool=pool, progress=False
    )
    r = rep.results["aime24"]
    assert r.avg_at_k == pytest.approx((0 + 0.25 + 1.0) / 3)
    assert r.pass_at[1] == pytest.approx(r.avg_at_k)
    assert r.pass_at[4] == pytest.approx(2 / 3)
    assert r.pass_at[2] == pytest.approx((0 + 0.5 + 1) / 3)  # 1 - C(3,2)/C(4,2) = 0.5
    # majority answer: wrong (-12345) for the first two problems, right for the third
    assert r.maj_at_k == pytest.approx(1 / 3)
    assert "| aime24 |" in rep.table("m") or "| AIME24 |" in rep.table("m")


def test_majority_vote_rules():
    def rec(pid, pred, ok):
        return {"problem_id": pid, "pred": pred, "correct": ok}

    recs = [
        rec("a", "5", True),
        rec("a", "7", False),
        rec("a", "7 ", False),  # same answer as "7" (spaces ignored)
        rec("a", None, False),  # no answer: no vote
        rec("b", "1", True),
        rec("b", "2", False),  # tie: the answer seen first wins
        rec("c", None, False),
        rec("c", None, False),
    ]
    # each problem needs >= k samples; k=2
    r = summarize("x", 2, recs)
    assert r.maj_at_k == pytest.approx((0 + 1 + 0) / 3)
    assert r.avg_at_k == pytest.approx((1 / 4 + 1 / 2 + 0) / 3)


def test_paper_k_defaults_and_errors(pool):
    probs = load_benchmark("math500", limit=2)
    b = ScriptedBackend({p.problem[:60]: p.gold for p in probs}, {p.problem[:60]: 1 for p in probs})
    rep = evaluate(backend=b, benchmarks={"math500": probs}, pool=pool, progress=False)
    assert rep.results["math500"].k == 1 and rep.results["math500"].avg_at_k == 1.0
    with pytest.raises(ValueError, match="twice"):
        evaluate(backend=b, benchmarks=["math500", "math_500"], pool=pool, progress=False)
    with pytest.raises(ValueError, match="model and tokenizer"):
        evaluate(benchmarks=["math500"], pool=pool)
    with pytest.raises(ValueError, match="no samples"):
        summarize("x", 1, [])


def test_trainer_validation_in_memory(tiny_model_dir, pool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.train()
    probs = [
        Problem(id="", problem="What is 1+1?", gold="2", prompt=[{"role": "user", "content": "What is 1+1?"}])
    ]
    m = evaluate_problems(model, tok, probs, k=2, max_tokens=3, batch_size=2, pool=pool, name="val")
    assert set(m) == {"val/avg@2", "val/pass@1", "val/pass@2", "val/truncated_frac"}
    assert 0.0 <= m["val/avg@2"] <= 1.0
    assert model.training  # mode restored


def test_vllm_backend_absent_gives_a_clear_error():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from steer.evaluation.generate import VLLMBackend

    with pytest.raises(ImportError, match="vllm"):
        VLLMBackend("x")


def test_resume_with_other_k_and_limit_uses_only_this_runs_samples(tmp_path, pool):
    probs = load_benchmark("aime24", limit=3)
    golds = {p.problem[:60]: p.gold for p in probs}
    out = tmp_path / "s.jsonl"

    def run(k, limit):
        b = ScriptedBackend(golds, dict.fromkeys(golds, 1))
        return evaluate(
            backend=b, benchmarks={"aime24": probs}, k=k, limit=limit, output=out, pool=pool, progress=False
        )

    r = run(4, 3)
    assert r.generated == 12 and r.results["aime24"].avg_at_k == pytest.approx(0.25)
    r = run(2, 2)  # fewer samples and problems: nothing new, only samples 0-1 of 2 problems counted
    assert r.generated == 0 and r.skipped == 4
    assert r.results["aime24"].n_samples == 4 and r.results["aime24"].avg_at_k == pytest.approx(0.5)
    r = run(6, 3)  # more samples: only the missing ones are generated
    assert r.generated == 6 and r.results["aime24"].n_samples == 18


class _StubTokenizer:
    pad_token_id = 0
    eos_token_id = 9
    padding_side = "right"

    def __call__(self, texts, **kw):
        import torch

        class Enc(dict):
            def to(self, device):
                return self

        n = max(len(t) for t in texts)
        ids = torch.tensor([[0] * (n - len(t)) + [5] * len(t) for t in texts])
        return Enc(input_ids=ids, attention_mask=(ids != 0).long())

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i in (0, 9, 8)))


class _StubModel:
    """generate() returns prompt + fixed continuations; eos ids 8 and 9 come from the generation config."""

    class generation_config:
        eos_token_id = [8, 9]

    def __init__(self, rows):
        self.rows, self.kw = rows, None

    def parameters(self):
        import torch

        yield torch.zeros(1)

    def generate(self, input_ids, attention_mask, **kw):
        import torch

        self.kw = kw
        return torch.cat([input_ids, torch.tensor(self.rows[: input_ids.shape[0]])], dim=1)


def test_hf_backend_stops_on_any_eos_and_restores_padding_side():
    from steer.evaluation.generate import HFBackend

    model = _StubModel([[3, 4, 8, 0, 0], [3, 9, 0, 0, 0], [1, 2, 3, 4, 5]])
    tok = _StubTokenizer()
    b = HFBackend(model, tok, batch_size=8)
    out = b.generate(["ab", "abc", "a"], temperature=1.0, top_p=0.7, max_tokens=5)
    assert [(c.text, c.n_tokens, c.finish) for c in out] == [
        ("3 4", 3, "stop"),
        ("3", 2, "stop"),
        ("1 2 3 4 5", 5, "length"),
    ]
    gen = model.kw["generation_config"]  # a fresh config carries every sampling setting
    assert gen.eos_token_id == [8, 9] and gen.top_k == 0 and gen.top_p == 0.7
    assert tok.padding_side == "right"
    b.generate(["a"], temperature=0.0, top_p=0.7, max_tokens=5)
    assert model.kw["generation_config"].do_sample is False
    with pytest.raises(ValueError):
        b.generate(["a"], temperature=1.0, top_p=0.7, max_tokens=0)
