"""Model text is hostile input: the code-injection battery (tests/fixtures/verifier) through every
scorer, the pool and the public entry points, and a scan of the rewards package for the calls
that evaluate text as Python. A payload that runs creates its marker file."""

from __future__ import annotations

import importlib.util
import io
import tokenize
from pathlib import Path

import pytest

from steer.rewards import ScoreItem, VerifierPool, compute_score, score_responses
from steer.rewards.dapo import score_dapo
from steer.rewards.math_verify_scorer import score_math_verify
from steer.rewards.qwen import score_qwen, score_qwen_strict

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "verifier"
SCORERS = {
    "math_verify": score_math_verify,
    "dapo": score_dapo,
    "qwen": score_qwen,
    "qwen_strict": score_qwen_strict,
}
DEFAULT_WRAPPERS = ("boxed", "answer-line", "plain")


def _battery():
    spec = importlib.util.spec_from_file_location("verifier_battery", FIXTURES / "battery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BAT = _battery()


def _ran(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_the_battery_is_live(tmp_path):
    """Every payload does run when Python evaluates it (so a scorer that did would be caught)."""
    import sympy

    dead = []
    for i, p in enumerate(BAT.load()["payloads"]):
        mark = tmp_path / f"p{i}"
        ns: dict = {}
        exec("from sympy import *", ns)
        try:
            eval(BAT.render(p["payload"], str(mark)), ns)  # the only eval: proving the battery works
        except Exception:
            pass
        if not mark.exists():
            dead.append(p["name"])
    assert dead == []
    assert len(BAT.load()["payloads"]) >= 25 and sympy


def _in_process(tmp_path, wrappers):
    cases = [c for c in BAT.cases(lambda i: str(tmp_path / f"m{i}")) if wrappers is None or c[1] in wrappers]
    for f in SCORERS.values():
        for _, _, text in cases:
            for resp, gold in ((text, "5"), ("\\boxed{5}", text)):
                try:
                    f(resp, gold)
                except Exception:
                    pass
    return cases


def test_no_scorer_runs_a_payload(tmp_path):
    cases = _in_process(tmp_path, DEFAULT_WRAPPERS)
    ran = _ran(tmp_path)
    assert ran == [], [cases[int(n[1:])][:2] for n in ran]


@pytest.mark.slow
def test_no_scorer_runs_a_payload_in_any_wrapper(tmp_path):
    cases = _in_process(tmp_path, None)
    ran = _ran(tmp_path)
    assert ran == [], [cases[int(n[1:])][:2] for n in ran]


def test_no_payload_runs_through_the_pool_and_the_public_api(tmp_path):
    cases = [c for c in BAT.cases(lambda i: str(tmp_path / f"m{i}")) if c[1] in ("boxed", "answer-line")]
    texts = [t for _, _, t in cases]
    with VerifierPool(2, timeout=5.0) as pool:
        for scorer in SCORERS:
            pool.score_batch([ScoreItem(t, "5", scorer) for t in texts])
            pool.score_batch([ScoreItem("\\boxed{5}", t, scorer) for t in texts])
            score_responses(texts, ["5"] * len(texts), scorer=scorer, pool=pool)
        for t in texts[::3]:
            compute_score("math_dapo", t, "5", pool=pool)
            compute_score(None, t, "5", {"scorer": "qwen"}, pool=pool)
    ran = _ran(tmp_path)
    assert ran == [], [cases[int(n[1:])][:2] for n in ran]


FORBIDDEN = {"eval", "exec", "compile", "sympify", "parse_expr", "parse_latex_lark", "lambdify", "pickle", "__import__"}


def test_rewards_package_never_evaluates_text():
    """No call that can evaluate text as Python appears in the rewards code (names in code,
    not in comments or strings); math-verify's own parser is audited in docs/evaluation.md."""
    found = []
    for path in sorted((ROOT / "steer" / "rewards").rglob("*.py")):
        prev = None
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type == tokenize.NAME and tok.string in FORBIDDEN:
                if not (tok.string == "compile" and prev is not None and prev.string == "."):  # re.compile
                    found.append(f"{path.name}:{tok.start[0]} {tok.string}")
            if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                prev = tok
    assert found == []
