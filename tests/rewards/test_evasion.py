"""Rewards that cannot be evaded and do not accept near misses: answers that always fail
verification, exact values, multi-part golds, an ``Answer:`` line that opens a display block."""

from __future__ import annotations

import pytest

from steer.rewards import ScoreItem, VerifierPool, compute_score
from steer.rewards.dapo import score_dapo
from steer.rewards.extract import hopeless_answer, last_answer_line
from steer.rewards.math_verify_scorer import score_math_verify
from steer.rewards.pool import is_verify_error, verify_error_frac
from steer.rewards.qwen import score_qwen, score_qwen_strict

SCORERS = {"math_verify": score_math_verify, "qwen": score_qwen, "qwen_strict": score_qwen_strict}
ALL = {**SCORERS, "dapo": score_dapo}

#: Answers that make a parser fail on every gold, or run to the time limit.
HOPELESS = {
    "5000 digits": "\\boxed{" + "7" * 5000 + "}",
    "6000 minus signs": "\\boxed{" + "-" * 6000 + "1}",
    "spaced minus signs": "\\boxed{" + "- " * 300 + "1}",
    "nested braces": "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    "nested parentheses": "\\boxed{" + "(" * 200 + "1" + ")" * 200 + "}",
    "huge factorial": "\\boxed{\\frac{1}{100000!}}",
    "answer line of digits": "so\nAnswer: " + "9" * 4400,
}


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(2, timeout=3.0) as p:
        yield p


@pytest.mark.parametrize("name", sorted(HOPELESS))
def test_hopeless_answers_are_wrong_before_parsing_without_replacing_a_worker(pool, name):
    items = [ScoreItem(HOPELESS[name], gold, s) for s in SCORERS for gold in ("12", "\\frac{1}{2004!}")]
    before = dict(pool.stats)
    verdicts = pool.score_batch(items)
    assert [v.correct for v in verdicts] == [False] * len(items)
    assert all(v.reason.startswith("rejected:") for v in verdicts), [v.reason for v in verdicts]
    assert all(v.score == 0.0 for v in verdicts)
    assert not any(is_verify_error(v) for v in verdicts)
    for key in ("timeouts", "deaths", "respawns", "recycled"):
        assert pool.stats[key] == before[key], key
    assert max(v.cpu_seconds for v in verdicts) < 0.5


def test_a_gold_past_a_bound_lifts_it():
    big = "7" * 1200
    assert hopeless_answer(big, "12") is not None
    assert hopeless_answer(big, big) is None
    for name, f in SCORERS.items():
        assert f(f"\\boxed{{{big}}}", big)[0] is True, name
        assert f(f"\\boxed{{{big[:-1]}8}}", big)[0] is False, name


def test_ordinary_text_is_not_hopeless():
    rule = "-" * 80
    assert hopeless_answer(f"Let me think.\n{rule}\nThe answer is 5.", "5", whole_response=True) is None
    assert hopeless_answer("\\frac{\\sqrt{(a+b)^{2}}}{\\left(1+\\left(2\\right)\\right)}", "1") is None
    assert hopeless_answer("5!", "120") is None and hopeless_answer("2024!", "1") is None
    assert score_math_verify(f"Work.\n{rule}\nThe answer is $5$.", "5")[0] is True


def test_a_timeout_and_an_error_score_as_wrong_answers_and_are_counted():
    with VerifierPool(1, timeout=1.0) as p:
        tower = "\\boxed{9^{9^{9^{9}}}}"
        v = p.score_batch(
            [
                ScoreItem(tower, "1", "math_verify"),
                ScoreItem(tower, "1", "dapo"),
                ScoreItem("\\boxed{1}", "1"),
            ]
        )
        d = compute_score("math500", tower, "1", pool=p)
    assert v[0].reason == "timeout" and v[0].score == 0.0 and is_verify_error(v[0])
    assert v[2].correct and not is_verify_error(v[2])
    assert verify_error_frac(v) == pytest.approx(1 / 3)
    assert d["score"] == 0.0 and d["verify_error"] == 1.0


