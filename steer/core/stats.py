"""Per-token statistics of the next-token distribution, in one chunked pass (paper Eq. 2-3, spec §13.1).

For every token position with logits ``x`` (over the vocabulary V), temperature ``T`` and sampled
token ``o``, with ``z = x / T`` and ``pi = softmax(z)``:

- ``logp = log pi_o = z_o - logsumexp(z)`` (the numerator of Eq. 2's ratio, in log space);
- ``entropy = H = -sum_v pi_v log pi_v`` (Eq. 3, full vocabulary);
- ``sum_p2 = P2 = sum_v pi_v^2`` and ``sum_p2_logp = S2 = sum_v pi_v^2 log pi_v`` (what the
  ``exact`` entropy-change estimator of spec §13.1 needs: ``sum_j pi_j^2 (log pi_j + H) = S2 + H P2``).

How it is computed: rows are processed ``chunk_size`` at a time. Each chunk is upcast to float32
into one of two reusable work buffers of shape ``(chunk_size, V)``; the shifted logits
``s = z - max z`` and ``e = exp(s)`` give ``Z = sum e``, ``logp = s_o - log Z``,
``H = log Z - sum(e s) / Z``, ``P2 = sum(e^2) / Z^2`` and ``S2 = (sum(e^2 s) - log Z sum e^2) / Z^2``.
No float32 copy of the whole ``(N, V)`` is ever held: the extra memory is two chunks plus O(N).

Gradients (``logp`` and ``entropy`` only; the sums are detached) come from custom autograd
functions that recompute each chunk in the backward pass, with
``d logp_o / dz = e_o - pi`` and ``dH / dz_k = -pi_k (log pi_k + H)``. The logits path returns a
gradient in the logits' dtype; the hidden-state path (:func:`token_stats_from_hidden`) never forms
the ``(N, V)`` logits at all and accumulates the gradients of ``hidden``, ``weight`` and ``bias``
chunk by chunk, the way fused LM-head losses do.

Outputs are float32 (float64 when the inputs are float64).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steer.core.errors import NonFiniteError
from steer.core.types import TokenStats

__all__ = ["default_chunk_rows", "token_stats_from_hidden", "token_stats_from_logits"]

#: Elements (rows x vocab) per float32 work buffer for the logits path (4 MiB each): two small
#: buffers stay cache-friendly (see docs/core.md, "Chunk size", for the measurement).
_LOGITS_CHUNK_ELEMS = 1 << 20
#: Elements per work buffer for the hidden-state path: larger, so each GEMM has enough rows
#: (at least 256 rows; picked from a quick development timing on CPU).
_HIDDEN_CHUNK_ELEMS = 1 << 24
_HIDDEN_MIN_ROWS = 256


def default_chunk_rows(vocab: int, hidden: bool = False) -> int:
    """Rows per chunk used when ``chunk_size`` is None.

    Logits path: about 4 MiB of float32 per work buffer (two buffers). Hidden-state path: about
    64 MiB per buffer, but at least 256 rows (155 MiB per buffer at V = 151936).
    """
    if hidden:
        return max(_HIDDEN_MIN_ROWS, _HIDDEN_CHUNK_ELEMS // max(vocab, 1))
    return max(1, _LOGITS_CHUNK_ELEMS // max(vocab, 1))


def _work_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if any(d == torch.float64 for d in dtypes) else torch.float32


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def _check_ids(token_ids: Tensor, lead_shape: torch.Size, vocab: int, what: str) -> Tensor:
    if not isinstance(token_ids, Tensor):
        raise ValueError("token_ids must be a tensor of integer token ids")
    if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
        raise ValueError(f"token_ids must have an integer dtype, got {token_ids.dtype}")
    if tuple(token_ids.shape) != tuple(lead_shape):
        raise ValueError(
            f"token_ids shape {tuple(token_ids.shape)} does not match the leading shape "
            f"{tuple(lead_shape)} of {what}"
        )
    ids = token_ids.reshape(-1).long()
    if ids.numel() > 0:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(f"token_ids must lie in [0, {vocab}); got values in [{lo}, {hi}]")
    return ids


def _check_finite(logp: Tensor, entropy: Tensor, what: str) -> None:
    bad = ~(torch.isfinite(logp) & torch.isfinite(entropy))
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise NonFiniteError(
            f"non-finite {what} (NaN or +-inf) in {int(bad.sum())} row(s), first rows {rows}; "
            "token statistics need finite logits",
            name=what,
            count=int(bad.sum()),
        )


def _reduce_chunk_into(a, b, ids, with_sums, m, s, e, shift, log_z, out) -> None:
    """``_reduce_chunk`` on rows ``s:e`` and store its results (and the row max ``m``) in place."""
    lz, lp, h, p2, s2 = _reduce_chunk(a, b, ids, with_sums)
    shift[s:e] = m.squeeze(1)
    log_z[s:e] = lz
    out[0][s:e] = lp
    out[1][s:e] = h
    if with_sums:
        out[2][s:e] = p2
        out[3][s:e] = s2


def _reduce_chunk(
    a: Tensor, b: Tensor, ids: Tensor, with_sums: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """``a`` holds shifted scaled logits s = z - max z (it is overwritten); ``b`` is scratch.

    Returns logZ, logp, H, P2, S2 of the chunk's rows.
    """
    s_o = a.gather(1, ids.unsqueeze(1)).squeeze(1)
    torch.exp(a, out=b)  # e
    z = b.sum(-1)
    log_z = z.log()
    a.mul_(b)  # e * s
    h = log_z - a.sum(-1) / z
    logp = s_o - log_z
    p2 = s2 = None
    if with_sums:
        a.mul_(b)  # e^2 s
        sum_e2s = a.sum(-1)
        b.mul_(b)  # e^2
        sum_e2 = b.sum(-1)
        z2 = z * z
        p2 = sum_e2 / z2
        s2 = (sum_e2s - log_z * sum_e2) / z2
    return log_z, logp, h, p2, s2


def _grad_chunk(
    a: Tensor,
    b: Tensor,
    rows: slice,
    ids: Tensor,
    log_z: Tensor,
    h: Tensor,
    g_lp: Tensor | None,
    g_h: Tensor | None,
    inv_t: float,
    out: Tensor | None = None,
) -> Tensor:
    """``a`` holds s = z - max z of the chunk ``rows`` (of the per-row ``ids`` ... ``g_h``); returns
    d(loss)/dx of the chunk (in ``out`` if given, else in ``a``).

    d/dz = g_lp (e_o - pi) - g_h pi (log pi + H) and d/dx = d/dz / T. With pi = exp(s) / Z and
    log pi = s - log Z this is exp(s) * (gamma * s + delta) + e_o g_lp / T per row, where
    gamma = -g_h / (T Z) and delta = -(g_lp + g_h (H - log Z)) / (T Z); ``b`` is scratch.
    """
    ids, log_z, h = ids[rows], log_z[rows], h[rows]
    g_lp = None if g_lp is None else g_lp[rows]
    g_h = None if g_h is None else g_h[rows]
    torch.exp(a, out=b)  # exp(s); Z >= 1 because s <= 0 with equality at the max
    inv_zt = torch.exp(-log_z) * inv_t
    beta = torch.zeros_like(log_z) if g_lp is None else g_lp.clone()
    if g_h is not None:
        beta.add_(g_h * (h - log_z))
        a.mul_((-g_h * inv_zt).unsqueeze(1)).add_((-beta * inv_zt).unsqueeze(1))
        res = torch.mul(a, b, out=out) if out is not None else a.mul_(b)
    else:
        res = torch.mul(b, (-beta * inv_zt).unsqueeze(1), out=out if out is not None else a)
    if g_lp is not None:
        res.scatter_add_(1, ids.unsqueeze(1), (inv_t * g_lp).unsqueeze(1).to(res.dtype))
    return res


def _row_blocks(x: Tensor) -> list[Tensor]:
    """2-D ``(rows, V)`` views covering the rows of ``x (..., V)`` in order, without copying.

    A sliced tensor such as ``logits[:, :-1, :]`` cannot be viewed as ``(N, V)``; it is then split
    along its leading dims into blocks that can (one per sequence for a ``(B, T, V)`` slice).
    """
    v = x.shape[-1]
    try:
        return [x.view(-1, v)]
    except RuntimeError:
        pass
    if x.dim() <= 2:
        return [x]
    blocks: list[Tensor] = []
    for i in range(x.shape[0]):
        blocks.extend(_row_blocks(x[i]))
    return blocks


def _row_chunks(x: Tensor, c: int):
    """Yield (start, end, rows) over the flattened rows of ``x``, ``c`` rows at a time (block-wise)."""
    off = 0
    for blk in _row_blocks(x):
        nb = blk.shape[0]
        for s in range(0, nb, c):
            e = min(s + c, nb)
            yield off + s, off + e, blk[s:e]
        off += nb


def _chunk_buffers(rows: int, n: int, v: int, dtype: torch.dtype, device) -> tuple[int, Tensor, Tensor]:
    """The chunk size ``c`` (``rows``, at most ``n``, at least 1) and two ``(c, V)`` work buffers."""
    c = min(rows, max(n, 1))
    return c, torch.empty(c, v, dtype=dtype, device=device), torch.empty(c, v, dtype=dtype, device=device)


def _forward_outputs(
    n: int, with_sums: bool, dtype: torch.dtype, device
) -> tuple[list[Tensor], Tensor, Tensor]:
    """A forward pass's ``(N,)`` results ``[logp, H]`` (``+ [P2, S2]`` with sums), row shifts, logZ."""
    out = [torch.empty(n, dtype=dtype, device=device) for _ in range(4 if with_sums else 2)]
    return out, torch.empty(n, dtype=dtype, device=device), torch.empty(n, dtype=dtype, device=device)


