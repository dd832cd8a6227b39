"""The advantage path of the advantage-level methods and STEER's wider max|Omega| scopes."""

from __future__ import annotations

import math

import torch

from steer.core.types import LossBatch, RolloutBatch
from tests.trl.helpers import make_trainer, synthetic_inputs


def test_advantages_come_from_the_core_on_complete_groups(tokenizer, tmp_path):
    tr = make_trainer(
        tokenizer,
        tmp_path,
        steer=True,
        steer_method="gtpo",
        steer_method_kwargs={"alpha1": 0.5, "alpha2": 0.5},
    )
    tr.model.train()
    g = torch.Generator().manual_seed(3)
    B, T = 8, 6  # two groups of num_generations = 4
    mask = (torch.arange(T)[None, :] < torch.tensor([6, 3, 1, 4, 5, 2, 6, 0])[:, None]).long()
    out = {"completion_mask": mask}
    rpf = torch.randint(0, 2, (B, 2), generator=g).float()
    rpf[5] = float("nan")  # every reward function returned None: unscorable
    rpf[6, 1] = float("nan")  # one function only: still scorable (nansum)
    tr._steer_rewards_per_func = rpf
    tr.reward_weights = torch.tensor([1.0, 0.5])
    old_logp = -torch.rand(B, T, generator=g) * 3
    old_ent = torch.rand(B, T, generator=g) * 2
    adv = tr._steer_advantages(out, old_logp, old_ent)

    keep = torch.tensor([i for i in range(B) if i != 5])
    rewards = torch.nansum(rpf * torch.tensor([1.0, 0.5]), dim=1)
    expected = torch.zeros(B, T)
    expected[keep] = tr.steer_method.compute_advantages(
        RolloutBatch(
            rewards[keep], torch.arange(B)[keep] // 4, mask.bool()[keep], old_logp[keep], old_ent[keep]
        )
    )
    assert adv.shape == (B, T)
    assert torch.equal(adv, expected)
    assert torch.equal(adv[5], torch.zeros(T)) and torch.equal(
        adv[~mask.bool()], torch.zeros(int((~mask.bool()).sum()))
    )


def _core_scope_stats(tr, inputs):
    with torch.no_grad():
        logps, ents, _ = tr._steer_forward(tr.model, inputs)
    mask = inputs["completion_mask"].bool()
    lb = LossBatch(
        logp=logps,
        old_logp=inputs["old_per_token_logps"],
        advantages=inputs["advantages"].unsqueeze(1).expand_as(logps),
        response_mask=mask,
        entropy=ents,
        lr=tr._steer_lr(),
    )
    return tr.steer_method.scope_stats(lb)["omega_max"]


def test_minibatch_scope_takes_the_max_over_the_optimiser_step(tokenizer, tmp_path):
    tr = make_trainer(
        tokenizer,
        tmp_path,
        steer=True,
        steer_method="steer",
        steer_method_kwargs={"scope": "minibatch"},
        gradient_accumulation_steps=2,
    )
    tr.model.train()
    tr.current_gradient_accumulation_steps = 2
    mbs = [synthetic_inputs(tr, seed=s) for s in (1, 2)]
    tr._buffered_inputs = mbs
    own = [float(_core_scope_stats(tr, mb)) for mb in mbs]
    assert own[0] != own[1]
    used = []
    for step, mb in enumerate(mbs):
        tr._step = step
        tr._compute_loss(tr.model, dict(mb))
        used.append(float(tr._steer_scope_cache[1]["omega_max"]))
    assert used[0] == used[1] and math.isclose(used[0], max(own), rel_tol=1e-6)
    m = tr._steer_acc["train"].result()
    assert math.isclose(m["steer/omega_max"], max(own), rel_tol=1e-6)
