"""The trainer's cause pass (steer_causal, entropy_band, ``trainer.cause_probe``): Adam's
linearised step against an independent float64 formula and against the real step, the probe
leaving training unchanged, the band inside its band being GRPO bit for bit, and the predicted
against the realised entropy change of real optimiser steps."""

from __future__ import annotations

import math

import pytest
import torch

from steer.train.cause import adam_linearisation
from steer.train.trainer import Trainer

from .helpers import CoinTask


def make_trainer(cfg):
    return Trainer(cfg, task=CoinTask(cfg.task), log=lambda m: None)


def _adam_ref(p, m, v, step, g, lr, b1, b2, eps, wd):
    """One AdamW step by its definition, element by element in float64: returns p_new - p (decoupled
    decay ``-lr wd p``, then Adam's bias-corrected update)."""
    out = []
    t = step + 1
    for pi, mi, vi, gi in zip(p.tolist(), m.tolist(), v.tolist(), g.tolist()):
        mt = b1 * mi + (1 - b1) * gi
        vt = b2 * vi + (1 - b2) * gi * gi
        out.append(-lr * wd * pi - lr * (mt / (1 - b1**t)) / (math.sqrt(vt / (1 - b2**t)) + eps))
    return torch.tensor(out, dtype=torch.float64)


def test_adam_linearisation_is_the_step_and_its_jacobian():
    """``step`` is AdamW's update at G0 (an independent float64 element-wise reference and the real
    optimiser), and P its Jacobian: central finite differences of the reference match -P, on the
    first step (a sign step: P ~ 0) and after 30 steps."""
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50, generator=g, dtype=torch.float64))
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.01
    opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for warm in (0, 30):
        for _ in range(warm):
            p.grad = torch.randn(50, generator=g, dtype=torch.float64)
            opt.step()
        st = opt.state.get(p) or {}
        step = int(st["step"]) if "step" in st else 0
        m = st["exp_avg"].clone() if "exp_avg" in st else torch.zeros(50, dtype=torch.float64)
        v = st["exp_avg_sq"].clone() if "exp_avg_sq" in st else torch.zeros(50, dtype=torch.float64)
        g0 = torch.randn(50, generator=g, dtype=torch.float64)
        P, upd = adam_linearisation(opt, {"p": p}, {"p": g0})
        theta = p.detach().clone()
        ref = _adam_ref(theta, m, v, step, g0, lr, b1, b2, eps, wd)
        torch.testing.assert_close(upd["p"], ref, rtol=1e-10, atol=1e-15)
        h = 1e-5
        fd = (_adam_ref(theta, m, v, step, g0 + h, lr, b1, b2, eps, wd)
              - _adam_ref(theta, m, v, step, g0 - h, lr, b1, b2, eps, wd)) / (2 * h)
        torch.testing.assert_close(-P["p"], fd, rtol=1e-5, atol=1e-9 * lr)
        if warm == 0:
            # the first step is a sign step: P is eps / (|G| + eps) of the step's own scale lr / |G|
            assert float((P["p"].abs() * (g0.abs() + eps) / lr).max()) < 1e-5
        else:
            assert float(P["p"].abs().min()) > 1e-4 * lr
        before = p.detach().clone()
        p.grad = g0.clone()
        opt.step()
        torch.testing.assert_close(p.detach() - before, upd["p"], rtol=1e-9, atol=1e-14)  # the real step
    with pytest.raises(ValueError, match="Adam"):
        adam_linearisation(torch.optim.SGD([p], lr=0.1), {"p": p}, {"p": g0})