# -- exact values are compared exactly ------------------------------------------------------

TINY_GOLDS = [
    r"\frac{1}{2004!}",
    r"\frac{1}{2^{2012}}",
    r"(\frac{11}{18})^{2012}",
    r"2^{1006}\sqrt{2^{2010}+2}-2^{2011}",
]
TINY_IMPOSTORS = ["0", "10^{-400}", r"\frac{1}{100000!}", "-0"]


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize("gold", TINY_GOLDS)
def test_zero_and_other_tiny_values_are_not_a_tiny_exact_gold(name, gold):
    for wrong in TINY_IMPOSTORS:
        assert SCORERS[name](f"\\boxed{{{wrong}}}", gold)[0] is False, wrong
    assert SCORERS[name](f"\\boxed{{{gold}}}", gold)[0] is True


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize(
    "gold, near",
    [
        ("(2^{2019}-9)^{2018}", "(2^{2019}-8)^{2018}"),
        (r"2025^{1002}/2004!", r"2005^{1002}/2004!"),
        (r"2^{1006}\sqrt{2^{2010}+2}-2^{2011}", "2"),
        (r"\frac{1}{2^{2012}}", r"\frac{1}{2^{2013}}"),
        ("3^{100}+1", "3^{100}+2"),
        ("10^{30}+7", "10^{30}+1"),
        (r"\sqrt{2}+10^{-40}", r"\sqrt{2}"),
    ],
)
def test_one_digit_changes_of_exact_golds_are_wrong(name, gold, near):
    assert SCORERS[name](f"\\boxed{{{near}}}", gold)[0] is False
    assert SCORERS[name](f"\\boxed{{{gold}}}", gold)[0] is True


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize(
    "gold, same",
    [
        (r"\frac{1}{2^{2012}}", "2^{-2012}"),
        (r"(\frac{11}{18})^{2012}", r"\frac{11^{2012}}{18^{2012}}"),
        (r"2^{1006}\sqrt{2^{2010}+2}-2^{2011}", r"2^{1006}(\sqrt{2^{2010}+2}-2^{1005})"),
        ("(2^{2019}-9)^{2018}", "(-9+2^{2019})^{2018}"),
        (r"2\sqrt{2}", r"\sqrt{8}"),
        (r"\frac{\pi}{4}", r"\frac{2\pi}{8}"),
    ],
)
def test_equal_exact_values_are_still_right(name, gold, same):
    assert SCORERS[name](f"\\boxed{{{same}}}", gold)[0] is True


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_decimal_golds_keep_their_tolerance(name):
    f = SCORERS[name]
    assert f(r"\boxed{\frac{1}{2}}", "0.5")[0] is True
    assert f(r"\boxed{0.3333333}", r"0.33333333")[0] is True  # a rounded decimal, 1e-6 relative
    assert f(r"\boxed{0.34}", r"0.33333333")[0] is False


# -- every part of a multi-part or textual gold is checked -----------------------------------

MIN_MAX = r"4122 \text{ (min)}, 6049 \text{ (max)}"


def test_every_value_of_an_annotated_multi_part_gold_counts():
    f = score_math_verify
    for near in (r"4122 \text{ (min)}, 6045 \text{ (max)}", r"4125 \text{ (min)}, 6049 \text{ (max)}"):
        assert f(f"\\boxed{{{near}}}", MIN_MAX)[0] is False, near
    for part in ("4122", "6049", "6045"):
        assert f(f"\\boxed{{{part}}}", MIN_MAX)[0] is False, part
    for whole in ("4122, 6049", "6049, 4122", MIN_MAX):
        assert f(f"\\boxed{{{whole}}}", MIN_MAX)[0] is True, whole
    for name, g in ALL.items():
        assert g(r"\boxed{4122 \text{ (min)}, 6045 \text{ (max)}}", MIN_MAX)[0] is False, name


