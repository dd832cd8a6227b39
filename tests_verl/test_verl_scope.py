"""STEER's mini-batch scope in verl: the pre-pass on verl's engine API (``BaseEngine.train_batch``)
hands every micro-batch the max|Omega| of the whole mini-batch, so the micro-batch losses add up
to the loss of the mini-batch taken at once (Eq. 10), and scope='microbatch' keeps the released
code's per-micro-batch max."""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict import TensorDict
from verl.workers.engine.base import BaseEngine
from verl.workers.utils import losses as verl_losses
from verl_test_helpers import actor_config, make_data, model_output, random_batch

from steer.integrations.verl import SteerPolicyLossConfig

MICRO = ([0, 1], [2, 3], [4, 5], [6, 7])


class ListEngine(BaseEngine):
    """verl's BaseEngine.train_batch over a fixed list of micro-batches (no model: the flat
    log-prob leaves stand in for the model output)."""

    def __init__(self, b, n_tokens):
        self.b, self.n = b, n_tokens
        self.passes: list[dict] = []

    def optimizer_zero_grad(self):
        return None

    def optimizer_step(self):
        return 0.0

    def is_mp_src_rank_with_outputs(self):
        return True

    def get_data_parallel_group(self):
        return None

    def forward_backward_batch(self, data, loss_function, forward_only=False):
        losses, grads, metrics = [], [], []
        for rows in MICRO:
            mo, flat = model_output(self.b, rows=rows)
            d = make_data(self.b, rows=rows, batch_num_tokens=self.n, global_batch_size=8)
            loss, m = loss_function(model_output=mo, data=d, dp_group=None)
            if not forward_only:
                loss.backward()
                grads.append(flat.grad.clone())
            losses.append(loss.detach())
            metrics.append(m)
        self.passes.append(
            {"forward_only": forward_only, "losses": losses, "grads": grads, "metrics": metrics}
        )
        return {"metrics": {}}


def _whole(b, n, cfg):
    mo, flat = model_output(b)
    loss, m = verl_losses.ppo_loss(cfg, mo, make_data(b, batch_num_tokens=n, global_batch_size=8))
    loss.backward()
    return loss.detach(), flat.grad.clone(), m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minibatch_scope_pass_makes_micro_batches_add_up_to_the_mini_batch(seed):
    b = random_batch(8, 9, seed=seed, empty_rows=(5,), equal_reward_rows=(1,))
    n = int(b["mask"].sum())
    cfg = actor_config(SteerPolicyLossConfig(loss_mode="steer", scope="minibatch"))
    eng = ListEngine(b, n)
    eng.train_batch(TensorDict({}, batch_size=[8]), functools.partial(verl_losses.ppo_loss, config=cfg))
    assert [p["forward_only"] for p in eng.passes] == [True, False]  # the pre-pass, then the update
    train = eng.passes[1]
    whole_loss, whole_grad, whole_m = _whole(b, n, cfg)
    torch.testing.assert_close(sum(train["losses"]), whole_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.cat(train["grads"]), whole_grad, rtol=1e-6, atol=1e-7)
    mins = [m["actor/steer/weight_min"] for m in train["metrics"]]
    assert min(mins) == pytest.approx(0.7)  # only the mini-batch's largest |Omega| gets lambda_min
    assert sum(abs(x - 0.7) < 1e-7 for x in mins) == 1


def test_microbatch_scope_skips_the_pass_and_keeps_each_micro_batchs_max():
    b = random_batch(8, 9, seed=4)
    n = int(b["mask"].sum())
    cfg = actor_config(SteerPolicyLossConfig(loss_mode="steer", scope="microbatch"))
    eng = ListEngine(b, n)
    eng.train_batch(TensorDict({}, batch_size=[8]), functools.partial(verl_losses.ppo_loss, config=cfg))
    assert [p["forward_only"] for p in eng.passes] == [False]
    mins = [m["actor/steer/weight_min"] for m in eng.passes[0]["metrics"]]
    assert mins == pytest.approx([0.7] * len(MICRO))


def test_other_loss_modes_are_untouched_by_the_scope_pass():
    from verl.workers.config.actor import PolicyLossConfig

    b = random_batch(8, 9, seed=5)
    eng = ListEngine(b, int(b["mask"].sum()))
    eng.train_batch(
        TensorDict({}, batch_size=[8]),
        functools.partial(verl_losses.ppo_loss, config=actor_config(PolicyLossConfig())),
    )
    assert [p["forward_only"] for p in eng.passes] == [False]
