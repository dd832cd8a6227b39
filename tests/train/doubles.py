"""A private test double of a registry Method (used only where a test must not depend on the
method registry): GRPO advantages (Eq. 1) and the clipped token-mean surrogate (Eq. 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Cfg:
    eps_low: float = 0.2
    eps_high: float = 0.2


class DoubleGRPO:
    name = "double_grpo"
    needs_old_entropy = False
    needs_entropy = False
    needs_sums = False
    needs_ref = False

    def __init__(self, **kw):
        self.config = _Cfg(**kw)
        self.calls = 0

    def compute_advantages(self, batch):
        r = batch.rewards.float()
        adv = torch.zeros_like(r)
        for g in batch.group_ids.unique():
            sel = batch.group_ids == g
            x = r[sel]
            adv[sel] = (x - x.mean()) / (x.std(unbiased=False) + 1e-6) if sel.sum() > 1 else 0.0
        return adv[:, None] * batch.response_mask.float()

    def compute_loss(self, b):
        self.calls += 1
        ratio = torch.exp(b.logp - b.old_logp)
        a = b.advantages
        c = self.config
        l = torch.maximum(-a * ratio, -a * ratio.clamp(1 - c.eps_low, 1 + c.eps_high))
        m = b.response_mask.float()
        n = b.global_num_tokens if b.global_num_tokens is not None else m.sum()
        loss = (l * m).sum() / n
        return loss, {"pg_loss": float(loss), "tokens": float(m.sum())}

    def on_step_end(self, metrics):
        return {}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, s):
        self.calls = s["calls"]
