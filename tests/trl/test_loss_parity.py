"""SteerGRPOTrainer's loss against stock TRL's and against the core's, on the same batch.

- Weights all 1 (``steer_method='grpo'``, and STEER with lambda_min = 1 and no dual clip): loss
  and every parameter gradient equal stock ``GRPOTrainer._compute_loss`` bit for bit, for each
  supported loss_type, with and without KL, entropy bonus, adaptive entropy, TRL's top-entropy mask,
  the off-policy mask and gradient accumulation. The one exception is TRL's KL bias correction
  (``use_bias_correction_kl``, on by default, only with beta > 0): the loss is still bit for bit,
  the gradients agree to float32 rounding (relative 1e-5 of the largest entry).
- STEER (lambda_min 0.7, dual clip 10): loss and gradients equal the core's ``Method.compute_loss``
  on the same tensors (token-mean / seq-mean aggregation with the same normalisers).
"""

from __future__ import annotations

import copy

import pytest
import torch

from steer.core.aggregation import aggregate
from steer.core.registry import build_method
from steer.core.types import LossBatch, Normalisers
from steer.integrations.trl import SUPPORTED_LOSS_TYPES
from steer.integrations.trl.config import method_overrides
from tests.trl.helpers import loss_and_grads, make_trainer, synthetic_inputs

VARIANTS = {
    "plain": {},
    "kl": {"beta": 0.05, "use_bias_correction_kl": False},
    "kl_bias_corrected": {"beta": 0.05, "use_bias_correction_kl": True},
    "entropy_bonus": {"entropy_coef": 0.01, "_entropy_bonus_enabled": True},
    "adaptive_entropy": {"use_adaptive_entropy": True, "_entropy_bonus_enabled": True, "entropy_coef": 0.02},
    "top_entropy": {"top_entropy_quantile": 0.5},
    "off_policy_mask": {"off_policy_mask_threshold": 0.05},
}


