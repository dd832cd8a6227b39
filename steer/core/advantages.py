"""Advantage estimators and advantage shaping (paper Eq. 1, appendix B Table 3; spec methods.md §2-10).

Every estimator is one registered function ``fn(batch: RolloutBatch, config) -> Tensor`` whose
body is its math (the way verl's ``core_algos.py`` registers its estimators). It reads the
per-response outcome rewards ``batch.rewards`` (B,), the group ids ``batch.group_ids`` (B,)
(responses with the same id were sampled from the same prompt; any integer values), the response
mask ``batch.response_mask`` (B, T) and what else it declares (``old_logp``, ``old_entropy``), and
returns the (B, T) token advantages: float32 (float64 when the rewards are float64), exactly 0 on
padding, never NaN. Its parameters come from its params dataclass (published defaults, checked
once there) and :class:`steer.core.parts.CommonParams` (``norm_adv_by_std``, ``adv_epsilon``).
Call them through :meth:`steer.core.registry.Method.compute_advantages`. Advantages are constants
for the policy loss: every input is detached.

Conventions shared by all functions (documented once here):

- Group statistics use the unbiased standard deviation (``torch.std``'s default, as verl's
  ``compute_grpo_outcome_advantage`` and TRL do) and ``(R - mean) / (std + adv_epsilon)``.
- A group whose rewards are all equal gets advantage 0 (never NaN, also with ``adv_epsilon = 0``).
- A singleton group (one response) follows verl: mean 0 and std 1, so its advantage is
  ``R / (1 + adv_epsilon)`` (or ``R`` without std normalisation).
- An empty response (no valid token) keeps its reward in its group's statistics; its token
  advantages are all padding, i.e. 0. Means over a response's tokens are 0 for an empty response.
- "Correct" / "successful" means ``reward > success_threshold`` (default 0.0, which works for
  both the paper's +1/-1 rewards and 0/1 rewards).
- Non-finite rewards, or non-finite log-probs / entropies on valid tokens, raise ValueError.

:func:`shape_entropy_advantage` acts on token advantages that were already computed (the verl loss
applies it to verl's own GRPO advantage).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from steer.core.errors import NonFiniteError
from steer.core.parts import NoParams, check_choice, check_range, register_advantage
from steer.core.types import as_bool_mask

__all__ = [
    "EdgeGRPOParams",
    "EntropyAdvParams",
    "GRPOSParams",
    "GTPOParams",
    "PPLParams",
    "PSRNSRParams",
    "PositionParams",
    "UnlikelinessParams",
    "edge_grpo",
    "entropy_adv",
    "group_index",
    "grpo",
    "grpo_s",
    "gtpo",
    "opo",
    "position",
    "ppl",
    "psr_nsr",
    "shape_entropy_advantage",
    "unlikeliness",
]


# --------------------------------------------------------------------------------------------
# helpers


def _float(x: Tensor) -> Tensor:
    x = x.detach()
    return x if x.dtype == torch.float64 else x.float()


def _check_inputs(rewards: Tensor, group_ids: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Validate shapes/values; return (float rewards (B,), group ids (B,), bool mask (B,T))."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (B,), got shape {tuple(rewards.shape)}")
    if group_ids.dim() != 1 or group_ids.shape[0] != rewards.shape[0]:
        raise ValueError(
            f"group_ids must have shape (B,) = {tuple(rewards.shape)}, got {tuple(group_ids.shape)}"
        )
    if group_ids.is_floating_point() or group_ids.is_complex():
        raise ValueError(f"group_ids must be an integer tensor, got {group_ids.dtype}")
    if response_mask.dim() != 2 or response_mask.shape[0] != rewards.shape[0]:
        raise ValueError(
            f"response_mask must have shape (B, T) with B = {rewards.shape[0]}, got {tuple(response_mask.shape)}"
        )
    r = _float(rewards)
    if not bool(torch.isfinite(r).all()):
        raise NonFiniteError(
            "rewards contain NaN or inf", name="rewards", count=int((~torch.isfinite(r)).sum())
        )
    return r, group_ids.detach(), as_bool_mask(response_mask.detach())


def _check_token_tensor(name: str, x: Tensor, mask: Tensor) -> Tensor:
    if tuple(x.shape) != tuple(mask.shape):
        raise ValueError(
            f"{name} must have the shape of response_mask {tuple(mask.shape)}, got {tuple(x.shape)}"
        )
    xf = _float(x)
    if bool((mask & ~torch.isfinite(xf)).any()):
        raise NonFiniteError(
            f"{name} contains NaN or inf on valid (mask=True) tokens",
            name=name,
            count=int((mask & ~torch.isfinite(xf)).sum()),
        )
    return torch.where(mask, xf, torch.zeros((), dtype=xf.dtype, device=xf.device))


def group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """Map arbitrary group ids (B,) to contiguous indices 0..G-1; returns (index (B,), G)."""
    uniq, inv = torch.unique(group_ids, return_inverse=True)
    return inv, int(uniq.numel())


def _group_sum(values: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    out = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    return out.index_add_(0, inv, values)


def _group_max_min(values: Tensor, inv: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group max and min (each (G,)) of ``values`` (B,); groups without members give -inf / +inf."""
    gmax = torch.full((n_groups,), -math.inf, dtype=values.dtype, device=values.device)
    gmin = torch.full((n_groups,), math.inf, dtype=values.dtype, device=values.device)
    gmax = gmax.scatter_reduce(0, inv, values, "amax", include_self=True)
    gmin = gmin.scatter_reduce(0, inv, values, "amin", include_self=True)
    return gmax, gmin


