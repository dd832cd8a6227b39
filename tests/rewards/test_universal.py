"""Universal answers: strings a policy could offer for every problem (infinities, huge powers and
factorials, 0, 1, empty, a variable, the empty set, "all real numbers", tuples of these) scored
against the golds of the sets in ../shared/data. Each may be accepted only where the gold
really is that answer (the same string up to spacing, or the same number).

Default suite: every candidate against aime24 and the first 20-25 golds of math500, minerva
and olympiad, with every scorer. ``slow``: every gold of every file. The acceptance
table in docs/evaluation.md comes from ``python -m tests.rewards.test_universal``.
"""

from __future__ import annotations

import pytest

from steer.data import load_benchmark
from steer.rewards import ScoreItem, VerifierPool
from steer.rewards.extract import canonical_answer, clean_gold
from steer.rewards.math_verify_scorer import _canon
from steer.rewards.qwen import to_number

CANDIDATES = [
    r"\infty",
    r"-\infty",
    r"\pm\infty",
    r"\infty^{\infty}",
    "10^{400}",
    "-10^{400}",
    "10^{10^{10}}",
    "100000!",
    "(10^{10})!",
    "0",
    "1",
    "-1",
    "",
    "x",
    "n",
    r"\emptyset",
    r"\varnothing",
    r"\text{all real numbers}",
    r"\mathbb{R}",
    r"(-\infty, \infty)",
    r"(\infty, \infty)",
    "(0, 0)",
    "(1, 1)",
    r"\{0\}",
    r"\text{none}",
    r"0.\overline{9}",
]
SCORERS = ("math_verify", "dapo", "qwen", "qwen_strict")
SETS = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiad", "dapo17k")
DEFAULT = {"aime24": None, "math500": 20, "minerva": 20, "olympiad": 25}


def response_for(problem, answer: str) -> str:
    if problem.answer_format == "answer_line":
        return f"I think I know.\nAnswer: {answer}"
    return f"I think I know. The answer is $\\boxed{{{answer}}}$."


def really_is(gold: str, cand: str) -> bool:
    """The gold is that answer: the same string up to spacing and \\left/\\right, or the same
    plain number."""
    g, c = _canon(canonical_answer(clean_gold(gold))), _canon(canonical_answer(cand))
    c = c[2:-2] if c.startswith("\\{") and c.endswith("\\}") and "," not in c else c  # {x} is x
    forms = {g}
    if g.count("=") == 1 and "," not in g:  # an assignment gold "k=1" is its right side too
        forms.add(g.split("=")[1])
    for f in forms:
        if f == c:
            return True
        a, b = to_number(f), to_number(c)
        if a is not None and b is not None and a == b:
            return True
    return False


def percentage_of(gold: str, cand: str) -> bool:
    """``cand`` is the gold times 100 or divided by 100 (the published Qwen leniency), or, for a
    tuple, each item is equal to or such a multiple of the gold's item (the published grader
    applies the leniency item by item)."""
    return _percentage(_canon(clean_gold(gold)), _canon(cand), strict=True)


def _percentage(g: str, c: str, *, strict: bool) -> bool:
    from steer.rewards.qwen import _brackets, _split_top

    a, b = to_number(g), to_number(c)
    if a is not None and b is not None:
        return (b == a * 100 or b * 100 == a) or (not strict and a == b)
    bg, bc = _brackets(g), _brackets(c)
    ig, ic = _split_top(bg[1] if bg else g), _split_top(bc[1] if bc else c)
    if len(ig) < 2 or len(ig) != len(ic):
        return False
    return all(_percentage(x.strip(), y.strip(), strict=False) for x, y in zip(ig, ic))


def run(pool, probs, scorer):
    """``{candidate: (accepted rows, of which not really that answer)}``; for ``qwen`` an
    acceptance explained by its percentage leniency is listed as right (counted apart in
    :func:`sweep`)."""
    items, keys = [], []
    for c in CANDIDATES:
        for p in probs:
            items.append(ScoreItem(response_for(p, c), p.gold, scorer))
            keys.append((c, p))
    out = {c: ([], []) for c in CANDIDATES}
    for (c, p), v in zip(keys, pool.score_batch(items)):
        if v.correct:
            out[c][0].append(p.id)
            if not really_is(p.gold, c) and not (scorer == "qwen" and percentage_of(p.gold, c)):
                out[c][1].append((p.id, p.gold))
    return out


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(2, timeout=5.0) as p:
        yield p


@pytest.mark.parametrize("scorer", SCORERS)
def test_universal_answers_default_sample(pool, scorer):
    probs = []
    for name, n in DEFAULT.items():
        probs += load_benchmark(name)[:n]
    res = run(pool, probs, scorer)
    bad = {c: wrong for c, (_, wrong) in res.items() if wrong}
    assert bad == {}


def test_really_is():
    assert really_is("0", "0") and really_is(r"\left( 1, 1 \right)", "(1, 1)") and really_is("1.0", "1")
    assert not really_is("10", "1") and not really_is(r"\infty", "-\\infty")
    assert really_is("1", r"0.\overline{9}") and really_is("0", r"\{0\}") and really_is("k=1", "1")
    assert not really_is(r"f(n)=n$, $g(n)=1", "1")


@pytest.mark.slow
@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("name", SETS)
def test_universal_answers_every_gold(pool, name, scorer):
    res = run(pool, load_benchmark(name), scorer)
    bad = {c: wrong[:5] for c, (_, wrong) in res.items() if wrong}
    assert bad == {}


def sweep(sets=SETS, scorers=SCORERS, workers=2) -> dict:
    """Acceptance of every candidate on every set and scorer; prints a markdown table (the
    numbers in docs/evaluation.md): accepted rows / rows, and how many of them are not that
    answer."""
    import time

    table = {}
    with VerifierPool(workers, timeout=5.0) as pool:
        for s in sets:
            probs = load_benchmark(s)
            for sc in scorers:
                t = time.time()
                table[(s, sc)] = {c: (len(a), len(w)) for c, (a, w) in run(pool, probs, sc).items()}
                print(f"# {s} {sc} {time.time() - t:.0f} s", flush=True)
                for c, (a, w) in table[(s, sc)].items():
                    if a:
                        print(f"#   {c!r}: accepted {a}/{len(probs)}, not that answer {w}", flush=True)
        print("pool:", pool.stats)
    return table


if __name__ == "__main__":
    import sys

    sweep(sets=tuple(sys.argv[1:]) or SETS)