def _shift_scale(a: Tensor, x: Tensor, m: Tensor, inv_t: float) -> None:
    """``a = (x - m) * inv_t`` in ``a``'s (work) dtype; ``x`` may be ``a`` itself."""
    if x.dtype == a.dtype:
        torch.sub(x, m, out=a)
    else:
        a.copy_(x)
        a.sub_(m)
    if inv_t != 1.0:
        a.mul_(inv_t)


def _forward_result(ctx, out: list[Tensor], with_sums: bool) -> tuple[Tensor, ...]:
    """The forward's outputs; the sums are not differentiable (the backward takes logp and H only)."""
    ctx.set_materialize_grads(False)
    res = tuple(out)
    if with_sums:
        ctx.mark_non_differentiable(res[2], res[3])
    return res


class _LogitsStats(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, ids: Tensor, inv_t: float, rows: int, with_sums: bool):
        v = logits.shape[-1]
        n = ids.numel()
        wd = _work_dtype(logits.dtype)
        out, shift, log_z = _forward_outputs(n, with_sums, wd, logits.device)
        c, buf_a, buf_b = _chunk_buffers(rows, n, v, wd, logits.device)
        for s, e, x in _row_chunks(logits, c):
            a, b = buf_a[: e - s], buf_b[: e - s]
            m = x.amax(-1, keepdim=True).to(wd)
            _shift_scale(a, x, m, inv_t)
            _reduce_chunk_into(a, b, ids[s:e], with_sums, m, s, e, shift, log_z, out)
        _check_finite(out[0], out[1], "logits")
        ctx.save_for_backward(logits, ids, shift, log_z, out[1].clone())
        ctx.inv_t, ctx.rows = inv_t, rows
        return _forward_result(ctx, out, with_sums)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lp, g_h, *_):
        logits, ids, shift, log_z, h = ctx.saved_tensors
        if not ctx.needs_input_grad[0] or (g_lp is None and g_h is None):
            return None, None, None, None, None
        v = logits.shape[-1]
        n = ids.numel()
        wd = shift.dtype
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        grad2d = grad.view(-1, v)
        c, buf_a, buf_b = _chunk_buffers(ctx.rows, n, v, wd, logits.device)
        g_lp = None if g_lp is None else g_lp.to(wd)
        g_h = None if g_h is None else g_h.to(wd)
        for s, e, x in _row_chunks(logits, c):
            a, b = buf_a[: e - s], buf_b[: e - s]
            _shift_scale(a, x, shift[s:e].unsqueeze(1), ctx.inv_t)
            direct = grad.dtype == wd  # write straight into the gradient, no extra copy
            _grad_chunk(
                a, b, slice(s, e), ids, log_z, h, g_lp, g_h, ctx.inv_t, out=grad2d[s:e] if direct else None
            )
            if not direct:
                grad2d[s:e].copy_(a)
        return grad, None, None, None, None


