"""STEER weights (Eq. 10 and section 5's ablation mappings) against float64 loop references."""

from __future__ import annotations

import math

import pytest
import torch

from steer.core.weights import scope_max_abs, steer_weights


def _batch(seed: int, b: int = 5, t: int = 11, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    omega = (torch.randn(b, t, generator=g, dtype=torch.float64) * 10 ** (-3 + seed % 3)).to(dtype)
    lengths = torch.randint(0, t + 1, (b,), generator=g).tolist()
    lengths[0] = t
    lengths[1] = 0  # an empty response
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return omega, mask


def _valid(omega, mask):
    return [
        abs(float(omega[i, j])) for i in range(omega.shape[0]) for j in range(omega.shape[1]) if mask[i, j]
    ]


def _ref(omega, mask, mapping, lmin, lmax=1.2, q=0.8, m_override=None, floor=0.0):
    vals = _valid(omega, mask)
    out = [[1.0] * omega.shape[1] for _ in range(omega.shape[0])]
    mx = max(vals) if m_override is None else m_override
    mx = max(mx, floor)
    mn = min(vals)
    srt = sorted(vals)
    pos = q * (len(srt) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(srt) - 1)
    qv = srt[lo] + (srt[hi] - srt[lo]) * (pos - lo)
    for i in range(omega.shape[0]):
        for j in range(omega.shape[1]):
            if not mask[i, j]:
                continue
            a = abs(float(omega[i, j]))
            if mapping == "exp":
                k = -math.log(lmin) / mx
                out[i][j] = min(max(math.exp(-k * a), lmin), 1.0)
            elif mapping == "linear":
                w = lmax - (lmax - lmin) * (a - mn) / (mx - mn)
                out[i][j] = min(max(w, lmin), lmax)
            else:
                out[i][j] = lmin if a > qv else 1.0
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 4, 13])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mapping", ["exp", "linear", "binary"])
def test_mappings_match_reference(seed, dtype, mapping):
    omega, mask = _batch(seed, dtype=dtype)
    lmin = [0.7, 0.5, 0.8][seed % 3]
    got = steer_weights(omega, mask, lambda_min=lmin, mapping=mapping, lambda_max=1.2, quantile=0.8)
    ref = _ref(omega.double(), mask, mapping, lmin)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert torch.allclose(got.double(), ref, atol=tol, rtol=0), (got, ref)
    assert (got[~mask] == 1.0).all()
    if mapping == "exp":
        assert (got >= torch.tensor(lmin, dtype=got.dtype)).all() and (got <= 1).all()


@pytest.mark.parametrize("seed", [1, 6, 21])
def test_largest_token_gets_exactly_lambda_min(seed):
    omega, mask = _batch(seed)
    for lmin in (0.7, 0.8, 0.31):
        w = steer_weights(omega, mask, lambda_min=lmin)
        a = omega.abs().masked_fill(~mask, -1)
        idx = torch.argmax(a)
        assert w.flatten()[idx] == torch.tensor(lmin, dtype=torch.float32)
        assert w.min() == torch.tensor(lmin, dtype=torch.float32)
        # negative omega of the same magnitude is damped identically (|Omega| is used)
        w2 = steer_weights(-omega, mask, lambda_min=lmin)
        assert torch.equal(w, w2)


def test_lambda_min_one_is_bitwise_vanilla():
    omega, mask = _batch(3)
    g = torch.Generator().manual_seed(99)
    loss_mat = torch.randn(omega.shape, generator=g, requires_grad=True)
    for mapping in ("exp", "linear", "binary"):
        # linear maps onto [lambda_min, lambda_max]: it is GRPO only when both are 1
        w = steer_weights(omega, mask, lambda_min=1.0, mapping=mapping, lambda_max=1.0)
        assert torch.equal(w, torch.ones_like(w))
        vanilla = (loss_mat * mask).sum() / mask.sum()
        steer = (loss_mat * w * mask).sum() / mask.sum()
        assert torch.equal(vanilla, steer)
        (gv,) = torch.autograd.grad(vanilla, loss_mat)
        (gs,) = torch.autograd.grad(steer, loss_mat)
        assert torch.equal(gv, gs)


