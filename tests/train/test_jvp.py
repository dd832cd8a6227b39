"""steer.train.jvp against independently written float64 references.

- the primal log-probs/entropies equal the core's token statistics;
- the JVP of every token's entropy matches a central finite difference of per-row, plain-loop
  float64 entropies of a perturbed copy of the model;
- sum_t c_t equals the JVP of the batch's total entropy along the full SGD update (and its finite
  difference), with and without an entropy term in the loss;
- in a tabular softmax model (the paper's Assumption 1 holds exactly) both decompositions equal the
  core's exact first-order estimator and a plain-loop first-order reference;
- padding and empty responses give 0; bad inputs raise ValueError naming the input.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from steer.core.estimators import omega_exact
from steer.core.stats import token_stats_from_logits
from steer.train.jvp import (
    entropy_gradient,
    jvp_response_stats,
    linearised_entropy_change,
    per_token_cause,
    require_eager_attention,
    trainable_parameters,
)
from steer.train.rollout import response_logits


@pytest.fixture(scope="module")
def tok():
    from steer.testbed import build_tokenizer

    return build_tokenizer()


def _tiny(tok, dtype=torch.float64, seed=0):
    from steer.testbed import build_model

    m = build_model(
        tok,
        "micro",
        seed=seed,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    require_eager_attention(m)
    return m.to(dtype).eval()


def _batch(B=4, P=5, T=6, V=263, seed=1, left_pad=False):
    """Equal-length prompts (float64 eager attention needs no left padding), right-padded
    responses, one empty response (row 2)."""
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(10, V, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.bool)
    if left_pad:
        prompt_mask[0, :2] = False
        prompt_ids[0, :2] = 0
    response_ids = torch.randint(10, V, (B, T), generator=g)
    response_mask = torch.ones(B, T, dtype=torch.bool)
    response_mask[1, 3:] = False
    response_mask[2, :] = False  # an empty response
    response_ids[~response_mask] = 0
    return SimpleNamespace(
        prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response_ids, response_mask=response_mask
    )


def _ref_entropies(model, batch, temperature=1.0):
    """Per row, the unpadded sequence through the model (no mask), then plain float64 entropies
    and log-probs of every valid response position (0 elsewhere)."""
    B, T = batch.response_ids.shape
    H = torch.zeros(B, T, dtype=torch.float64)
    LP = torch.zeros(B, T, dtype=torch.float64)
    with torch.no_grad():
        for b in range(B):
            real = batch.prompt_ids[b][batch.prompt_mask[b]]
            seq = torch.cat([real, batch.response_ids[b]])
            logits = model(input_ids=seq[None]).logits[0].double()
            for t in range(T):
                if not batch.response_mask[b, t]:
                    continue
                z = logits[len(real) - 1 + t] / temperature
                z = z - z.max()
                p = z.exp() / z.exp().sum()
                logp = z - math.log(float(z.exp().sum()))
                H[b, t] = -float((p * logp).sum())
                LP[b, t] = float(logp[batch.response_ids[b, t]])
    return LP, H


def _perturbed(model, direction, eps):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in trainable_parameters(m).items():
            if k in direction:
                p.add_(eps * direction[k])
    return m


def _random_direction(model, scale, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * scale
        for k, p in trainable_parameters(model).items()
    }


def test_primal_stats_match_core_and_reference(tok):
    m = _tiny(tok)
    b = _batch()
    d = _random_direction(m, 1e-2)
    lp, h, _, _ = jvp_response_stats(m, b, d, temperature=0.7, micro_batch_size=3)
    st = token_stats_from_logits(
        response_logits(m, b.prompt_ids, b.prompt_mask, b.response_ids), b.response_ids, temperature=0.7
    )
    mk = b.response_mask
    torch.testing.assert_close(lp[mk], st.logp.double()[mk], rtol=0, atol=1e-10)
    torch.testing.assert_close(h[mk], st.entropy.double()[mk], rtol=0, atol=1e-10)
    ref_lp, ref_h = _ref_entropies(m, b, temperature=0.7)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-6)  # RMSNorm runs in float32 inside the model
    torch.testing.assert_close(lp, ref_lp, rtol=0, atol=1e-6)
    assert bool((h[~mk] == 0).all()) and bool((lp[~mk] == 0).all())


@pytest.mark.parametrize("seed", [0, 1])
def test_linearised_change_matches_finite_difference(tok, seed):
    m = _tiny(tok, seed=seed)
    b = _batch(seed=seed + 10)
    d = _random_direction(m, 1e-2, seed=seed + 20)
    lin = linearised_entropy_change(m, b, d, micro_batch_size=2)
    eps = 1e-2
    _, hp = _ref_entropies(_perturbed(m, d, eps), b)
    _, hm = _ref_entropies(_perturbed(m, d, -eps), b)
    fd = (hp - hm) / (2 * eps)
    scale = float(fd.abs().max())
    assert scale > 1e-4  # the direction does move the entropies
    assert float((lin - fd).abs().max()) < 2e-3 * scale, (lin, fd)
    assert bool((lin[~b.response_mask] == 0).all())
    # the sign of every clearly non-zero change agrees
    big = fd.abs() > 0.05 * scale
    assert bool((torch.sign(lin[big]) == torch.sign(fd[big])).all())


def test_linearised_change_float32_left_padded(tok):
    """The float32 path with left-padded prompts (what rollouts look like) against the
    float64 per-row reference of the same weights."""
    m32 = _tiny(tok, dtype=torch.float32, seed=4)
    m64 = copy.deepcopy(m32).double()
    b = _batch(seed=5, left_pad=True)
    d = _random_direction(m32, 1e-2, seed=6)
    lin = linearised_entropy_change(m32, b, d).double()
    ref = linearised_entropy_change(
        m64, _batch(seed=5, left_pad=False), {k: v.double() for k, v in d.items()}
    )
    rows = [1, 2, 3]  # rows without left padding are identical in both batches
    scale = float(ref[rows].abs().max())
    assert float((lin[rows] - ref[rows]).abs().max()) < 1e-3 * scale
    eps = 1e-2
    d64 = {k: v.double() for k, v in d.items()}
    _, hp = _ref_entropies(_perturbed(m64, d64, eps), b)
    _, hm = _ref_entropies(_perturbed(m64, d64, -eps), b)
    fd = (hp - hm) / (2 * eps)
    assert float((lin[0] - fd[0]).abs().max()) < 2e-3 * float(fd.abs().max())


def _sgd_update(model, batch, u, v, lr):
    """-lr * grad of L = -sum_t (u_t logp_t + v_t H_t), through a plain per-row forward."""
    params = trainable_parameters(model)
    total = 0.0
    for bi in range(batch.response_ids.shape[0]):
        real = batch.prompt_ids[bi][batch.prompt_mask[bi]]
        seq = torch.cat([real, batch.response_ids[bi]])
        logits = model(input_ids=seq[None]).logits[0].double()
        for t in range(batch.response_ids.shape[1]):
            if not batch.response_mask[bi, t]:
                continue
            lsm = torch.log_softmax(logits[len(real) - 1 + t], -1)
            h = -(lsm.exp() * lsm).sum()
            total = total + u[bi, t] * lsm[batch.response_ids[bi, t]] + (0.0 if v is None else v[bi, t] * h)
    grads = torch.autograd.grad(-total, list(params.values()))
    return {k: -lr * g.detach() for k, g in zip(params, grads)}


@pytest.mark.parametrize("with_entropy_term", [False, True])
def test_cause_sums_to_total_jvp_along_sgd_update(tok, with_entropy_term):
    m = _tiny(tok, seed=7)
    b = _batch(seed=8)
    g = torch.Generator().manual_seed(9)
    u = torch.randn(b.response_mask.shape, generator=g, dtype=torch.float64) * b.response_mask
    v = (
        (torch.randn(b.response_mask.shape, generator=g, dtype=torch.float64) * 0.3 * b.response_mask)
        if with_entropy_term
        else None
    )
    lr = 0.05
    update = _sgd_update(m, b, u, v, lr)
    c = per_token_cause(m, b, u, v, preconditioner=lr, micro_batch_size=3)
    total_jvp = linearised_entropy_change(m, b, update).sum()
    assert abs(float(c.sum() - total_jvp)) < 1e-6 * max(1.0, abs(float(total_jvp)))
    # and the finite difference of the batch's total entropy along the update
    eps = 1e-2
    _, hp = _ref_entropies(_perturbed(m, update, eps), b)
    _, hm = _ref_entropies(_perturbed(m, update, -eps), b)
    fd_total = float((hp - hm).sum() / (2 * eps))
    scale = float((hp - hm).abs().sum() / (2 * eps))  # the total cancels: judge it on the per-token scale
    assert abs(float(c.sum()) - fd_total) < 5e-3 * scale
    assert bool((c[~b.response_mask] == 0).all())
    # a token with no coefficient contributes nothing
    u0 = u.clone()
    u0[0, 0] = 0.0
    v0 = None if v is None else v.clone()
    if v0 is not None:
        v0[0, 0] = 0.0
    c0 = per_token_cause(m, b, u0, v0, preconditioner=lr, grad_entropy=entropy_gradient(m, b))
    assert float(c0[0, 0]) == 0.0
    torch.testing.assert_close(c0[0, 1:], c[0, 1:], rtol=1e-9, atol=1e-12)


def test_cause_with_diagonal_preconditioner(tok):
    """sum c_t = <grad H_batch, P * sum_t u_t grad logp_t> for a diagonal P."""
    m = _tiny(tok, seed=11)
    b = _batch(seed=12)
    g = torch.Generator().manual_seed(13)
    u = torch.randn(b.response_mask.shape, generator=g, dtype=torch.float64) * b.response_mask
    params = trainable_parameters(m)
    P = {k: torch.rand(p.shape, generator=g, dtype=torch.float64) * 0.1 for k, p in params.items()}
    step = _sgd_update(m, b, u, None, 1.0)
    update = {k: P[k] * step[k] for k in params}
    c = per_token_cause(m, b, u, preconditioner=P)
    gh = entropy_gradient(m, b)
    expected = sum(float((gh[k] * update[k]).sum()) for k in params)
    assert abs(float(c.sum()) - expected) < 1e-6 * abs(expected)


class _Tabular(torch.nn.Module):
    """One free logit vector per (row, position): the paper's Assumption 1 holds exactly. The
    row is the first input token (the test sets it), so a single-row call finds its own table."""

    def __init__(self, B, L, V, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z = torch.nn.Parameter(torch.randn(B, L, V, generator=g, dtype=torch.float64) * 2.0)
        self.config = SimpleNamespace(_attn_implementation=None)

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, use_cache=False):
        z = self.z[input_ids[:, 0]][:, : input_ids.shape[1]]
        return SimpleNamespace(logits=z[:, -logits_to_keep:] if logits_to_keep else z)


def test_tabular_model_both_decompositions_equal_omega_exact():
    B, P, T, V = 3, 4, 5, 11
    m = _Tabular(B, P + T, V)
    b = _batch(B=B, P=P, T=T, V=V, seed=14)
    b.prompt_ids.clamp_(max=V - 1)
    b.response_ids.clamp_(max=V - 1)
    b.prompt_ids[:, 0] = torch.arange(B)
    g = torch.Generator().manual_seed(15)
    u = torch.randn(B, T, generator=g, dtype=torch.float64) * b.response_mask
    lr = 1e-3
    update = _sgd_update(m, b, u, None, lr)
    lin = linearised_entropy_change(m, b, update)
    c = per_token_cause(m, b, u, preconditioner=lr)
    st = token_stats_from_logits(
        response_logits(m, b.prompt_ids, b.prompt_mask, b.response_ids), b.response_ids
    )
    om = omega_exact(u, st.logp, st.entropy, st.sum_p2, st.sum_p2_logp, lr) * b.response_mask
    torch.testing.assert_close(lin, om, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(c, om, rtol=1e-9, atol=1e-15)
    # plain-loop first-order reference: dH = -sum_k pi_k (log pi_k + H) dz_k, dz = lr u (e_o - pi)
    for bi in range(B):
        for t in range(T):
            if not b.response_mask[bi, t]:
                assert float(lin[bi, t]) == 0.0
                continue
            z = m.z[bi, P - 1 + t].detach()
            p = torch.softmax(z, -1)
            logp = torch.log_softmax(z, -1)
            h = -float((p * logp).sum())
            o = int(b.response_ids[bi, t])
            ref = 0.0
            for k in range(V):
                dz = lr * float(u[bi, t]) * ((1.0 if k == o else 0.0) - float(p[k]))
                ref -= float(p[k]) * (float(logp[k]) + h) * dz
            assert abs(float(lin[bi, t]) - ref) < 1e-12 + 1e-9 * abs(ref)


def test_bad_inputs_raise(tok):
    m = _tiny(tok)
    b = _batch()
    params = trainable_parameters(m)
    name = next(iter(params))
    with pytest.raises(ValueError, match="unknown parameter"):
        linearised_entropy_change(m, b, {"nope": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        linearised_entropy_change(m, b, {name: torch.zeros(3)})
    bad = {name: torch.full_like(params[name], float("nan"))}
    with pytest.raises(ValueError, match="NaN"):
        linearised_entropy_change(m, b, bad)
    u = torch.zeros(b.response_mask.shape, dtype=torch.float64)
    u[0, 0] = float("inf")
    with pytest.raises(ValueError, match="coef_logp"):
        per_token_cause(m, b, u, preconditioner=1.0)
    with pytest.raises(ValueError, match="coef_logp has shape"):
        per_token_cause(m, b, torch.zeros(2, 2), preconditioner=1.0)
    with pytest.raises(ValueError, match="preconditioner lacks"):
        per_token_cause(m, b, torch.zeros(b.response_mask.shape), preconditioner={})
    with pytest.raises(ValueError, match="temperature"):
        jvp_response_stats(m, b, {}, temperature=0.0)
    with pytest.raises(ValueError, match="batch.prompt_mask must be a tensor"):
        linearised_entropy_change(m, SimpleNamespace(prompt_ids=b.prompt_ids), {})
    # NaN inside the padding of a coefficient is ignored (padding never contributes)
    u = torch.zeros(b.response_mask.shape, dtype=torch.float64)
    u[2, 0] = float("nan")  # row 2 is an empty response
    c = per_token_cause(m, b, u, preconditioner=1.0)
    assert bool(torch.isfinite(c).all()) and bool((c == 0).all())


def test_require_eager_attention_switches_sdpa(tok):
    from steer.testbed import build_model

    m = build_model(tok, "micro")
    assert m.config._attn_implementation != "eager"
    require_eager_attention(m)
    assert m.config._attn_implementation == "eager"
