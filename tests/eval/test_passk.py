import math

import pytest

from steer.evaluation.passk import avg_at_k, mean_pass_at_k, pass_at_k


def _closed_form(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_hand_computed_cases():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # pass@1 = c/n
    assert pass_at_k(32, 5, 1) == pytest.approx(5 / 32)
    # n - c < k -> 1
    assert pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 1, 4) == 1.0  # n == k reduces to "any correct"
    assert pass_at_k(10, 0, 3) == 0.0


def test_matches_closed_form_grid():
    for n in range(1, 40):
        for c in range(0, n + 1):
            for k in (1, 2, 3, 8, 16, 32):
                if k > n:
                    continue
                assert pass_at_k(n, c, k) == pytest.approx(_closed_form(n, c, k), abs=1e-12)


def test_large_n_is_stable():
    v = pass_at_k(1000, 3, 500)
    assert v == pytest.approx(_closed_form(1000, 3, 500), rel=1e-10)
    assert 0.0 <= v <= 1.0


def test_mean_and_avg():
    assert mean_pass_at_k([(4, 1), (4, 0)], 2) == pytest.approx(0.25)
    assert avg_at_k([[1, 0, 0, 1], [True, True]]) == pytest.approx((0.5 + 1.0) / 2)
    # avg@k equals the mean unbiased pass@1
    samples = [[1, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert avg_at_k(samples) == pytest.approx(mean_pass_at_k([(4, sum(s)) for s in samples], 1))


@pytest.mark.parametrize("args", [(0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_bad_input(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_empty_inputs():
    with pytest.raises(ValueError):
        avg_at_k([])
    with pytest.raises(ValueError):
        avg_at_k([[1], []])
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)
