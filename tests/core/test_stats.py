"""Token statistics (logp, H, sum p^2, sum p^2 log p) against float64 loop references, with gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from steer.core.stats import default_chunk_rows, token_stats_from_hidden, token_stats_from_logits


def _loop_ref(logits: torch.Tensor, ids: torch.Tensor, temperature: float):
    """Plain Python loops over rows and vocabulary, in float64."""
    rows = logits.double().reshape(-1, logits.shape[-1]).tolist()
    flat_ids = ids.reshape(-1).tolist()
    out = {"logp": [], "entropy": [], "sum_p2": [], "sum_p2_logp": []}
    for row, o in zip(rows, flat_ids):
        z = [x / temperature for x in row]
        m = max(z)
        lse = m + math.log(sum(math.exp(x - m) for x in z))
        logps = [x - lse for x in z]
        h = p2 = s2 = 0.0
        for lp in logps:
            p = math.exp(lp)
            h -= p * lp
            p2 += p * p
            s2 += p * p * lp
        out["logp"].append(logps[o])
        out["entropy"].append(h)
        out["sum_p2"].append(p2)
        out["sum_p2_logp"].append(s2)
    shape = ids.shape
    return {k: torch.tensor(v, dtype=torch.float64).reshape(shape) for k, v in out.items()}


def _padded_batch(seed: int, b: int, t: int, v: int, dtype, scale: float):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    ids = torch.randint(0, v, (b, t), generator=g)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    lengths[0] = t
    lengths[-1] = 0  # an empty response
    mask = torch.arange(t)[None, :] < lengths[:, None]
    ids = ids.masked_fill(~mask, 0)  # padded positions carry token 0, as a collator would
    return logits, ids, mask


def _autograd_ref(x64: torch.Tensor, ids: torch.Tensor, temperature: float, g_lp, g_h):
    z = x64 / temperature
    l = torch.log_softmax(z, -1)
    p = l.exp()
    lp = l.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    h = -(p * l).sum(-1)
    loss = 0
    if g_lp is not None:
        loss = loss + (lp * g_lp).sum()
    if g_h is not None:
        loss = loss + (h * g_h).sum()
    return loss


CASES = [
    # seed, dtype, temperature, chunk_size, V, scale
    (0, torch.float32, 1.0, None, 37, 1.0),
    (1, torch.float32, 0.6, 3, 29, 4.0),
    (2, torch.bfloat16, 1.0, 5, 41, 2.0),
    (3, torch.bfloat16, 1.7, 1, 23, 6.0),
    (4, torch.float16, 0.9, 4, 19, 3.0),
    (5, torch.float64, 1.3, 2, 31, 2.0),
]


@pytest.mark.parametrize("seed,dtype,temperature,chunk,v,scale", CASES)
def test_logits_stats_match_loop_reference(seed, dtype, temperature, chunk, v, scale):
    logits, ids, mask = _padded_batch(seed, 4, 6, v, dtype, scale)
    st = token_stats_from_logits(logits, ids, temperature=temperature, chunk_size=chunk)
    ref = _loop_ref(logits, ids, temperature)
    want_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for name in ("logp", "entropy", "sum_p2", "sum_p2_logp"):
        got = getattr(st, name)
        assert got.dtype == want_dtype and got.shape == ids.shape, name
        assert torch.allclose(got.double(), ref[name], atol=tol, rtol=tol), (name, got, ref[name])
    assert st.logp.requires_grad is False
    # masked mean over valid tokens (what a loss does) is finite with an empty response present
    assert torch.isfinite((st.entropy * mask).sum() / mask.sum())


@pytest.mark.parametrize("seed,dtype,temperature,chunk,v,scale", CASES)
def test_logits_gradients_match_autograd(seed, dtype, temperature, chunk, v, scale):
    logits, ids, _ = _padded_batch(seed + 100, 3, 5, v, dtype, scale)
    g = torch.Generator().manual_seed(seed + 7)
    g_lp = torch.randn(ids.shape, generator=g, dtype=torch.float64)
    g_h = torch.randn(ids.shape, generator=g, dtype=torch.float64)
    for use_lp, use_h in ((True, True), (True, False), (False, True)):
        x = logits.clone().requires_grad_()
        st = token_stats_from_logits(x, ids, temperature=temperature, chunk_size=chunk)
        loss = 0
        if use_lp:
            loss = loss + (st.logp * g_lp.to(st.logp.dtype)).sum()
        if use_h:
            loss = loss + (st.entropy * g_h.to(st.entropy.dtype)).sum()
        (gx,) = torch.autograd.grad(loss, x)
        assert gx.dtype == dtype and gx.shape == x.shape
        x64 = logits.double().requires_grad_()
        ref_loss = _autograd_ref(x64, ids, temperature, g_lp if use_lp else None, g_h if use_h else None)
        (gr,) = torch.autograd.grad(ref_loss, x64)
        if dtype == torch.float64:
            assert torch.allclose(gx, gr, atol=1e-12, rtol=1e-10)
        elif dtype == torch.float32:
            assert torch.allclose(gx.double(), gr, atol=1e-5, rtol=1e-5)
        else:
            # plain autograd in float32 then cast to the logits dtype: equal up to one rounding
            rounded = gr.to(dtype).double()
            ulp = rounded.abs() * (2.0**-7 if dtype == torch.bfloat16 else 2.0**-10) + 1e-6
            assert ((gx.double() - rounded).abs() <= ulp).all()


def test_gradcheck_float64_both_paths():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 7, (5,), generator=g)

    def f_logits(x):
        st = token_stats_from_logits(x, ids, temperature=0.8, chunk_size=2)
        return st.logp, st.entropy

    assert torch.autograd.gradcheck(f_logits, (x,))
    h = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, generator=g, dtype=torch.float64, requires_grad=True)
    ids2 = torch.randint(0, 9, (2, 3), generator=g)

    def f_hidden(h, w, b):
        st = token_stats_from_hidden(h, w, ids2, bias=b, temperature=1.4, chunk_size=4)
        return st.logp, st.entropy

    assert torch.autograd.gradcheck(f_hidden, (h, w, b))


@pytest.mark.parametrize(
    "seed,dtype,temperature,chunk,use_bias",
    [
        (10, torch.float32, 1.0, None, False),
        (11, torch.float32, 0.7, 3, True),
        (12, torch.bfloat16, 1.0, 4, True),
        (13, torch.bfloat16, 1.5, 1, False),
    ],
)
def test_hidden_path_matches_logits_and_autograd(seed, dtype, temperature, chunk, use_bias):
    g = torch.Generator().manual_seed(seed)
    b_, t, d, v = 3, 5, 16, 45
    hidden = torch.randn(b_, t, d, generator=g, dtype=torch.float64).to(dtype)
    weight = (torch.randn(v, d, generator=g, dtype=torch.float64) / 2).to(dtype)
    bias = torch.randn(v, generator=g, dtype=torch.float64).to(dtype) if use_bias else None
    ids = torch.randint(0, v, (b_, t), generator=g)
    logits64 = hidden.double() @ weight.double().T + (bias.double() if use_bias else 0)
    ref = _loop_ref(logits64, ids, temperature)
    hs, ws = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    bs = bias.clone().requires_grad_() if use_bias else None
    st = token_stats_from_hidden(hs, ws, ids, bias=bs, temperature=temperature, chunk_size=chunk)
    for name in ("logp", "entropy", "sum_p2", "sum_p2_logp"):
        got = getattr(st, name)
        assert got.dtype == torch.float32
        assert torch.allclose(got.double(), ref[name], atol=5e-5, rtol=5e-5), name
    g_lp = torch.randn(ids.shape, generator=g, dtype=torch.float64)
    g_h = torch.randn(ids.shape, generator=g, dtype=torch.float64)
    loss = (st.logp * g_lp.float()).sum() + (st.entropy * g_h.float()).sum()
    inputs = (hs, ws) + ((bs,) if use_bias else ())
    grads = torch.autograd.grad(loss, inputs)
    r_inputs = [t_.detach().double().requires_grad_() for t_ in inputs]
    z = r_inputs[0] @ r_inputs[1].T + (r_inputs[2] if use_bias else 0)
    ref_loss = _autograd_ref(z, ids, temperature, g_lp, g_h)
    r_grads = torch.autograd.grad(ref_loss, r_inputs)
    for got, want, inp in zip(grads, r_grads, inputs):
        assert got.dtype == inp.dtype and got.shape == inp.shape
        if dtype == torch.float32:
            assert torch.allclose(got.double(), want, atol=2e-5, rtol=1e-4)
        else:
            rounded = want.to(dtype).double()
            scale = want.abs().max()
            assert ((got.double() - rounded).abs() <= rounded.abs() * 2.0**-6 + 1e-3 * scale).all()


def test_with_sums_false_and_empty_inputs():
    logits, ids, _ = _padded_batch(21, 2, 3, 11, torch.float32, 1.0)
    st = token_stats_from_logits(logits, ids, with_sums=False)
    assert st.sum_p2 is None and st.sum_p2_logp is None
    full = token_stats_from_logits(logits, ids)
    assert torch.equal(st.logp, full.logp) and torch.equal(st.entropy, full.entropy)
    # empty: zero responses, zero-length responses
    for shape in ((0, 11), (2, 0, 11)):
        x = torch.randn(*shape, requires_grad=True)
        e = token_stats_from_logits(x, torch.zeros(shape[:-1], dtype=torch.long))
        assert e.logp.shape == shape[:-1] and e.sum_p2.shape == shape[:-1]
        e.logp.sum().backward()
        assert x.grad.shape == x.shape
    h = torch.randn(0, 4, requires_grad=True)
    w = torch.randn(11, 4, requires_grad=True)
    e = token_stats_from_hidden(h, w, torch.zeros(0, dtype=torch.long))
    (e.logp.sum() + e.entropy.sum()).backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_bad_input_raises_clear_errors():
    logits, ids, _ = _padded_batch(22, 2, 3, 11, torch.float32, 1.0)
    with pytest.raises(ValueError, match="does not match"):
        token_stats_from_logits(logits, ids[:, :2])
    with pytest.raises(ValueError, match="lie in \\[0, 11\\)"):
        token_stats_from_logits(logits, ids + 11)
    with pytest.raises(ValueError, match="lie in \\[0, 11\\)"):
        token_stats_from_logits(logits, ids - 1)
    with pytest.raises(ValueError, match="integer dtype"):
        token_stats_from_logits(logits, ids.float())
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            token_stats_from_logits(logits, ids, temperature=t)
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = logits.clone()
        x[1, 2, 4] = bad
        with pytest.raises(ValueError, match="non-finite logits"):
            token_stats_from_logits(x, ids)
        with pytest.raises(ValueError, match="non-finite"):
            token_stats_from_logits(x.bfloat16(), ids, chunk_size=2)
    with pytest.raises(ValueError, match="floating-point"):
        token_stats_from_logits(ids, ids)
    h, w = torch.randn(2, 3, 4), torch.randn(11, 4)
    with pytest.raises(ValueError, match="do not match"):
        token_stats_from_hidden(h, torch.randn(11, 5), ids)
    with pytest.raises(ValueError, match="bias must have shape"):
        token_stats_from_hidden(h, w, ids, bias=torch.randn(10))
    with pytest.raises(ValueError, match="does not match"):
        token_stats_from_hidden(h, w, ids[:1])
    hn = h.clone()
    hn[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        token_stats_from_hidden(hn, w, ids)
    with pytest.raises(ValueError, match="chunk_size"):
        token_stats_from_logits(logits, ids, chunk_size=0)


class _AllocRecorder(TorchDispatchMode):
    """Records (dtype, numel, op) of every tensor an op returns (covers empty/out= buffers too)."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[torch.dtype, int, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.seen.append((t.dtype, t.numel(), str(func)))
        return out