def _group_mean_std(values: Tensor, inv: Tensor, n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-response group mean, unbiased group std and group size (each (B,)).

    Singleton groups get mean 0 and std 1 (verl's convention). A group (of >= 2) whose values are
    all equal (max == min) gets exactly that value as mean and std 0, so its centred values are
    exactly 0: the summed mean of e.g. float32 0.1 is not exactly 0.1, and dividing that rounding
    residue by a rounding-sized std would give O(1) advantages.
    """
    ones = torch.ones_like(values)
    count = _group_sum(ones, inv, n_groups)
    mean_g = _group_sum(values, inv, n_groups) / count
    dev = values - mean_g[inv]
    var_g = _group_sum(dev * dev, inv, n_groups) / (count - 1).clamp(min=1)
    std_g = var_g.sqrt()
    gmax, gmin = _group_max_min(values, inv, n_groups)
    equal = gmax == gmin
    mean_g = torch.where(equal, gmax, mean_g)
    std_g = torch.where(equal, torch.zeros_like(std_g), std_g)
    single = count == 1
    mean_g = torch.where(single, torch.zeros_like(mean_g), mean_g)
    std_g = torch.where(single, torch.ones_like(std_g), std_g)
    return mean_g[inv], std_g[inv], count[inv]


def _standardise(
    values: Tensor, inv: Tensor, n_groups: int, epsilon: float, norm_by_std: bool = True
) -> Tensor:
    """(x - group mean) / (group std + epsilon); 0 where all of a group's values are equal."""
    mean, std, _ = _group_mean_std(values, inv, n_groups)
    centred = values - mean
    if not norm_by_std:
        return centred
    out = centred / (std + epsilon)
    # Equal values in a (non-singleton) group: exactly 0 even with epsilon = 0.
    return torch.where(std > 0, out, torch.where(centred == 0, torch.zeros_like(out), out))


def _broadcast(seq_values: Tensor, mask: Tensor) -> Tensor:
    """(B,) -> (B, T), 0 on padding."""
    zero = torch.zeros((), dtype=seq_values.dtype, device=seq_values.device)
    return torch.where(mask, seq_values[:, None].expand(mask.shape), zero)


def _response_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over each response's valid tokens (B,); 0 for an empty response."""
    n = mask.sum(dim=-1)
    s = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=-1)
    return s / n.clamp(min=1).to(s.dtype)


_OLD_ENTROPY = frozenset({"old_entropy"})
_OLD_LOGP = frozenset({"old_logp"})


# --------------------------------------------------------------------------------------------
# GRPO / Dr. GRPO / OPO / PSR-NSR


def _grpo(batch, norm_adv_by_std: bool, epsilon: float) -> Tensor:
    """Eq. 1's ``(R - mean_group R) / (std_group R + epsilon)`` (no std: ``R - mean``), (B, T)."""
    r, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    inv, g = group_index(gid)
    return _broadcast(_standardise(r, inv, g, epsilon, norm_adv_by_std), mask)


@register_advantage("grpo")
def grpo(batch, c) -> Tensor:
    """GRPO outcome advantage, paper Eq. 1: ``A_i = (R_i - mean_group R) / (std_group R + epsilon)``.

    ``norm_adv_by_std=False`` gives Dr. GRPO's ``A_i = R_i - mean_group R`` (spec methods.md §10).
    ``adv_epsilon`` = 1e-6 as in verl's ``compute_grpo_outcome_advantage``. Broadcast to every valid
    token. Equal-reward groups give 0; singleton groups ``R / (1 + epsilon)`` (module docstring).
    """
    return _grpo(batch, c.norm_adv_by_std, c.adv_epsilon)


@register_advantage("opo")
def opo(batch, c) -> Tensor:
    """OPO: length-weighted optimal baseline (Hao et al. 2025; spec methods.md §9), no std.

    ``b = sum_i |o_i| R_i / sum_i |o_i|`` over the group, ``A_i = R_i - b``. A singleton group gets
    ``b = 0`` (verl's ``compute_opo_outcome_advantage``); a group whose responses are all empty gets
    ``b = 0`` too (every token is padding, so the value never reaches the loss).
    Table row: "OPO" (paper section 5 baselines).
    """
    r, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    inv, g = group_index(gid)
    lengths = mask.sum(dim=-1).to(r.dtype)
    num = _group_sum(lengths * r, inv, g)
    den = _group_sum(lengths, inv, g)
    count = _group_sum(torch.ones_like(r), inv, g)
    b = torch.where((count > 1) & (den > 0), num / den.clamp(min=1), torch.zeros_like(num))
    return _broadcast(r - b[inv], mask)


_PSR_MODES = ("positive", "negative", "weighted")


@dataclass(kw_only=True)
class PSRNSRParams(NoParams):
    """``mode`` positive (PSR) / negative (NSR) / weighted (W-REINFORCE, lambda = ``positive_weight``)."""

    mode: str = "weighted"
    positive_weight: float = 0.1
    success_threshold: float = 0.0

    def validate(self) -> None:
        check_choice("mode", self.mode, _PSR_MODES)
        check_range("positive_weight", self.positive_weight, 0.0)
        super().validate()


@register_advantage("psr_nsr", params=PSRNSRParams)
def psr_nsr(batch, c) -> Tensor:
    """PSR / NSR / W-REINFORCE (Zhu et al. 2025; spec methods.md §5; paper Table 3 "W-REINFORCE").

    No baseline; ``mode``:
    - ``"positive"`` (PSR): A = +1 on correct responses, 0 on incorrect ones;
    - ``"negative"`` (NSR): A = 0 on correct, -1 on incorrect;
    - ``"weighted"`` (W-REINFORCE): A = +``positive_weight`` (lambda, default 0.1) on correct,
      -1 on incorrect.
    Correct means ``reward > success_threshold``. ``group_ids`` is validated but not used
    (the method has no group baseline).
    """
    r, _, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    correct = r > c.success_threshold
    one = torch.ones_like(r)
    zero = torch.zeros_like(r)
    if c.mode == "positive":
        a = torch.where(correct, one, zero)
    elif c.mode == "negative":
        a = torch.where(correct, zero, -one)
    else:
        a = torch.where(correct, one * c.positive_weight, -one)
    return _broadcast(a, mask)


# --------------------------------------------------------------------------------------------
# Unlikeliness reward


def _rank_within_group(values: Tensor, inv: Tensor) -> Tensor:
    """Ascending rank of each value inside its group (0 = smallest); ties by batch position."""
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(inv[order], stable=True)]  # grouped, ascending inside each group
    sorted_inv = inv[order]
    pos = torch.arange(values.numel(), device=values.device)
    first = torch.ones_like(sorted_inv, dtype=torch.bool)
    first[1:] = sorted_inv[1:] != sorted_inv[:-1]
    start = torch.where(first, pos, torch.zeros_like(pos))
    start = torch.cummax(start, dim=0).values
    rank = torch.empty_like(pos)
    rank[order] = pos - start
    return rank