def token_stats_from_logits(
    logits: Tensor,
    token_ids: Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    with_sums: bool = True,
) -> TokenStats:
    """Token statistics (logp, H, P2, S2) from logits ``(..., V)`` and sampled ids ``(...)``.

    Implements Eq. 2's log-prob and Eq. 3's entropy at temperature ``T`` (logits / T), plus the
    sums of spec §13.1, in one pass over row chunks of ``chunk_size`` rows (default:
    :func:`default_chunk_rows`). Works for float32/bfloat16/float16 logits (computed in float32,
    never holding a float32 copy of the whole tensor) and float64 (computed in float64).
    ``logp`` and ``entropy`` are differentiable w.r.t. ``logits`` (gradient recomputed per chunk,
    returned in the logits' dtype); ``sum_p2``/``sum_p2_logp`` are detached (None when
    ``with_sums=False``).

    Raises ValueError for: ids whose shape differs from ``logits.shape[:-1]``, non-integer ids,
    ids outside ``[0, V)``, ``temperature`` not finite and > 0, non-float logits, or logits that
    produce a non-finite result (NaN / inf logits).
    """
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise ValueError("logits must be a floating-point tensor of shape (..., V)")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last (vocabulary) dim, got {tuple(logits.shape)}")
    inv_t = 1.0 / _check_temperature(temperature)
    lead, v = logits.shape[:-1], logits.shape[-1]
    ids = _check_ids(token_ids, lead, v, "logits")
    rows = default_chunk_rows(v) if chunk_size is None else int(chunk_size)
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    res = _LogitsStats.apply(x, ids, inv_t, rows, with_sums)
    lp, h = res[0].reshape(lead), res[1].reshape(lead)
    if with_sums:
        return TokenStats(lp, h, res[2].reshape(lead), res[3].reshape(lead))
    return TokenStats(lp, h, None, None)


