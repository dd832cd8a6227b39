"""steer_directional (the project's own variant): only entropy-decreasing tokens (Omega < 0) are
damped, against a float64 loop reference, with padding, empty responses and equal-reward groups."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from steer.core import registry as R
from steer.core.errors import NonFiniteError
from steer.core.weights import directional_weights
from tests.core.test_parts import _split_loss_and_grad
from tests.core.test_registry import loss_batch, rollout


def _omega(seed: int, b: int = 6, t: int = 9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    omega = torch.randn(b, t, generator=g, dtype=torch.float64).to(dtype) * 1e-3
    omega[2] = 0.0  # e.g. an equal-reward group: A = 0, Omega = 0
    mask = torch.rand(b, t, generator=g) > 0.25
    mask[0] = False  # an empty response
    return omega, mask


def ref_directional(omega, mask, lmin, mapping, rho=0.2, dmax=None):
    cells = [(i, j) for i in range(omega.shape[0]) for j in range(omega.shape[1]) if mask[i, j]]
    neg = [c for c in cells if float(omega[c]) < 0]
    out = [[1.0] * omega.shape[1] for _ in range(omega.shape[0])]
    if not neg:
        return torch.tensor(out, dtype=torch.float64)
    d = {c: -float(omega[c]) for c in neg}
    if mapping == "exp":
        m = max(d.values()) if dmax is None else dmax
        k = -math.log(lmin) / m
        for c in neg:
            out[c[0]][c[1]] = lmin if d[c] >= m else min(max(math.exp(-k * d[c]), lmin), 1.0)
    else:
        n_sel = min(max(math.ceil(rho * len(neg)), 1), len(neg))
        for c in sorted(neg, key=lambda c: -d[c])[:n_sel]:
            out[c[0]][c[1]] = lmin
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 3, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mapping", ["exp", "quantile"])
def test_weights_match_reference(seed, dtype, mapping):
    omega, mask = _omega(seed, dtype=dtype)
    lmin = [0.7, 0.5, 0.85][seed % 3]
    got = directional_weights(omega, mask, lambda_min=lmin, mapping=mapping, rho=0.3)
    ref = ref_directional(omega.double(), mask, lmin, mapping, rho=0.3)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert torch.allclose(got.double(), ref, atol=tol, rtol=0)
    # non-negative Omega and padding keep exactly 1; the most negative gets exactly lambda_min
    assert bool((got[(omega >= 0) | ~mask] == 1).all())
    idx = torch.argmin(torch.where(mask, omega, torch.zeros((), dtype=omega.dtype)))
    assert got.flatten()[idx] == torch.tensor(lmin, dtype=got.dtype)


def test_degenerate_inputs_and_errors():
    omega, mask = _omega(1)
    assert torch.equal(directional_weights(omega.abs(), mask), torch.ones_like(omega))  # no negative token
    assert torch.equal(directional_weights(omega, torch.zeros_like(mask)), torch.ones_like(omega))
    assert torch.equal(directional_weights(omega, mask, lambda_min=1.0), torch.ones_like(omega))
    # a wider scope's larger max: nobody reaches lambda_min
    wide = float((-omega[mask]).max()) * 4
    w = directional_weights(omega, mask, omega_neg_max=wide)
    assert torch.allclose(w.double(), ref_directional(omega, mask, 0.7, "exp", dmax=wide), atol=1e-12)
    assert float(w.min()) > 0.7
    with pytest.raises(ValueError, match="mapping"):
        directional_weights(omega, mask, mapping="linear")
    with pytest.raises(ValueError, match="rho"):
        directional_weights(omega, mask, mapping="quantile", rho=0.0)
    with pytest.raises(NonFiniteError):
        directional_weights(omega.masked_fill(mask, float("nan")), mask)
    with pytest.raises(ValueError, match="scope"):
        R.build_method("steer_directional", mapping="quantile")


def test_method_damps_only_entropy_decreasing_tokens_against_loops():
    m = R.build_method("steer_directional", lambda_min=0.6)
    rb, g = rollout(21)
    lb = loss_batch(rb, m.compute_advantages(rb), g, dtype=torch.float64)
    tl = m.token_loss(lb)
    mask = lb.response_mask
    # float64 loop: Eq. 7 Omega with w = I_clip r A (clip 0.2/0.28, dual clip 10)
    om = torch.zeros(mask.shape, dtype=torch.float64)
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if not mask[i, j]:
                continue
            lp, olp = float(lb.logp.detach()[i, j]), float(lb.old_logp[i, j])
            a, h = float(lb.advantages[i, j]), float(lb.entropy.detach()[i, j])
            r = math.exp(lp - olp)
            blocked = (a > 0 and r > 1.28) or (a < 0 and r < 0.8) or (a < 0 and r > 10.0)
            w = 0.0 if blocked else r * a
            p = math.exp(lp)
            om[i, j] = -lb.lr * w * (1 - p) ** 2 * (lp + h)
    ref = ref_directional(om, mask, 0.6, "exp")
    assert torch.allclose(tl.weight.double(), ref, rtol=1e-9, atol=1e-12)
    assert bool((ref[mask & (om < 0)] < 1).any()) and bool((tl.weight[mask & (om > 0)] == 1).all())
    met = m.compute_loss(lb)[1]
    assert met["steer_directional/neg_frac"] == pytest.approx(
        float((mask & (om < 0)).sum()) / float(mask.sum())
    )


def test_minibatch_scope_hook():
    m = R.build_method("steer_directional")
    rb, g = rollout(22, b=24)
    adv = torch.randn(rb.response_mask.shape, generator=g, dtype=torch.float64)
    adv = torch.where(rb.response_mask, adv, torch.zeros((), dtype=adv.dtype))
    lb = loss_batch(rb, adv, g, dtype=torch.float64)
    n_tok, n_seq = float(lb.response_mask.sum()), float(lb.response_mask.shape[0])
    whole, _ = m.compute_loss(dataclasses.replace(lb, global_num_tokens=n_tok, global_num_seqs=n_seq))
    (g_whole,) = torch.autograd.grad(whole, lb.logp)
    split = [slice(0, 8), slice(8, 16), slice(16, 24)]
    total, g_split, stats = _split_loss_and_grad(m, lb, split, n_tok, n_seq, hook=True)
    assert set(stats[0]) == {"omega_neg_max"}
    torch.testing.assert_close(g_split, g_whole, rtol=1e-10, atol=1e-15)
    _, g_local, _ = _split_loss_and_grad(m, lb, split, n_tok, n_seq, hook=False)
    assert not torch.allclose(g_local, g_whole, rtol=1e-6, atol=0)