@dataclass(kw_only=True)
class UnlikelinessParams(NoParams):
    beta_rank: float = 0.25
    success_threshold: float = 0.0

    def validate(self) -> None:
        check_range("beta_rank", self.beta_rank, 0.0)
        super().validate()


@register_advantage("unlikeliness", params=UnlikelinessParams, requires=_OLD_LOGP)
def unlikeliness(batch, c) -> Tensor:
    """Unlikeliness reward (He, Fried, Welleck 2025; spec methods.md §6; paper Table 3 "Unlikelihood").

    The reference code scores a proof 1 (correct) or 0 (wrong), so wrong samples stay at 0 under
    the rank penalty. Rewards are therefore first mapped to ``R_i = 1[reward_i > success_threshold]``
    (default 0.0): +1/-1 and 0/1 rewards give the same advantages, those of the reference code
    (without the mapping a -1 reward would become a rank-dependent ``-(1 - beta rank/G)``). Graded
    rewards are binarised by the same threshold.

    Each response's likelihood is its mean token log-prob under the old policy (over valid tokens;
    0 for an empty response). ``rank_i`` is its ascending position inside the group over *all* G
    samples (0 = least likely, G-1 = most likely; ties by batch position). Modified reward
    ``R~_i = R_i (1 - beta_rank * rank_i / G)`` (beta_rank = 0.25), then GRPO normalisation
    ``(R~ - mean) / (std + adv_epsilon)`` with adv_epsilon = 1e-6.
    """
    r, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    r = (r > c.success_threshold).to(r.dtype)
    lp = _check_token_tensor("old_logp", batch.old_logp, mask)
    inv, g = group_index(gid)
    mean_lp = _response_mean(lp, mask)
    rank = _rank_within_group(mean_lp, inv).to(r.dtype)
    size = _group_sum(torch.ones_like(r), inv, g)[inv]
    r_mod = r * (1.0 - c.beta_rank * rank / size)
    return _broadcast(_standardise(r_mod, inv, g, c.adv_epsilon), mask)