class _HiddenStats(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, ids, inv_t: float, rows: int, with_sums: bool, md):
        n, d = hidden.shape
        v = weight.shape[0]
        wd = _work_dtype(hidden.dtype, weight.dtype)
        md = wd if md is None else md
        dev = hidden.device
        wm = weight if weight.dtype == md else weight.to(md)
        bm = None if bias is None else bias.to(md)
        out, shift, log_z = _forward_outputs(n, with_sums, wd, dev)
        c, buf_a, buf_b = _chunk_buffers(rows, n, v, wd, dev)
        buf_m = torch.empty(c, v, dtype=md, device=dev) if md != wd else None
        for s in range(0, n, c):
            e = min(s + c, n)
            a, b = buf_a[: e - s], buf_b[: e - s]
            _hidden_logits(hidden[s:e].to(md), wm, bm, a, None if buf_m is None else buf_m[: e - s])
            m = a.amax(-1, keepdim=True)
            _shift_scale(a, a, m, inv_t)
            _reduce_chunk_into(a, b, ids[s:e], with_sums, m, s, e, shift, log_z, out)
        _check_finite(out[0], out[1], "logits from hidden @ weight.T")
        ctx.save_for_backward(hidden, weight, bias, ids, shift, log_z, out[1].clone())
        ctx.inv_t, ctx.rows, ctx.md = inv_t, rows, md
        return _forward_result(ctx, out, with_sums)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lp, g_h, *_):
        hidden, weight, bias, ids, shift, log_z, h = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if (g_lp is None and g_h is None) or not (need_h or need_w or need_b):
            return None, None, None, None, None, None, None, None
        n, d = hidden.shape
        v = weight.shape[0]
        wd, md = shift.dtype, ctx.md
        dev = hidden.device
        wm = weight if weight.dtype == md else weight.to(md)
        bm = None if bias is None else bias.to(md)
        g_lp = None if g_lp is None else g_lp.to(wd)
        g_h = None if g_h is None else g_h.to(wd)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(v, d, dtype=wd, device=dev) if need_w else None
        grad_b = torch.zeros(v, dtype=wd, device=dev) if need_b else None
        c, buf_a, buf_b = _chunk_buffers(ctx.rows, n, v, wd, dev)
        buf_m = torch.empty(c, v, dtype=md, device=dev) if md != wd else None
        tmp_w = torch.empty(v, d, dtype=md, device=dev) if (md != wd and need_w) else None
        for s in range(0, n, c):
            e = min(s + c, n)
            a, b = buf_a[: e - s], buf_b[: e - s]
            hc = hidden[s:e].to(md)
            _hidden_logits(hc, wm, bm, a, None if buf_m is None else buf_m[: e - s])
            _shift_scale(a, a, shift[s:e].unsqueeze(1), ctx.inv_t)
            g = _grad_chunk(a, b, slice(s, e), ids, log_z, h, g_lp, g_h, ctx.inv_t)
            if need_b:
                grad_b.add_(g.sum(0))
            gm = g if buf_m is None else buf_m[: e - s].copy_(g)  # GEMM operand in the matmul dtype
            if need_h:
                grad_h[s:e].copy_(gm @ wm)
            if need_w:
                if tmp_w is None:
                    grad_w.addmm_(gm.t(), hc)
                else:  # low-precision GEMM, float32 accumulation over chunks
                    torch.mm(gm.t(), hc, out=tmp_w)
                    grad_w.add_(tmp_w)
        if need_w and grad_w.dtype != weight.dtype:
            grad_w = grad_w.to(weight.dtype)
        if need_b and grad_b.dtype != bias.dtype:
            grad_b = grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None