@pytest.mark.parametrize("name", sorted(ALL))
def test_one_function_of_a_gold_listing_two_is_wrong(name):
    gold = r"f(x)=x \text{ and } f(x)=2-x"
    for one in ("f(x)=x", "f(x)=2-x", r"f(x)=x \text{ and } f(x)=3-x"):
        assert ALL[name](f"\\boxed{{{one}}}", gold)[0] is False, one


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_sentence_is_not_a_number(name):
    for sentence in (r"\text{all } n \geq 2", r"n \geq 2", r"n \geq 2 \text{ and } n \text{ even}"):
        assert ALL[name](f"\\boxed{{{sentence}}}", "2")[0] is False, sentence


@pytest.mark.parametrize(
    "gold, near",
    [
        (r"m_{p}c^{2}(\gamma^{2}-1)\sin^{2}\theta", r"m_{p}c^{2}(\gamma^{2}-9)\sin^{2}\theta"),  # zoo reading
        (r"\lambda_{\text{red}}/\sqrt{2}", r"\lambda_{\text{red}}/\sqrt{0}"),  # read in part
        (r"\frac{1}{3}E_{1}+\frac{2}{3}E_{2}", r"\frac{7}{3}E_{1}+\frac{2}{3}E_{2}"),  # read as 2/3
    ],
)
@pytest.mark.parametrize("name", sorted(SCORERS))
def test_misread_golds_accept_only_themselves(name, gold, near):
    assert SCORERS[name](f"\\boxed{{{near}}}", gold)[0] is False
    assert SCORERS[name](f"\\boxed{{{gold}}}", gold)[0] is True


def test_an_answer_read_as_its_last_number_is_not_that_number():
    assert score_math_verify(r"\boxed{x_{1}+\frac{2}{3}E_{2}}", r"\frac{2}{3}")[0] is False
    assert score_math_verify(r"\boxed{6}", "6m")[0] is True  # math-verify drops the unit m, on purpose


def test_dapo_compares_equations_whole_and_sentences_whole():
    assert score_dapo(r"\boxed{5x-7y+11z+7=0}", "5x-7y+11z+4=0")[0] is False
    assert score_dapo(r"\boxed{5x-7y+11z+4=0}", "5x-7y+11z+4=0")[0] is True
    assert score_dapo("Answer: k = 5", "5")[0] is True
    assert score_dapo(r"Answer: \theta_{1} = 5", "5")[0] is True
    gold = r"f(x)=a x+b$, where $b$ is an integer, and $a$ is a positive integer with $\mho(a)=0"
    assert score_dapo("Answer: " + gold.replace("=0", "=8"), gold)[0] is False
    assert score_dapo("Answer: " + gold, gold)[0] is True
    assert score_dapo("Answer: the answer is $5$", "5")[0] is True


# -- an Answer: line that opens a display block ------------------------------------------------

DISPLAY = [
    ("Answer: \\[\n x = 5\n\\]", "5"),
    ("Answer: \\[\n\\frac{3}{4}\n\\]\nDone.", "\\frac{3}{4}"),
    ("Answer: $$\n(1, 2)\n$$", "(1, 2)"),
    (
        "Answer: \\[\n\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}\n\\]",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    ),
]


def test_an_answer_line_opening_a_display_block_is_read_whole():
    assert last_answer_line("Answer: \\[\n x = 5\n\\]") == "\\[\n x = 5\n\\]"
    assert last_answer_line("Answer: $$\n7\n$$ and more") == "$$\n7\n$$ and more"


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("resp, gold", DISPLAY)
def test_display_block_answers_score(name, resp, gold):
    assert ALL[name](resp, gold)[0] is True
    wrong = resp.replace("5", "6").replace("3", "7").replace("(1, 2)", "(1, 3)")
    assert ALL[name](wrong, gold)[0] is False