# --------------------------------------------------------------------------------------------
# Entropy advantage (Cheng et al.)


def shape_entropy_advantage(
    advantages: Tensor, entropy: Tensor, response_mask: Tensor, *, alpha: float, kappa: float
) -> Tensor:
    """Cheng et al.'s shaping of token advantages that were already computed:
    ``A~ = A + min(alpha * H_detached, |A| / kappa)`` on valid tokens, 0 on padding (entropies
    clamped at 0 from below). ``alpha`` and ``kappa`` are :class:`EntropyAdvParams`' (checked there);
    the verl loss applies it to verl's GRPO advantage."""
    mask = as_bool_mask(response_mask.detach())
    a = _check_token_tensor("advantages", advantages, mask)
    h = _check_token_tensor("entropy", entropy, mask).clamp(min=0).to(a.dtype)
    bonus = torch.minimum(alpha * h, a.abs() / kappa)
    return torch.where(mask, a + bonus, torch.zeros_like(a))


@dataclass(kw_only=True)
class EntropyAdvParams(NoParams):
    alpha: float = 0.4
    kappa: float = 2.0

    def validate(self) -> None:
        check_range("alpha", self.alpha, 0.0)
        check_range("kappa", self.kappa, 1.0, lo_open=True)
        super().validate()


@register_advantage("entropy_adv", params=EntropyAdvParams, requires=_OLD_ENTROPY)
def entropy_adv(batch, c) -> Tensor:
    """Entropy advantage A + min(alpha H, |A| / kappa) (Cheng et al. 2025; spec methods.md §2;
    paper Table 3 "Entropy Advantage").

    The GRPO advantage (Eq. 1) shaped by :func:`shape_entropy_advantage` with the entropy of the
    distribution each token was sampled from (``old_entropy``; identical to the current one on
    the first on-policy mini-batch). The bonus is >= 0 and at most |A|/kappa, so the sign of A
    never flips and A = 0 gets no bonus. kappa = 2; alpha = 0.4 is the GRPO-setting value of a
    re-implementation (0.1 for PPO): **alpha per base algorithm is not verified from the paper**.
    """
    a = _grpo(batch, c.norm_adv_by_std, c.adv_epsilon)
    return shape_entropy_advantage(a, batch.old_entropy, batch.response_mask, alpha=c.alpha, kappa=c.kappa)