def _hidden_logits(hc: Tensor, wm: Tensor, bm: Tensor | None, out: Tensor, scratch: Tensor | None) -> None:
    """out = hc @ wm.T (+ bm), the GEMM in wm's dtype (via ``scratch`` when that differs from out's)."""
    dst = out if scratch is None else scratch
    if bm is None:
        torch.mm(hc, wm.t(), out=dst)
    else:
        torch.addmm(bm, hc, wm.t(), out=dst)
    if scratch is not None:
        out.copy_(scratch)


def token_stats_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    token_ids: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    with_sums: bool = True,
    matmul_dtype: torch.dtype | None = None,
) -> TokenStats:
    """Token statistics from hidden states ``(..., d)`` and the output projection ``weight (V, d)``.

    Same quantities as :func:`token_stats_from_logits` for ``logits = hidden @ weight.T + bias``,
    but the ``(N, V)`` logits are never materialised: each chunk of rows computes its logits
    (in float32, float64 for float64 inputs), reduces them and drops them; the backward pass
    recomputes every chunk and accumulates the gradients of ``hidden``, ``weight`` and ``bias``
    (a fused LM-head computation). For low-precision (bf16/fp16) ``weight`` one float32 copy of
    ``weight`` (V x d) is made per forward and per backward, and the weight gradient is
    accumulated in float32 before it is cast to ``weight.dtype``.

    ``matmul_dtype`` (default None = the float32 work dtype, as above) runs the GEMMs in another
    dtype, e.g. ``torch.bfloat16``: each chunk's logits are then the bf16 GEMM's output (what a bf16
    model's LM head produces), upcast to float32 for the reductions; the backward GEMMs take the
    float32 chunk gradient rounded to that dtype, and the weight gradient is still accumulated
    over chunks in float32. Much faster where bf16 GEMMs are (GPUs, recent CPUs), less exact.

    Raises ValueError for mismatched shapes (``hidden.shape[-1] != weight.shape[1]``, bias not
    ``(V,)``, ids not ``hidden.shape[:-1]``), out-of-range ids, a bad temperature, or non-finite
    results.
    """
    for name, t in (("hidden", hidden), ("weight", weight)):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor")
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"hidden (..., d) and weight (V, d) do not match: {tuple(hidden.shape)} vs {tuple(weight.shape)}"
        )
    v = weight.shape[0]
    if v == 0:
        raise ValueError("weight has an empty vocabulary dimension")
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (v,)):
        raise ValueError(f"bias must have shape ({v},), got {None if bias is None else tuple(bias.shape)}")
    inv_t = 1.0 / _check_temperature(temperature)
    lead, d = hidden.shape[:-1], hidden.shape[-1]
    ids = _check_ids(token_ids, lead, v, "hidden")
    rows = default_chunk_rows(v, hidden=True) if chunk_size is None else int(chunk_size)
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if matmul_dtype is not None and not (
        isinstance(matmul_dtype, torch.dtype) and matmul_dtype.is_floating_point
    ):
        raise ValueError(f"matmul_dtype must be None or a floating torch.dtype, got {matmul_dtype!r}")
    hs = hidden.reshape(-1, d)
    res = _HiddenStats.apply(hs, weight, bias, ids, inv_t, rows, with_sums, matmul_dtype)
    lp, h = res[0].reshape(lead), res[1].reshape(lead)
    if with_sums:
        return TokenStats(lp, h, res[2].reshape(lead), res[3].reshape(lead))
    return TokenStats(lp, h, None, None)
