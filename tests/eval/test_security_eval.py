"""The code-injection battery (tests/fixtures/verifier) through ``steer.evaluation.evaluate``,
the function behind ``steer eval``: a scripted backend answers every prompt with payloads, and
some golds are payloads too. No payload may run, with any scorer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from steer.data import Problem
from steer.evaluation.evaluate import evaluate
from steer.evaluation.generate import Completion

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verifier"


def _battery():
    spec = importlib.util.spec_from_file_location("verifier_battery", FIXTURES / "battery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class PayloadBackend:
    """Answers prompt ``i`` with ``texts[i]`` (the prompt carries its index)."""

    name = "payloads"
    batch_size = 64

    def __init__(self, texts):
        self.texts = texts
        self.tokenizer = None

    def generate(self, prompts, *, temperature, top_p, max_tokens, seed=None):
        out = []
        for p in prompts:
            i = int(p.split("PROBLEM-", 1)[1].split(" ", 1)[0])
            out.append(Completion(self.texts[i], 5, "stop"))
        return out


WRAPPERS_DEFAULT = ("boxed", "answer-line", "plain")


@pytest.mark.parametrize("scorer", ["math_verify", "dapo", "qwen", "qwen_strict"])
def test_no_payload_runs_through_evaluate(tmp_path, pool, scorer):
    bat = _battery()
    cases = [c for c in bat.cases(lambda i: str(tmp_path / f"m{i}")) if c[1] in WRAPPERS_DEFAULT]
    texts = [text for _, _, text in cases]
    probs = []
    for i, text in enumerate(texts):
        # every other problem has a payload as its gold as well
        gold = text if i % 2 else "5"
        probs.append(Problem(id=f"p{i}", problem=f"PROBLEM-{i} compute", gold=gold, prompt=[
            {"role": "user", "content": f"PROBLEM-{i} compute"}
        ]))
    rep = evaluate(
        backend=PayloadBackend(texts), benchmarks={"inj": probs}, k=1, scorer=scorer, pool=pool, progress=False
    )
    assert rep.results["inj"].n_samples == len(texts)
    ran = sorted(p.name for p in tmp_path.iterdir())
    assert ran == [], f"payloads ran: {[cases[int(n[1:])][:2] for n in ran]}"
