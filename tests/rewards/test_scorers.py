"""Scorer functions called directly (no pool): extraction, math-verify pitfalls (spec §1), DAPO
and Qwen-style rules (spec §2)."""

import pytest

from steer.rewards.dapo import normalize_final_answer, score_dapo
from steer.rewards.extract import clean_gold, last_answer_line, last_boxed, strip_math_delims, truncate_tail
from steer.rewards.math_verify_scorer import score_math_verify
from steer.rewards.qwen import answers_equal, extract_answer, normalize, score_qwen
from steer.rewards.registry import default_scorer, get_scorer, list_scorers


def test_extract_helpers():
    assert last_boxed(r"a \boxed{1} b \boxed{\frac{1}{2}} c") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{\frac{1}{2") is None  # unbalanced
    assert last_boxed(r"so \boxed 7 done") == "7"
    assert last_boxed("none") is None
    assert last_answer_line("x\nAnswer: 12\nmore\nanswer:  $5$ ") == "$5$"
    assert last_answer_line("nothing") is None
    assert strip_math_delims("$$\\frac12$$.") == "\\frac12"
    assert strip_math_delims("**42**") == "42"
    assert truncate_tail("abcdef", 3) == "def"
    with pytest.raises(ValueError):
        truncate_tail("abc", 0)
    assert clean_gold(r"(-\infty, 0) \cup\{1\}$.") == r"(-\infty, 0) \cup\{1\}"


@pytest.mark.parametrize(
    "resp,gold,ok",
    [
        (r"so $\boxed{\frac{1}{2}}$", r"\frac12", True),
        (r"\boxed{0.5}", r"\frac{1}{2}", True),
        (r"\boxed{2\sqrt{3}}", r"2\sqrt{3}", True),  # raw gold would mis-parse as 2 (spec §1)
        (r"\boxed{2}", r"2\sqrt{3}", False),
        (r"\boxed{[-2,7]}", "[-2,7]", True),
        (r"\boxed{(1,2)}", "(2,1)", False),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)", True),
        (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", True),
        (r"\boxed{\frac{270}7}", r"\frac{270}7", True),
        ("work\nAnswer: 540", "540", True),
        ("work\nAnswer: $540$", "540", True),
        ("work\nAnswer: 541", "540", False),
        # boxed preferred over a later plain number / Answer line
        (r"the answer is \boxed{5}. Then 7 more. Answer: 7", "5", True),
        (r"I guess $x = 3$ and \boxed{4}", "3", False),
        ("027", "27", True),
        ("no number here", "5", False),
    ],
)
def test_math_verify_cases(resp, gold, ok):
    got, pred, reason = score_math_verify(resp, gold)
    assert got is ok, (pred, reason)
    assert reason in ("ok", "mismatch", "no answer")


def test_math_verify_gold_first():
    # verify(gold, pred) is asymmetric; an equation-chain prediction still matches an integer gold
    assert score_math_verify(r"\boxed{x=5}", "5")[0]


def test_dapo_rules():
    assert score_dapo("...\nAnswer: 540", "540")[0]
    assert score_dapo("...\nAnswer: $540$.", "540")[0]
    assert score_dapo("...\nAnswer: 1,000", "1000")[0]
    assert not score_dapo("...\nAnswer: 541", "540")[0]
    # only the last 300 characters are read
    far = "Answer: 540\n" + "x" * 400
    assert score_dapo(far, "540") == (False, None, "no answer")
    # boxed fallback (DAPO-Math-17k prompts ask for \boxed{})
    assert score_dapo(r"so \boxed{34}", "34")[0]
    assert normalize_final_answer(r"x = \text{5 dollars}") == "5"
    assert get_scorer("dapo").reward_wrong == -1.0


@pytest.mark.parametrize(
    "pred,ref,ok",
    [
        ("0.5", r"\frac{1}{2}", True),
        ("50", "0.5", True),  # percentage leniency: ref*100
        ("0.005", "0.5", True),  # ref/100
        ("1.00005", "1", False),  # integers compare exactly
        ("2042223", "2042222", False),
        ("18.0", "18", True),
        ("0.3333", r"\frac{1}{3}", False),  # 1e-6 relative for non-integers (published: 1e-4)
        ("0.3333333", r"\frac{1}{3}", True),
        ("1.001", "1", False),
        ("(1,2)", "(1,2)", True),
        ("(2,1)", "(1,2)", False),  # order-sensitive
        ("(-2,7]", "[-2,7]", False),  # interval bracket kinds must match
        ("[-2,7]", "[-2,7]", True),
        (r"3\sqrt{2}", r"\sqrt{18}", True),
        ("3x+4y+14=0", "-3x-4y-14=0", True),  # equation up to sign
        (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1.0\\2\end{pmatrix}", True),
    ],
)
def test_qwen_equal(pred, ref, ok):
    assert answers_equal(normalize(pred), normalize(ref)) is ok


def test_qwen_extraction_and_normalise():
    assert extract_answer("The final answer is $7$. I hope it is correct.") == "7"
    assert extract_answer(r"blah \boxed{\dfrac{1}{2}}") == r"\dfrac{1}{2}"
    assert extract_answer("so the answer is 12.") == "12"
    assert extract_answer("x\nAnswer: 9") == "9"
    assert extract_answer("first 3 then 4") == "4"  # last number
    assert normalize(r"12\text{ cm}") == "12"
    assert normalize(r"x = \dfrac12") == r"\frac{1}{2}"
    assert normalize(r"30^\circ") == "30"
    assert normalize(r"\$18.90") == "18.90"
    assert normalize("1,000") == "1000"
    assert score_qwen(r"\boxed{10\%}", "10")[0]


def test_registry():
    assert list_scorers() == ["dapo", "math_verify", "qwen", "qwen_strict"]
    assert default_scorer("math_dapo") == "dapo"
    assert default_scorer("aime_2024_dapo_boxed") == "math_verify"
    assert default_scorer(None) == "math_verify"
    with pytest.raises(ValueError, match="valid"):
        get_scorer("nope")


# -- comparison rules that a policy could exploit, or that rejected right answers ----------------

ALL = ("math_verify", "dapo", "qwen", "qwen_strict")


def _score(name, resp, gold):
    return get_scorer(name).load()(resp, gold)[0]


@pytest.mark.parametrize("name", ["math_verify", "qwen", "qwen_strict"])
@pytest.mark.parametrize(
    "universal", [r"\infty", r"-\infty", "10^{400}", "-10^{400}", "100000!", r"\infty^{\infty}", "10^{10^{5}}"]
)
@pytest.mark.parametrize(
    "gold", ["5", "2042222", r"\frac{1}{3}", r"2\sqrt{3}", "x^2+1", "(1,2)", r"10^{399}", r"\lfloor \frac{n}{2} \rfloor"]
)
def test_infinite_or_huge_answers_are_wrong(name, universal, gold):
    assert not _score(name, f"The answer is \\boxed{{{universal}}}", gold)


def test_same_infinity_is_right():
    for name in ("math_verify", "qwen"):
        assert _score(name, r"\boxed{\infty}", r"\infty")
        assert not _score(name, r"\boxed{-\infty}", r"\infty")


@pytest.mark.parametrize("name", ["qwen", "qwen_strict"])
def test_qwen_integers_exact_and_tolerance(name):
    assert not _score(name, r"\boxed{2042223}", "2042222")
    assert _score(name, r"\boxed{2042222}", "2042222")
    assert _score(name, r"\boxed{2042222.0}", "2042222")
    assert not _score(name, r"\boxed{0.3333}", r"\frac{1}{3}")
    assert not _score(name, r"\boxed{2042222+10^{-30}}", "2042222")


def test_percentage_leniency_is_an_option():
    # the published Qwen grader accepts ref*100 and ref/100; qwen_strict does not
    assert _score("qwen", r"\boxed{1800}", "18") and _score("qwen", r"\boxed{0.18}", "18")
    assert not _score("qwen_strict", r"\boxed{1800}", "18")
    assert not _score("qwen_strict", r"\boxed{0.18}", "18")
    assert _score("qwen_strict", r"\boxed{18\%}", "18")  # the sign itself is still read
    for name in ("math_verify", "dapo"):
        assert not _score(name, r"\boxed{1800}", "18")


@pytest.mark.parametrize("name", ["math_verify", "qwen", "qwen_strict"])
def test_gold_that_carries_its_own_box_is_unwrapped(name):
    assert _score(name, r"so \boxed{12}", r"The answer is $\boxed{12}$.")
    assert not _score(name, r"so \boxed{13}", r"The answer is $\boxed{12}$.")


MULTILINE_GOLD = "\\begin{pmatrix}1\\\\\n2\\end{pmatrix}"


@pytest.mark.parametrize("name", ["math_verify", "qwen", "qwen_strict"])
def test_multiline_answer_line_is_read_whole(name):
    assert _score(name, f"work\nAnswer: {MULTILINE_GOLD}", MULTILINE_GOLD)
    assert not _score(name, "work\nAnswer: \\begin{pmatrix}1\\\\\n3\\end{pmatrix}", MULTILINE_GOLD)


def test_answer_line_stays_one_line_when_closed():
    assert last_answer_line("Answer: 5\nThat is all {") == "5"
    assert last_answer_line("Answer: $\\frac{1}{2}\n$ ok") == "$\\frac{1}{2}\n$ ok"


@pytest.mark.parametrize("name", ALL)
def test_escaped_braces_do_not_count(name):
    gold = r"\left\{1,2\right."
    assert last_boxed(r"so \boxed{\left\{1,2\right.} done") == gold
    assert last_boxed(r"\boxed{\{1,2\}}") == r"\{1,2\}"
    assert _score(name, r"so \boxed{\left\{1,2\right.}", gold)


@pytest.mark.parametrize("name", ALL)
def test_final_period_after_answer_line(name):
    assert _score(name, "work\nAnswer: 18.", "18")
    assert not _score(name, "work\nAnswer: 19.", "18")


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("18 dollars", "18"),
        (r"18\text{ dollars}", "18"),
        (r"276\,000", "276000"),
        ("276{,}000", "276000"),
        ("45°", "45"),
        (r"45^\circ", "45"),
        (r"0.\overline{3}", r"\frac{1}{3}"),
        (r"1.2\overline{34}", r"\frac{611}{495}"),
    ],
)
def test_math_verify_plain_forms(pred, gold):
    assert score_math_verify(f"\\boxed{{{pred}}}", gold)[0]
    assert score_math_verify(f"\\boxed{{{gold}}}", pred)[0]  # the gold side too
    assert not score_math_verify(r"\boxed{17}", pred)[0]


def test_math_verify_integers_exact():
    assert not score_math_verify(r"\boxed{2042223}", "2042222")[0]
    assert not score_math_verify(r"\boxed{5.0000001}", "5")[0]
    assert score_math_verify(r"\boxed{2042222.0}", "2042222")[0]