def test_the_two_adam_linearisations_differ_and_the_frozen_one_splits_the_step():
    """The Jacobian P (the cause pass) and the probe's preconditioner, computed before this
    function was shared (``lr (1 - b1) / bc1 / (sqrt(v_hat) + eps)`` from AdamW's state *after* the
    step), are not the same formula: in float64 the probe's is the derivative with Adam's
    denominator held fixed (``frozen_denominator=True``), which is not the Jacobian (finite
    differences disagree) but splits the step exactly, ``step = -lr b1 m / (bc1 D) - lr wd theta -
    P G0``: on the first step without decay ``step = -P G0``, while the Jacobian is ~0 there."""
    g = torch.Generator().manual_seed(1)
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    for wd in (0.0, 0.01):
        p = torch.nn.Parameter(torch.randn(40, generator=g, dtype=torch.float64))
        opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        for warm in (0, 7, 30):
            for _ in range(warm):
                p.grad = torch.randn(40, generator=g, dtype=torch.float64)
                opt.step()
            st = opt.state.get(p) or {}
            step = int(st["step"]) if "step" in st else 0
            m = st["exp_avg"].clone() if "exp_avg" in st else torch.zeros(40, dtype=torch.float64)
            g0 = torch.randn(40, generator=g, dtype=torch.float64)
            theta = p.detach().clone()
            P_jac, _ = adam_linearisation(opt, {"p": p}, {"p": g0})
            P_fro, upd = adam_linearisation(opt, {"p": p}, {"p": g0}, frozen_denominator=True)
            p.grad = g0.clone()
            opt.step()
            p.grad = None
            t = step + 1
            # the probe's old formula, element by element from the optimiser's state after the step
            v_after = opt.state[p]["exp_avg_sq"].tolist()
            probe_P = torch.tensor(
                [lr * (1 - b1) / (1 - b1**t) / (math.sqrt(vi / (1 - b2**t)) + eps) for vi in v_after],
                dtype=torch.float64,
            )
            torch.testing.assert_close(P_fro["p"], probe_P, rtol=1e-12, atol=0.0)
            # not the Jacobian: the two differ by the normalisation term, far beyond rounding
            assert float(((P_fro["p"] - P_jac["p"]) / P_fro["p"]).abs().max()) > 1e-5
            # the frozen P splits the real step exactly into momentum, decay and -P G0
            d = torch.tensor([math.sqrt(vi / (1 - b2**t)) + eps for vi in v_after], dtype=torch.float64)
            rest = -lr * b1 * m / ((1 - b1**t) * d) - lr * wd * theta
            torch.testing.assert_close(p.detach() - theta, rest - P_fro["p"] * g0, rtol=1e-9, atol=1e-14)
            torch.testing.assert_close(upd["p"], p.detach() - theta, rtol=1e-9, atol=1e-14)
            if warm == 0 and wd == 0.0:
                torch.testing.assert_close(p.detach() - theta, -P_fro["p"] * g0, rtol=1e-9, atol=1e-15)
                assert float((P_jac["p"] / P_fro["p"]).abs().max()) < 1e-5  # the Jacobian ~ 0 there


def _params(tr):
    return [p.detach().clone() for p in tr.model.parameters()]


def test_cause_probe_does_not_change_training(small_cfg):
    """The probe only measures: one GRPO step with and without it gives the same parameters bit for
    bit (its passes draw no random numbers and the attention is switched back after the JVP)."""
    a = make_trainer(small_cfg("method.name=grpo", out="a"))
    b = make_trainer(small_cfg("method.name=grpo", "trainer.cause_probe=true", out="b"))
    ra, rb = a.train_step(0), b.train_step(0)
    for x, y in zip(_params(a), _params(b)):
        assert torch.equal(x, y)
    assert ra["loss"] == rb["loss"]
    assert "cause/real_change" in rb and "cause/real_change" not in ra
    assert math.isfinite(rb["cause/real_change"]) and rb["time/cause"] > 0
    # GRPO's weights are 1: the prediction under its weights is the unweighted one
    assert rb["m/cause/pred_sum"] == pytest.approx(rb["m/cause/pred_sum_unweighted"], rel=1e-5)  # float32 autograd
    cfg = a.cfg
    assert cfg.model.source == "testbed"
    assert getattr(b.model.config, "_attn_implementation", None) == getattr(a.model.config, "_attn_implementation", None)


def test_entropy_band_inside_its_band_trains_exactly_like_grpo(small_cfg):
    a = make_trainer(small_cfg("method.name=grpo", out="a"))
    b = make_trainer(small_cfg("method.name=entropy_band", "method.band=1000000.0", out="b"))
    a.train_step(0)
    rb = b.train_step(0)
    for x, y in zip(_params(a), _params(b)):
        assert torch.equal(x, y)
    assert rb["m/band/active"] == 0.0 and rb["m/weight_min"] == 1.0


def test_predicted_against_realised_change(small_cfg):
    """The first-order prediction offset + sum_t c_t of GRPO's steps (Adam linearised at the step's
    own gradient) against the realised change of the mini-batch's entropy, at a small learning rate
    where first order should hold: the same sign and within 25% on every step (measured: 0.96-1.04)."""
    tr = make_trainer(small_cfg("method.name=grpo", "trainer.cause_probe=true", "optim.lr=1e-5", "trainer.steps=3"))
    rows = []
    for s in range(3):
        rec = tr.train_step(s)
        rows.append((rec["cause/pred_change"], rec["cause/real_change"]))
    print("pred vs realised token-mean entropy change per step:", rows)
    for p, r in rows:
        assert p * r > 0, rows
        assert 0.8 < p / r < 1.25, rows


def test_steer_causal_trains_and_weights(small_cfg):
    tr = make_trainer(small_cfg("method.name=steer_causal", "trainer.micro_batch_size=3"))
    rec = tr.train_step(0)
    assert rec["m/weight_min"] < 1.0 and 0 < rec["m/steer_causal/neg_frac"] < 1
    assert rec["optimizer_steps"] == tr.cfg.trainer.num_mini_batches
    assert "cause/pred_change" in rec