def test_no_full_float32_copy_of_logits():
    """bf16 logits: no float32 tensor larger than one chunk appears, forward or backward."""
    n, v, chunk = 64, 97, 8
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(n, v, generator=g).bfloat16().requires_grad_()
    ids = torch.randint(0, v, (n,), generator=g)
    rec = _AllocRecorder()
    with rec:
        st = token_stats_from_logits(logits, ids, chunk_size=chunk)
        (st.logp.sum() + st.entropy.sum()).backward()
    big32 = [s for s in rec.seen if s[0] in (torch.float32, torch.float64) and s[1] > chunk * v]
    assert not big32, big32
    # the only (N, V)-sized tensor is the gradient, in bf16
    full = [s for s in rec.seen if s[1] >= n * v]
    assert full and all(s[0] == torch.bfloat16 for s in full), full


def test_hidden_path_never_forms_full_logits():
    n, d, v, chunk = 48, 8, 101, 6
    g = torch.Generator().manual_seed(6)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = torch.randn(v, d, generator=g, requires_grad=True)
    ids = torch.randint(0, v, (n,), generator=g)
    rec = _AllocRecorder()
    with rec:
        st = token_stats_from_hidden(h, w, ids, chunk_size=chunk)
        (st.logp.sum() - st.entropy.sum()).backward()
    assert max(s[1] for s in rec.seen) < n * v
    assert h.grad is not None and w.grad is not None