def test_defined_results_on_degenerate_input():
    omega, mask = _batch(5)
    # all masked -> ones, even with NaN padding
    w = steer_weights(torch.full_like(omega, float("nan")), torch.zeros_like(mask))
    assert torch.equal(w, torch.ones_like(w))
    # max |Omega| == 0 -> ones for exp and binary
    for mapping in ("exp", "binary"):
        w = steer_weights(torch.zeros_like(omega), mask, mapping=mapping)
        assert torch.equal(w, torch.ones_like(w))
    # linear with all-equal |Omega| (zero or not): the released code's midpoint
    # (lambda_min + lambda_max) / 2 on valid tokens, 1 on padding
    for value in (0.0, -0.3):
        w = steer_weights(
            torch.full_like(omega, value), mask, mapping="linear", lambda_min=0.7, lambda_max=1.2
        )
        assert torch.equal(w[mask], torch.full_like(w[mask], 0.95))
        assert torch.equal(w[~mask], torch.ones_like(w[~mask]))
    # NaN only on padding is ignored
    pad_nan = omega.masked_fill(~mask, float("nan"))
    assert torch.equal(steer_weights(pad_nan, mask), steer_weights(omega, mask))
    # empty tensor
    e = steer_weights(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool))
    assert e.shape == (0, 4)
    # no mask = every token valid; 0/1 float mask == bool mask
    assert torch.equal(steer_weights(omega, None), steer_weights(omega, torch.ones_like(mask)))
    assert torch.equal(steer_weights(omega, mask.float()), steer_weights(omega, mask))


def test_bad_input_raises():
    omega, mask = _batch(7)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="lambda_min"):
            steer_weights(omega, mask, lambda_min=bad)
    with pytest.raises(ValueError, match="mapping"):
        steer_weights(omega, mask, mapping="cosine")
    with pytest.raises(ValueError, match="mismatched shapes"):
        steer_weights(omega, mask[:, :3])
    with pytest.raises(ValueError, match="non-finite"):
        steer_weights(omega.masked_fill(mask, float("inf")), mask)
    with pytest.raises(ValueError, match="non-finite"):
        scope_max_abs(omega.masked_fill(mask, float("nan")), mask)
    with pytest.raises(ValueError, match="omega_max"):
        steer_weights(omega, mask, omega_max=float("inf"))
    with pytest.raises(ValueError, match="lambda_max"):
        steer_weights(omega, mask, mapping="linear", lambda_min=0.8, lambda_max=0.5)
    with pytest.raises(ValueError, match="quantile"):
        steer_weights(omega, mask, mapping="binary", quantile=1.5)


def test_scope_override_and_floor():
    omega, mask = _batch(8)
    local = scope_max_abs(omega, mask)
    assert float(local) == max(_valid(omega, mask))
    assert float(scope_max_abs(omega, torch.zeros_like(mask))) == 0.0
    # a wider scope's larger max: nobody reaches lambda_min; matches reference with that max
    wide = float(local) * 3
    w = steer_weights(omega, mask, lambda_min=0.7, omega_max=wide)
    assert torch.allclose(w.double(), _ref(omega.double(), mask, "exp", 0.7, m_override=wide), atol=2e-6)
    assert w.min() > 0.7
    # omega_max as a tensor (e.g. after a distributed all-reduce) behaves the same
    assert torch.equal(w, steer_weights(omega, mask, lambda_min=0.7, omega_max=torch.tensor(wide)))
    # the released code's floor max(max|Omega|, 0.02)
    small = omega * 1e-4
    w = steer_weights(small, mask, lambda_min=0.8, max_floor=0.02)
    ref = _ref(small.double(), mask, "exp", 0.8, floor=0.02)
    assert torch.allclose(w.double(), ref, atol=2e-6)
    assert w.min() > 0.99


def test_linear_follows_the_released_code():
    """The released ``compute_token_weights(linear=True)``: no floor, lambda_min = 1 still maps
    onto [1, lambda_max], and a floor with a non-exp mapping is refused."""
    omega, mask = _batch(9)
    w = steer_weights(omega, mask, lambda_min=1.0, mapping="linear", lambda_max=1.2)
    ref = _ref(omega.double(), mask, "linear", 1.0, lmax=1.2)
    assert torch.allclose(w.double(), ref, atol=2e-6)
    assert float(w[mask].max()) == pytest.approx(1.2) and float(w[mask].min()) == pytest.approx(1.0)
    for mapping in ("linear", "binary"):
        with pytest.raises(ValueError, match="max_floor applies to the exp mapping only"):
            steer_weights(omega, mask, mapping=mapping, max_floor=0.02)


def test_binary_fraction_and_detached():
    g = torch.Generator().manual_seed(31)
    omega = torch.randn(1000, generator=g, requires_grad=True)
    w = steer_weights(omega, None, mapping="binary", quantile=0.8, lambda_min=0.7)
    assert not w.requires_grad
    assert int((w == torch.tensor(0.7)).sum()) == 200