# --------------------------------------------------------------------------------------------
# GTPO and GRPO-S (Tan & Pan)

#: entropies (and their group sums) are floored here so that 1/H stays finite
_ENTROPY_FLOOR = 1e-6


def _token_group_standardise(x: Tensor, mask: Tensor, inv: Tensor, n_groups: int, epsilon: float) -> Tensor:
    """z-score of token values over all valid tokens of each group (unbiased std); 0 on padding.

    A group whose valid tokens all carry the same value gets exactly 0. "The same" allows a
    relative spread of 64 machine epsilons of the dtype: shaped values such as GTPO's
    ``H / (sum H) * d`` are equal in exact arithmetic but not after rounding, and a z-score
    would blow that rounding up to O(1) advantages.
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    xv = torch.where(mask, x, zero)
    n_tok = _group_sum(mask.sum(-1).to(x.dtype), inv, n_groups)
    s = _group_sum(xv.sum(-1), inv, n_groups)
    mean_g = s / n_tok.clamp(min=1)
    const_g = torch.zeros_like(mean_g, dtype=torch.bool)
    if x.shape[-1] > 0:
        # per-group max/min over valid tokens (rows without valid tokens give -inf/+inf: no effect)
        row_max = torch.where(mask, x, torch.full((), -math.inf, dtype=x.dtype, device=x.device)).amax(-1)
        row_min = torch.where(mask, x, torch.full((), math.inf, dtype=x.dtype, device=x.device)).amin(-1)
        gmax, _ = _group_max_min(row_max, inv, n_groups)
        _, gmin = _group_max_min(row_min, inv, n_groups)
        tol = 64 * torch.finfo(x.dtype).eps * torch.maximum(gmax.abs(), gmin.abs())
        const_g = (gmax - gmin) <= tol
        mean_g = torch.where(gmax == gmin, gmax, mean_g)
    mean = mean_g[inv][:, None]
    dev = torch.where(mask & ~const_g[inv][:, None], x - mean, zero)
    var = _group_sum((dev * dev).sum(-1), inv, n_groups) / (n_tok - 1).clamp(min=1)
    std = var.sqrt()[inv][:, None]
    z = dev / (std + epsilon)
    z = torch.where(std > 0, z, torch.where(dev == 0, zero, z))
    return torch.where(mask, z, zero)


@dataclass(kw_only=True)
class GTPOParams(NoParams):
    """``alpha1`` / ``alpha2`` have no verified published default (required)."""

    alpha1: float = dataclasses.MISSING  # type: ignore[assignment]
    alpha2: float = dataclasses.MISSING  # type: ignore[assignment]
    success_threshold: float = 0.0

    def validate(self) -> None:
        check_range("alpha1", self.alpha1, 0.0)
        check_range("alpha2", self.alpha2, 0.0)
        super().validate()


@register_advantage("gtpo", params=GTPOParams, requires=_OLD_ENTROPY)
def gtpo(batch, c) -> Tensor:
    """GTPO token-level entropy-shaped reward (Tan & Pan 2025; spec methods.md §3; paper Table 3 "GTPO").

    Within each group, O+ = successful responses (reward > success_threshold), O- = the others;
    ``H_{k,t}`` is the (rollout) entropy of response k at position t, absent once k has ended.

    - successful token: ``r~_{i,t} = alpha1 r_i + alpha2 (H_{i,t} / sum_{k in O+} H_{k,t}) d_t``,
      ``d_t`` = number of O+ responses still active at t;
    - failed token: ``r~_{j,t} = alpha1 r_j + alpha2 (H_{j,t}^-1 / sum_{k in O-} H_{k,t}^-1) h_t r_j``,
      ``h_t`` = number of active O- responses (with r_j = -1 low-entropy errors are penalised more;
      with 0/1 rewards the failure term vanishes because it is multiplied by r_j = 0).

    **alpha1 and alpha2 have no verified published default (the paper states alpha1 + alpha2 = 1),
    so both are required.** Entropies are floored at 1e-6 (so H^-1 stays finite).

    Normalisation (a choice; arXiv versions differ): token advantages are the z-scores of r~ over
    *all valid tokens of the group jointly* (unbiased std + adv_epsilon). Normalising per polarity
    would centre successful and failed tokens separately and erase the success/failure contrast,
    so it is not offered. A group whose r~ are all equal gets 0.
    """
    floor = _ENTROPY_FLOOR
    r, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    h = _check_token_tensor("entropy", batch.old_entropy, mask).to(r.dtype).clamp(min=floor)
    inv, g = group_index(gid)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    succ = (r > c.success_threshold)[:, None] & mask  # active O+ tokens
    fail = (r <= c.success_threshold)[:, None] & mask  # active O- tokens
    t_len = mask.shape[1]
    # Per (group, position) sums over the active members of each polarity.
    h_pos = torch.where(succ, h, zero)
    hinv_neg = torch.where(fail, 1.0 / h, zero)
    sum_h_pos = torch.zeros(g, t_len, dtype=r.dtype, device=r.device).index_add_(0, inv, h_pos)
    sum_hinv_neg = torch.zeros(g, t_len, dtype=r.dtype, device=r.device).index_add_(0, inv, hinv_neg)
    d_t = torch.zeros(g, t_len, dtype=r.dtype, device=r.device).index_add_(0, inv, succ.to(r.dtype))
    h_t = torch.zeros(g, t_len, dtype=r.dtype, device=r.device).index_add_(0, inv, fail.to(r.dtype))
    share_pos = h_pos / sum_h_pos[inv].clamp(min=floor) * d_t[inv]
    share_neg = hinv_neg / sum_hinv_neg[inv].clamp(min=floor) * h_t[inv]
    base = c.alpha1 * r[:, None]
    shaped = torch.where(
        succ, base + c.alpha2 * share_pos, torch.where(fail, base + c.alpha2 * share_neg * r[:, None], zero)
    )
    return _token_group_standardise(shaped, mask, inv, g, c.adv_epsilon)


@dataclass(kw_only=True)
class GRPOSParams(NoParams):
    """``beta1`` / ``beta2`` have no verified published default (required)."""

    beta1: float = dataclasses.MISSING  # type: ignore[assignment]
    beta2: float = dataclasses.MISSING  # type: ignore[assignment]
    success_threshold: float = 0.0

    def validate(self) -> None:
        check_range("beta1", self.beta1, 0.0)
        check_range("beta2", self.beta2, 0.0)
        super().validate()


@register_advantage("grpo_s", params=GRPOSParams, requires=_OLD_ENTROPY)
def grpo_s(batch, c) -> Tensor:
    """GRPO-S sequence-level entropy-shaped reward (Tan & Pan 2025; spec methods.md §3).

    ``H^_i`` = mean token entropy of response i (valid tokens, floored at 1e-6).
    Success: ``r^_i = beta1 r_i + beta2 (H^_i / sum_{k in O+} H^_k) n``; failure:
    ``r^_j = beta1 r_j + beta2 (H^_j^-1 / sum_{k in O-} H^_k^-1) m r_j`` (n, m = sizes of O+, O-).
    ``A_i = (r^_i - mean) / (std + adv_epsilon)`` over the group, broadcast to tokens.
    An empty response (no valid token, so no entropy) is left out of the share sums and of n, m
    and keeps only its base term ``beta1 r`` (its floored mean entropy would otherwise give
    ``1/H = 1/floor`` and take the whole failure share); it stays in the group statistics.
    **beta1 and beta2 have no verified published default, so both are required.**
    """
    floor = _ENTROPY_FLOOR
    r, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    h = _check_token_tensor("entropy", batch.old_entropy, mask).to(r.dtype)
    inv, g = group_index(gid)
    h_seq = _response_mean(h, mask).clamp(min=floor)
    filled = mask.any(dim=-1)  # empty responses have no entropy: left out of shares and counts
    succ = (r > c.success_threshold) & filled
    fail = (r <= c.success_threshold) & filled
    zero = torch.zeros_like(r)
    h_pos = torch.where(succ, h_seq, zero)
    hinv_neg = torch.where(fail, 1.0 / h_seq, zero)
    n = _group_sum(succ.to(r.dtype), inv, g)[inv]
    m = _group_sum(fail.to(r.dtype), inv, g)[inv]
    share_pos = h_pos / _group_sum(h_pos, inv, g)[inv].clamp(min=floor) * n
    share_neg = hinv_neg / _group_sum(hinv_neg, inv, g)[inv].clamp(min=floor) * m
    shaped = c.beta1 * r + c.beta2 * torch.where(succ, share_pos, torch.where(fail, share_neg * r, zero))
    return _broadcast(_standardise(shaped, inv, g, c.adv_epsilon), mask)


# --------------------------------------------------------------------------------------------
# EDGE-GRPO entropy-driven advantage


@dataclass(kw_only=True)
class EdgeGRPOParams(NoParams):
    padded_mean: bool = False


@register_advantage("edge_grpo", params=EdgeGRPOParams, requires=_OLD_ENTROPY)
def edge_grpo(batch, c) -> Tensor:
    """EDGE-GRPO's Entropy-Driven Advantage, EDA (Zhang et al. 2025; spec methods.md §4; Table 3 "EDGE-GRPO").

    ``A_i`` = GRPO advantage with std normalisation and ``adv_epsilon`` (1e-4 in the method's row:
    TRL's ``scale_rewards=True``); ``P_i`` = mean token entropy of response i;
    ``P^_i = P_i / mean_{j in group} P_j``; ``A^_i = A_i / P^_i``. Low-entropy (confident)
    responses get amplified advantages.

    Choices on the released code's quirks (spec §4):
    (a) the code averages the entropy over the *padded* completion length; the paper means the
        response tokens. Default: response tokens (``padded_mean=False``); ``padded_mean=True``
        reproduces the code (mean over all T positions, padding counted as 0 entropy here).
    (b) the code does not detach P_i, so gradient flows through the denominator. Here advantages
        are constants computed from the (rollout) entropy, i.e. P is detached.
    ``P_i`` is floored at 1e-6 so A^ stays finite; empty responses (no tokens, no entropy) are
    left out of the group mean of P; a group with mean P = 0 (e.g. only empty responses) gets
    ``P^ = 1``. Guided Error Correction (GEC) is a rollout-time intervention (it rewrites and
    regenerates wrong responses) and is *not* part of the core.
    """
    a = _grpo(batch, True, c.adv_epsilon)
    _, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    h = _check_token_tensor("entropy", batch.old_entropy, mask).to(a.dtype)
    inv, g = group_index(gid)
    if c.padded_mean:
        p = h.sum(-1) / max(mask.shape[1], 1)
    else:
        p = _response_mean(h, mask)
    p = p.clamp(min=_ENTROPY_FLOOR)
    filled = mask.any(dim=-1).to(p.dtype)  # empty responses are left out of the group mean of P
    count = _group_sum(filled, inv, g)
    mean_p = (_group_sum(p * filled, inv, g) / count.clamp(min=1))[inv]
    p_hat = torch.where(mean_p > 0, p / mean_p, torch.ones_like(p))
    return torch.where(mask, a / p_hat[:, None], torch.zeros_like(a))


# --------------------------------------------------------------------------------------------
# Deng et al.: PPL-based and position-based shaping


@dataclass(kw_only=True)
class PPLParams(NoParams):
    """``alpha`` has no verified published default (required)."""

    alpha: float = dataclasses.MISSING  # type: ignore[assignment]
    standardize: bool = True

    def validate(self) -> None:
        check_range("alpha", self.alpha, 0.0)
        super().validate()


@register_advantage("ppl", params=PPLParams, requires=_OLD_LOGP)
def ppl(batch, c) -> Tensor:
    """PPL-based advantage shaping (Deng et al. 2025; spec methods.md §8; paper Table 3 "PPL-based").

    ``A^_{i,t} = A_{i,t} (1 - alpha * z_i)`` with ``A`` the GRPO advantage and ``z_i`` the group
    z-score of ``ln PPL(o_i) = -mean_t log pi_old(o_{i,t})`` (``standardize=False`` uses ln PPL
    itself, the form printed in the seed paper's Table 3). Lower-perplexity responses get larger
    weight. **Form and alpha are not verified (no released code); alpha is required.** Note the
    factor can change sign when ``alpha * z > 1``; it is not clipped.
    """
    a = _grpo(batch, c.norm_adv_by_std, c.adv_epsilon)
    _, gid, mask = _check_inputs(batch.rewards, batch.group_ids, batch.response_mask)
    lp = _check_token_tensor("old_logp", batch.old_logp, mask).to(a.dtype)
    log_ppl = -_response_mean(lp, mask)
    if c.standardize:
        inv, g = group_index(gid)
        log_ppl = _standardise(log_ppl, inv, g, c.adv_epsilon)
    factor = 1.0 - c.alpha * log_ppl
    return torch.where(mask, a * factor[:, None], torch.zeros_like(a))


_SIGMAS = ("linear", "sigmoid")


@dataclass(kw_only=True)
class PositionParams(NoParams):
    """``gamma`` and ``sigma`` (linear / sigmoid) have no verified published default (required)."""

    gamma: float = dataclasses.MISSING  # type: ignore[assignment]
    sigma: str = dataclasses.MISSING  # type: ignore[assignment]
    sharpness: float = 10.0
    center: float = 0.5

    def validate(self) -> None:
        check_range("gamma", self.gamma, 0.0)
        check_choice("sigma", self.sigma, _SIGMAS)
        super().validate()


@register_advantage("position", params=PositionParams)
def position(batch, c) -> Tensor:
    """Position-based shaping (Deng et al. 2025; spec §8; paper Table 3 "Position-based").

    ``A^_{i,t} = A_{i,t} + gamma * sign(A_{i,t}) * sigma(p_{i,t})`` with ``A`` the GRPO advantage
    (Eq. 1) and relative position ``p_{i,t} = t / |o_i|`` (t = 1..|o_i| counted over valid tokens,
    so the last token has p = 1). ``sigma``: ``"linear"`` is ``sigma(p) = p``; ``"sigmoid"`` is
    ``1 / (1 + exp(-sharpness (p - center)))`` (sharpness 10, center 0.5 are our choices).
    **Form, gamma and sigma are not verified (no released code); gamma and sigma are required.**
    """
    a = _grpo(batch, c.norm_adv_by_std, c.adv_epsilon)
    mask = as_bool_mask(batch.response_mask.detach())
    pos = torch.cumsum(mask.to(a.dtype), dim=-1)
    length = mask.sum(-1, keepdim=True).clamp(min=1).to(a.dtype)
    rel = pos / length
    ramp = rel if c.sigma == "linear" else torch.sigmoid(c.sharpness * (rel - c.center))
    return torch.where(mask, a + c.gamma * torch.sign(a) * ramp, torch.zeros_like(a))