def test_default_chunk_rows():
    assert default_chunk_rows(151936) >= 1
    assert default_chunk_rows(151936) * 151936 <= 1 << 22
    assert default_chunk_rows(10, hidden=True) >= 256


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sliced_logits_are_not_copied(dtype):
    """logits[:, :-1, :] (not viewable as (N, V)) gives the same values and gradients, with no copy."""
    g = torch.Generator().manual_seed(77)
    b, t, v = 3, 7, 53
    full = (torch.randn(b, t + 1, v, generator=g) * 2).to(dtype).requires_grad_()
    ids = torch.randint(0, v, (b, t), generator=g)
    sliced = full[:, :-1, :]
    with pytest.raises(RuntimeError):
        sliced.view(-1, v)  # the case this test is about
    rec = _AllocRecorder()
    with rec:
        st = token_stats_from_logits(sliced, ids, chunk_size=4, temperature=0.9)
    assert max(s[1] for s in rec.seen) < b * t * v  # nothing of the full size in the forward
    ref = _loop_ref(sliced.detach(), ids, 0.9)
    for name in ("logp", "entropy", "sum_p2", "sum_p2_logp"):
        assert torch.allclose(getattr(st, name).double(), ref[name], atol=2e-5, rtol=2e-5), name
    (st.logp.sum() + 0.5 * st.entropy.sum()).backward()
    x64 = sliced.detach().double().requires_grad_()
    gl = torch.ones(b, t, dtype=torch.float64)
    (gr,) = torch.autograd.grad(_autograd_ref(x64, ids, 0.9, gl, 0.5 * gl), x64)
    got = full.grad[:, :-1, :].double()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(got, gr, atol=tol, rtol=tol)
    assert (full.grad[:, -1, :] == 0).all()


