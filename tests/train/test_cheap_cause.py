"""The cheap cause pass: the entropy gradient and the forward-mode pass restricted to the last K
decoder layers, the final norm and the output head (``steer.train.jvp.last_layers``).

On a tiny tied-embedding model in float64:
- the subset is the last K layers + norm + the head's role of the tied matrix, bad K raise;
- the restricted ``grad H`` and the restricted JVP equal the full pass of an *untied* copy (its own
  head matrix) with zero tangents outside the subset, and an independent reference: plain per-row,
  per-token reverse-mode gradients of every token's log-prob and entropy;
- ``cause.cause_pass(subset=...)`` is ``<grad_S log pi_t, P_S grad_S H>`` with Adam's Jacobian of
  the tied tensor on the head's role.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from steer.train.cause import SubBatch, adam_linearisation, cause_pass
from steer.train.jvp import (
    Subset,
    entropy_gradient,
    jvp_response_stats,
    last_layers,
    require_eager_attention,
    trainable_parameters,
)


@pytest.fixture(scope="module")
def tok():
    from steer.testbed import build_tokenizer

    return build_tokenizer()


def _tiny(tok, layers=3, seed=0):
    from steer.testbed import build_model

    m = build_model(
        tok,
        "micro",
        seed=seed,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
    )
    require_eager_attention(m)
    return m.to(torch.float64).eval()


def _untied(model):
    """A copy whose output head is a separate parameter holding the same values."""
    u = copy.deepcopy(model)
    u.config.tie_word_embeddings = False
    u.lm_head.weight = torch.nn.Parameter(u.model.embed_tokens.weight.detach().clone())
    assert u.lm_head.weight is not u.model.embed_tokens.weight
    return u


def _batch(B=3, P=4, T=5, V=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(10, V, (B, P), generator=g)
    response_ids = torch.randint(10, V, (B, T), generator=g)
    response_mask = torch.ones(B, T, dtype=torch.bool)
    response_mask[1, 2:] = False
    response_mask[2, :] = False  # an empty response
    response_ids[~response_mask] = 0
    return SimpleNamespace(
        prompt_ids=prompt_ids,
        prompt_mask=torch.ones(B, P, dtype=torch.bool),
        response_ids=response_ids,
        response_mask=response_mask,
    )


def _ref_token_grads(model, batch, names):
    """Per valid token, plain reverse-mode float64 gradients of log pi_t and H_t with respect to the
    parameters ``names`` of ``model`` (an untied model: every name its own tensor), one unpadded row
    at a time: ``{(b, t): (grad_logp, grad_H)}``, each ``{name: tensor}``."""
    params = dict(model.named_parameters())
    out = {}
    B, T = batch.response_ids.shape
    for b in range(B):
        real = batch.prompt_ids[b][batch.prompt_mask[b]]
        seq = torch.cat([real, batch.response_ids[b]])
        for t in range(T):
            if not batch.response_mask[b, t]:
                continue
            logits = model(input_ids=seq[None]).logits[0].double()
            z = logits[len(real) - 1 + t]
            lsm = torch.log_softmax(z, -1)
            logp = lsm[batch.response_ids[b, t]]
            ent = -(lsm.exp() * lsm).sum()
            gl = torch.autograd.grad(logp, [params[k] for k in names], retain_graph=True, allow_unused=True)
            gh = torch.autograd.grad(ent, [params[k] for k in names], allow_unused=True)
            z0 = [torch.zeros_like(params[k]) for k in names]
            out[(b, t)] = (
                {k: g if g is not None else z for k, g, z in zip(names, gl, z0)},
                {k: g if g is not None else z for k, g, z in zip(names, gh, z0)},
            )
    return out


def test_subset_is_last_layers_norm_and_head_role(tok):
    m = _tiny(tok, layers=3)
    s = last_layers(m, 2)
    assert s.layers == 2 and s.total_layers == 3 and s.tied_head
    layers = {k.split(".")[2] for k in s.source if k.startswith("model.layers.")}
    assert layers == {"1", "2"}
    assert s.source["lm_head.weight"] == "model.embed_tokens.weight"
    assert "model.norm.weight" in s.source
    assert "model.embed_tokens.weight" not in s.source
    others = {k: v for k, v in s.source.items() if k != "lm_head.weight"}
    assert all(k == v for k, v in others.items())
    full = last_layers(m, 3)
    assert {k for k in full.source if k.startswith("model.layers.0.")}
    u = _untied(m)
    su = last_layers(u, 1)
    assert not su.tied_head and su.source["lm_head.weight"] == "lm_head.weight"


@pytest.mark.parametrize("bad", [0, -1, 4, 1.5, True, "2", None])
def test_bad_layer_counts_raise(tok, bad):
    m = _tiny(tok, layers=3)
    with pytest.raises(ValueError, match="layers"):
        last_layers(m, bad)


def test_frozen_parameters_are_left_out(tok):
    m = _tiny(tok, layers=2)
    for p in m.model.layers[1].mlp.parameters():
        p.requires_grad_(False)
    s = last_layers(m, 1)
    assert not any(".mlp." in k for k in s.source)
    assert any(".self_attn." in k for k in s.source)


@pytest.mark.parametrize("k", [1, 2])
def test_restricted_pass_equals_untied_full_pass_with_zero_tangents_and_reference(tok, k):
    m = _tiny(tok, layers=3, seed=k)
    b = _batch(seed=k)
    s = last_layers(m, k)
    gh = entropy_gradient(m, b, subset=s, micro_batch_size=2)
    assert set(gh) == set(s.source)
    g = torch.Generator().manual_seed(7)
    direction = {r: torch.randn(v.shape, generator=g, dtype=torch.float64) * 1e-2 for r, v in gh.items()}
    lp, h, dlp, dh = jvp_response_stats(m, b, direction, subset=s, micro_batch_size=2)

    # the untied copy's full pass, zero tangents outside the subset (same role names)
    u = _untied(m)
    gh_full = entropy_gradient(u, b)
    for r in s.source:
        torch.testing.assert_close(gh[r], gh_full[r], rtol=1e-9, atol=1e-12)
    lp_u, h_u, dlp_u, dh_u = jvp_response_stats(u, b, direction)
    for x, y in ((lp, lp_u), (h, h_u), (dlp, dlp_u), (dh, dh_u)):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)

    # an independent reference: per-token reverse-mode gradients, row by row without padding
    names = list(s.source)
    ref = _ref_token_grads(u, b, names)
    ref_h = {r: sum(v[1][r] for v in ref.values()) for r in names}
    for r in names:
        torch.testing.assert_close(gh[r], ref_h[r], rtol=1e-6, atol=1e-9)  # RMSNorm runs in float32
    for (bi, t), (gl, ghh) in ref.items():
        want_lp = sum(float((gl[r] * direction[r]).sum()) for r in names)
        want_h = sum(float((ghh[r] * direction[r]).sum()) for r in names)
        assert float(dlp[bi, t]) == pytest.approx(want_lp, rel=1e-5, abs=1e-9)
        assert float(dh[bi, t]) == pytest.approx(want_h, rel=1e-5, abs=1e-9)
    mk = b.response_mask
    assert bool((dlp[~mk] == 0).all()) and bool((dh[~mk] == 0).all())
    # the subset leaves something out: the restricted gradient is not the tied tensor's total
    tied = entropy_gradient(m, b)["model.embed_tokens.weight"]
    assert not torch.allclose(tied, gh["lm_head.weight"])


def test_subset_rejects_foreign_names_and_grad_entropy(tok):
    m = _tiny(tok, layers=2)
    b = _batch()
    s = Subset(source={"nope.weight": "nope.weight"}, layers=1, total_layers=2)
    with pytest.raises(ValueError, match="not parameters"):
        entropy_gradient(m, b, subset=s)
    s = last_layers(m, 1)
    with pytest.raises(ValueError, match="unknown parameter"):
        jvp_response_stats(m, b, {"model.embed_tokens.weight": torch.zeros(1)}, subset=s)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    grads = {k: torch.zeros_like(p) for k, p in trainable_parameters(m).items()}
    with pytest.raises(ValueError, match="grad_entropy"):
        cause_pass(m, SubBatch(b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask), opt,
                   grad_entropy=grads, grad_loss=grads, entropy_before=torch.zeros(3, 5), subset=s)


def test_cause_pass_with_subset_is_the_restricted_cause(tok):
    """g_t = <grad_S log pi_t, P_S grad_S H> with P the tied tensor's Adam Jacobian on the head's role,
    after some real AdamW steps (so P is not ~0), against the per-token reference."""
    m = _tiny(tok, layers=3, seed=4)
    b = _batch(seed=5)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(9)
    for _ in range(3):
        for p in m.parameters():
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
    opt.zero_grad(set_to_none=True)
    params = trainable_parameters(m)
    g0 = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1 for k, p in params.items()}
    s = last_layers(m, 1)
    sb = SubBatch(b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask)
    cp = cause_pass(m, sb, opt, grad_entropy=None, grad_loss=g0, entropy_before=torch.zeros(3, 5), subset=s)
    assert cp.offset is None
    P, _ = adam_linearisation(opt, params, g0)
    names = list(s.source)
    ref = _ref_token_grads(_untied(m), b, names)
    ref_h = {r: sum(v[1][r] for v in ref.values()) for r in names}
    for (bi, t), (gl, _) in ref.items():
        want = sum(float((gl[r] * P[s.source[r]] * ref_h[r]).sum()) for r in names)
        assert float(cp.direction[bi, t]) == pytest.approx(want, rel=1e-5, abs=1e-12)
    assert bool((cp.direction[~b.response_mask] == 0).all())