@pytest.fixture(scope="module")
def pair(tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    stock = make_trainer(tokenizer, tmp, steer=False)
    ours = make_trainer(tokenizer, tmp, steer=True, steer_method="grpo")
    return stock, ours


def _set(trainer, loss_type: str, variant: dict, accum: int) -> None:
    trainer.loss_type = loss_type
    trainer.beta = 0.0
    trainer.entropy_coef = 0.0
    trainer.use_adaptive_entropy = False
    trainer._entropy_bonus_enabled = False
    trainer._last_world_entropy = float("inf")
    trainer._entropy_window_stats = None
    trainer.top_entropy_quantile = 1.0
    trainer.off_policy_mask_threshold = None
    trainer.current_gradient_accumulation_steps = accum
    trainer.args.use_bias_correction_kl = False
    for k, v in variant.items():
        setattr(trainer.args if k == "use_bias_correction_kl" else trainer, k, v)


def _assert_same(a, b, grad_rtol: float | None = None):
    (la, ga), (lb, gb) = a, b
    assert torch.equal(la, lb), (float(la), float(lb))
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        if grad_rtol is None:
            assert torch.equal(ga[n], gb[n]), (n, float((ga[n] - gb[n]).abs().max()))
        else:
            scale = float(ga[n].abs().max())
            assert float((ga[n] - gb[n]).abs().max()) <= grad_rtol * scale, n


# every loss type plain (with gradient accumulation 2), every variant with dapo (TRL's default) and
# the KL variants with the per-sequence normaliser too
CASES = [(lt, "plain") for lt in SUPPORTED_LOSS_TYPES] + [("dapo", v) for v in VARIANTS if v != "plain"]
CASES += [("grpo", "kl"), ("dr_grpo", "kl_bias_corrected")]


@pytest.mark.parametrize(("loss_type", "variant"), CASES)
def test_weights_one_equal_stock_trl(pair, loss_type, variant):
    stock, ours = pair
    accum = 2 if variant == "plain" else 1
    for t in (stock, ours):
        _set(t, loss_type, VARIANTS[variant], accum)
    inputs = synthetic_inputs(stock, seed=sum(map(ord, loss_type + variant)))
    # TRL's KL bias correction multiplies by TRL's ratio, which in stock TRL also carries the policy
    # gradient (one accumulation) and here does not (the core has its own ratio): the gradients then
    # agree to float32 rounding of a different summation order, the loss bit for bit.
    rtol = 1e-5 if variant == "kl_bias_corrected" else None
    _assert_same(loss_and_grads(stock, inputs), loss_and_grads(ours, inputs), grad_rtol=rtol)
    if variant == "adaptive_entropy":  # the controller moved the same way in both
        assert (
            stock.entropy_coef == ours.entropy_coef and stock._last_world_entropy == ours._last_world_entropy
        )


def test_steer_with_unit_weights_equals_stock_trl(pair, tokenizer, tmp_path):
    stock, _ = pair
    ours = make_trainer(
        tokenizer,
        tmp_path,
        steer=True,
        steer_method="steer",
        steer_method_kwargs={"lambda_min": 1.0, "clip_c": None},
    )
    for t in (stock, ours):
        _set(t, "dapo", {"beta": 0.05, "use_bias_correction_kl": False}, 1)
    inputs = synthetic_inputs(stock, seed=11)
    _assert_same(loss_and_grads(stock, inputs), loss_and_grads(ours, inputs))
    assert ours._steer_acc["train"].result()["weight_min"] == 1.0


def _core_loss_and_grads(trainer, inputs, method, loss_type):
    """The core's Method.compute_loss on the tensors TRL's forward gives, on the trainer's model."""
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    logps, ents, _ = trainer._steer_forward(model, inputs)
    mask = inputs["completion_mask"].bool()
    lb = LossBatch(
        logp=logps,
        old_logp=inputs["old_per_token_logps"],
        advantages=inputs["advantages"].unsqueeze(1).expand_as(logps),
        response_mask=mask,
        entropy=ents,
        lr=trainer._steer_lr(),
        global_num_tokens=float(mask.sum()) if loss_type == "dapo" else None,
    )
    loss, _ = method.compute_loss(lb)
    loss.backward()
    return loss.detach(), {
        n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.fixture(scope="module")
def steer_pair(tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steer")
    return (
        make_trainer(tokenizer, tmp / "a", steer=True, steer_method="steer"),
        make_trainer(tokenizer, tmp / "b", steer=True, steer_method="steer"),
    )


@pytest.mark.parametrize("loss_type", SUPPORTED_LOSS_TYPES)
def test_steer_equals_core(steer_pair, loss_type):
    ours, ref = steer_pair
    for t in (ours, ref):
        _set(t, loss_type, {}, 1)
    ours._steer_acc["train"] = type(ours._steer_acc["train"])()
    # grpo / dr_grpo: TRL counts empty completions in the sequence mean, the core does not
    inputs = synthetic_inputs(ours, seed=5, empty_row=loss_type in ("dapo", "bnpo"))
    args = copy.copy(ours.args)
    args.loss_type = loss_type
    method = build_method("steer", **method_overrides(args, "steer", {}))
    la, ga = loss_and_grads(ours, inputs)
    lb, gb = _core_loss_and_grads(ref, inputs, method, loss_type)
    torch.testing.assert_close(la, lb, rtol=1e-6, atol=0)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-5, atol=1e-9)
    m = ours._steer_acc["train"].result()
    assert 0.7 - 1e-6 <= m["weight_min"] < 1.0 and m["weight_min"] <= m["weight_mean"] < 1.0


@pytest.fixture(scope="module")
def directional_pair(tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("directional")
    return (
        make_trainer(tokenizer, tmp / "a", steer=True, steer_method="steer_directional"),
        make_trainer(tokenizer, tmp / "b", steer=True, steer_method="steer_directional"),
    )


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_steer_directional_equals_core(directional_pair, loss_type):
    """The project's own steer_directional reaches TRL through the same adapter: its loss and
    gradients through SteerGRPOTrainer equal the core's on the same inputs."""
    ours, ref = directional_pair
    for t in (ours, ref):
        _set(t, loss_type, {}, 1)
    ours._steer_acc["train"] = type(ours._steer_acc["train"])()
    inputs = synthetic_inputs(ours, seed=6, empty_row=loss_type == "dapo")
    args = copy.copy(ours.args)
    args.loss_type = loss_type
    method = build_method("steer_directional", **method_overrides(args, "steer_directional", {}))
    la, ga = loss_and_grads(ours, inputs)
    lb, gb = _core_loss_and_grads(ref, inputs, method, loss_type)
    torch.testing.assert_close(la, lb, rtol=1e-6, atol=0)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-5, atol=1e-9)
    m = ours._steer_acc["train"].result()
    assert 0.7 - 1e-6 <= m["weight_min"] < 1.0 and 0 < m["steer_directional/neg_frac"] < 1


def test_forking_aggregates_over_selected_tokens(tokenizer, tmp_path):
    """The core's forking-token selection (loss_mask, rho) with TRL's dapo normaliser scaled by rho
    equals the core's own token-mean aggregation of the same TokenLoss."""
    ours = make_trainer(tokenizer, tmp_path, steer=True, steer_method="forking_tokens", epsilon_high=0.28)
    _set(ours, "dapo", {}, 1)
    inputs = synthetic_inputs(ours, seed=9)
    la, _ = loss_and_grads(ours, inputs)
    with torch.no_grad():
        logps, ents, _ = ours._steer_forward(ours.model, inputs)
        mask = inputs["completion_mask"].bool()
        lb = LossBatch(
            logp=logps,
            old_logp=inputs["old_per_token_logps"],
            advantages=inputs["advantages"].unsqueeze(1).expand_as(logps),
            response_mask=mask,
            entropy=ents,
            global_num_tokens=float(mask.sum()),
        )
        m = ours.steer_method
        expected = aggregate(m.token_loss(lb), mask, m.config.loss_agg_mode, Normalisers.of(lb, m.config.loss_scale_factor))
    torch.testing.assert_close(la, expected, rtol=1e-6, atol=0)


def test_non_finite_input_raises_before_any_backward(pair):
    """NaN on a valid token stops the step with NonFiniteError (naming the input); NaN on padding
    is ignored and gives the same loss as without it."""
    from steer.core.errors import NonFiniteError

    _, ours = pair
    _set(ours, "dapo", {}, 1)
    inputs = synthetic_inputs(ours, seed=21)
    clean, _ = loss_and_grads(ours, inputs)
    pad = inputs["completion_mask"] == 0
    assert bool(pad.any())
    padded = dict(inputs, old_per_token_logps=inputs["old_per_token_logps"].masked_fill(pad, float("nan")))
    torch.testing.assert_close(loss_and_grads(ours, padded)[0], clean, rtol=0, atol=0)
    bad = inputs["old_per_token_logps"].clone()
    bad[1, -1] = float("nan")  # row 1 is full length: a valid token
    assert inputs["completion_mask"][1, -1] == 1
    ours.model.zero_grad(set_to_none=True)
    with pytest.raises(NonFiniteError) as e:
        ours._compute_loss(ours.model, dict(inputs, old_per_token_logps=bad))
    assert e.value.name == "old_logp"
    assert all(p.grad is None for p in ours.model.parameters())