def test_hidden_path_low_precision_matmul():
    """matmul_dtype=bf16: the same as the logits path on the bf16 GEMM's logits, grads vs autograd."""
    g = torch.Generator().manual_seed(88)
    n, d, v = 37, 32, 71
    hidden = torch.randn(n, d, generator=g).bfloat16()
    weight = (torch.randn(v, d, generator=g) / 4).bfloat16()
    bias = torch.randn(v, generator=g).bfloat16()
    ids = torch.randint(0, v, (n,), generator=g)
    hs, ws, bs = (t.clone().requires_grad_() for t in (hidden, weight, bias))
    st = token_stats_from_hidden(
        hs, ws, ids, bias=bs, chunk_size=8, temperature=0.8, matmul_dtype=torch.bfloat16
    )
    # reference: the bf16 GEMM materialised (as a bf16 model computes its logits), then plain autograd
    hr, wr, br = (t.clone().requires_grad_() for t in (hidden, weight, bias))
    logits = torch.addmm(br, hr, wr.t())
    ref = _loop_ref(logits.detach(), ids, 0.8)
    for name in ("logp", "entropy", "sum_p2", "sum_p2_logp"):
        # the chunked and the full bf16 GEMM may round a few logits differently (1 bf16 ulp)
        assert torch.allclose(getattr(st, name).double(), ref[name], atol=0.05, rtol=0.02), name
    g_lp = torch.randn(n, generator=g)
    g_h = torch.randn(n, generator=g)
    (st.logp * g_lp + st.entropy * g_h).sum().backward()
    z = logits.float() / 0.8
    l = torch.log_softmax(z, -1)
    lp = l.gather(-1, ids[:, None]).squeeze(-1)
    h = -(l.exp() * l).sum(-1)
    (lp * g_lp + h * g_h).sum().backward()
    for got, want in ((hs.grad, hr.grad), (ws.grad, wr.grad), (bs.grad, br.grad)):
        assert got.dtype == torch.bfloat16
        err = (got.double() - want.double()).abs().max()
        assert err <= 0.03 * want.double().abs().max() + 1e-3, float(err)
    with pytest.raises(ValueError, match="matmul_dtype"):
        token_stats_from_hidden(hidden, weight, ids, matmul_dtype=torch.int8)
    # the GEMMs really run in bf16 with the option, and in float32 without it
    for md, want in ((torch.bfloat16, torch.bfloat16), (None, torch.float32)):
        rec = _AllocRecorder()
        with rec:
            token_stats_from_hidden(hidden, weight, ids, bias=bias, chunk_size=8, matmul_dtype=md)
        gemm = {s[0] for s in rec.seen if "mm" in s[2]}
        assert gemm == {want}, (md, gemm)
