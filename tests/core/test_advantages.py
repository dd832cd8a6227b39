"""Advantage estimators against independent float64 loop references (spec methods.md §2-10)."""

from __future__ import annotations

import math

import pytest
import torch

from steer.core import advantages as A
from steer.core.registry import build_method
from steer.core.types import RolloutBatch

#: estimator -> (a method row that uses it with the estimator's own defaults, the RolloutBatch field
#: its extra tensor fills)
_ROWS = {
    "grpo": ("grpo", None),
    "opo": ("opo", None),
    "psr_nsr": ("w_reinforce", None),
    "unlikeliness": ("unlikeliness", "old_logp"),
    "entropy_adv": ("entropy_adv", "old_entropy"),
    "gtpo": ("gtpo", "old_entropy"),
    "grpo_s": ("grpo_s", "old_entropy"),
    "edge_grpo": ("edge_grpo", "old_entropy"),
    "ppl": ("ppl_adv", "old_logp"),
    "position": ("position_adv", None),
}


def advantages_of(estimator, rewards, group_ids, mask, extra=None, *, epsilon=None, **params):
    """The registered advantage estimator through the one pipeline (``Method.compute_advantages``);
    ``extra`` is its old_logp or old_entropy, ``epsilon`` the config's ``adv_epsilon``."""
    row, field = _ROWS[estimator]
    if epsilon is not None:
        params["adv_epsilon"] = epsilon
    m = build_method(row, **params)
    assert m.config.advantage == estimator
    kw = {field: extra} if field is not None else {}
    return m.compute_advantages(RolloutBatch(rewards, group_ids, mask, **kw))


# ------------------------------------------------------------------------------------------
# random batches and plain-Python references


def make_batch(seed: int, b: int = 14, t: int = 9, binary: bool = True):
    """Groups of various sizes (incl. a singleton and an equal-reward group), padding, empty rows."""
    g = torch.Generator().manual_seed(seed)
    group_ids = torch.tensor([5, 5, 5, 5, 2, 2, 2, 9, 7, 7, 7, 3, 3, 3][:b])
    if binary:
        rewards = torch.randint(0, 2, (b,), generator=g).double() * 2 - 1
    else:
        rewards = torch.rand(b, generator=g, dtype=torch.float64)
    rewards[4:7] = 1.0  # group 2: all equal
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    lengths[1] = 0  # an empty response in group 5
    mask = torch.arange(t)[None, :] < lengths[:, None]
    old_logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 4
    entropy = torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    # garbage on padding must never matter
    old_logp = torch.where(mask, old_logp, torch.full_like(old_logp, float("nan")))
    entropy = torch.where(mask, entropy, torch.full_like(entropy, float("inf")))
    return rewards, group_ids, mask, old_logp, entropy


def groups_of(group_ids):
    out: dict[int, list[int]] = {}
    for i, gid in enumerate(group_ids.tolist()):
        out.setdefault(gid, []).append(i)
    return out


def mean_std(values):
    n = len(values)
    if n == 1:
        return 0.0, 1.0
    mu = sum(values) / n
    var = sum((v - mu) ** 2 for v in values) / (n - 1)
    return mu, math.sqrt(var)


def zscore(values, eps):
    """Group z-score; a group (of >= 2) whose values are all equal gets exactly 0."""
    if len(values) > 1 and max(values) == min(values):
        return [0.0] * len(values)
    mu, sd = mean_std(values)
    return [(v - mu) / (sd + eps) for v in values]


def broadcast(seq_vals, mask):
    b, t = mask.shape
    out = torch.zeros(b, t, dtype=torch.float64)
    for i in range(b):
        for j in range(t):
            if mask[i, j]:
                out[i, j] = seq_vals[i]
    return out


def resp_mean(x, mask, i):
    vals = [float(x[i, j]) for j in range(mask.shape[1]) if mask[i, j]]
    return sum(vals) / len(vals) if vals else 0.0


def ref_grpo(rewards, group_ids, mask, norm=True, eps=1e-6):
    r = rewards.tolist()
    adv = [0.0] * len(r)
    for members in groups_of(group_ids).values():
        vals = [r[i] for i in members]
        z = zscore(vals, eps) if norm else [v - mean_std(vals)[0] for v in vals]
        for i, v in zip(members, z):
            adv[i] = v
    return broadcast(adv, mask)


def close(a, b, atol=1e-6, rtol=1e-5):
    torch.testing.assert_close(a.double(), b.double(), atol=atol, rtol=rtol)


def assert_clean(adv, mask):
    assert torch.isfinite(adv).all()
    assert (adv[~mask] == 0).all()


# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("norm", [True, False])
def test_grpo_matches_reference(seed, norm):
    r, gid, mask, *_ = make_batch(seed)
    out = advantages_of("grpo", r, gid, mask, norm_adv_by_std=norm)
    assert out.dtype == torch.float64
    close(out, ref_grpo(r, gid, mask, norm))
    assert_clean(out, mask)
    out32 = advantages_of("grpo", r.float(), gid, mask, norm_adv_by_std=norm)
    assert out32.dtype == torch.float32
    close(out32, ref_grpo(r, gid, mask, norm), atol=1e-5)


def test_grpo_equal_rewards_zero_and_singleton():
    mask = torch.ones(5, 3, dtype=torch.bool)
    r = torch.tensor([1.0, 1.0, 1.0, 0.5, 2.0])
    gid = torch.tensor([0, 0, 0, 1, 2])
    for eps in (0.0, 1e-6):
        out = advantages_of("grpo", r, gid, mask, epsilon=eps)
        assert (out[:3] == 0).all()
        assert torch.isfinite(out).all()
        close(out[3], torch.full((3,), 0.5 / (1 + eps)))
        close(out[4], torch.full((3,), 2.0 / (1 + eps)))


EQUAL_REWARDS = [0.1, 0.9, 0.123456789]  # not exactly representable in binary floating point


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
@pytest.mark.parametrize("norm", [True, False])
def test_equal_reward_groups_are_exactly_zero(dtype, eps, norm):
    """Equal rewards give A = 0 exactly, also when the group mean is not exactly the reward."""
    for size in (8, 16, 32):
        for value in EQUAL_REWARDS:
            # the equal group sits between two groups with distinct rewards
            r = torch.cat([torch.tensor([0.0, 1.0]), torch.full((size,), value), torch.tensor([0.3, 0.7])])
            r = r.to(dtype)
            gid = torch.tensor([0, 0] + [1] * size + [2, 2])
            mask = torch.ones(size + 4, 3, dtype=torch.bool)
            mask[3, 1:] = False
            mask[4] = False  # an empty member keeps its reward in the group
            out = advantages_of("grpo", r, gid, mask, norm_adv_by_std=norm, epsilon=eps)
            assert (out[2 : 2 + size] == 0).all(), (size, value, out[2 : 2 + size, 0].tolist())
            assert (out[[0, 1, -2, -1], 0] != 0).all()
            # PPL shaping: the z-score of equal ln PPL values is exactly 0 too, so the factor is 1
            lp = -torch.rand(size + 4, 3, generator=torch.Generator().manual_seed(size), dtype=dtype)
            ppl = advantages_of("ppl", r, gid, mask, lp, alpha=0.1, epsilon=eps, norm_adv_by_std=norm)
            assert (ppl[2 : 2 + size] == 0).all()
            flat = torch.full_like(lp, -value)
            ppl_flat = advantages_of("ppl", r, gid, mask, flat, alpha=0.1, epsilon=eps, norm_adv_by_std=norm)
            assert torch.equal(ppl_flat[[0, 1, -2, -1]], out[[0, 1, -2, -1]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_token_level_equal_values_are_exactly_zero(dtype, eps):
    """GTPO's token-level z-score: a group whose valid tokens all carry the same value gets 0."""
    for size in (8, 16, 32):
        for value in EQUAL_REWARDS:
            t = 7
            lengths = torch.arange(size) % (t + 1)  # varied lengths, incl. empty responses
            mask = torch.arange(t)[None, :] < lengths[:, None]
            x = torch.full((size, t), value, dtype=dtype)
            x = torch.where(mask, x, torch.full_like(x, 5.0))  # padding values never count
            gid = torch.zeros(size, dtype=torch.long)
            inv, g = A.group_index(gid)
            z = A._token_group_standardise(x, mask, inv, g, eps)
            assert (z == 0).all(), (size, value)
            # through GTPO with alpha2 = 0: every valid token carries alpha1 * value
            r = torch.full((size,), value, dtype=dtype)
            ent = torch.rand(size, t, generator=torch.Generator().manual_seed(size), dtype=dtype)
            out = advantages_of("gtpo", r, gid, mask, ent, alpha1=0.7, alpha2=0.0, epsilon=eps)
            assert (out == 0).all(), (size, value)
    # zero-length responses (T = 0) stay defined
    empty = torch.zeros(3, 0, dtype=torch.bool)
    out = advantages_of(
        "gtpo",
        torch.tensor([1.0, 0.0, 1.0], dtype=dtype),
        torch.zeros(3, dtype=torch.long),
        empty,
        torch.zeros(3, 0, dtype=dtype),
        alpha1=0.5,
        alpha2=0.5,
        epsilon=eps,
    )
    assert out.shape == (3, 0)


@pytest.mark.parametrize("seed", [0, 3])
def test_opo_matches_reference(seed):
    r, gid, mask, *_ = make_batch(seed, binary=False)
    lengths = mask.sum(-1).tolist()
    rl = r.tolist()
    adv = [0.0] * len(rl)
    for members in groups_of(gid).values():
        if len(members) == 1:
            b = 0.0
        else:
            den = sum(lengths[i] for i in members)
            b = sum(lengths[i] * rl[i] for i in members) / den if den else 0.0
        for i in members:
            adv[i] = rl[i] - b
    out = advantages_of("opo", r, gid, mask)
    close(out, broadcast(adv, mask))
    assert_clean(out, mask)


@pytest.mark.parametrize("mode", ["positive", "negative", "weighted"])
@pytest.mark.parametrize("binary", [True, False])
def test_psr_nsr_matches_reference(mode, binary):
    r, gid, mask, *_ = make_batch(4, binary=binary)
    if not binary:
        r = (r > 0.5).double()  # 0/1 rewards
    lam = 0.1
    vals = []
    for v in r.tolist():
        ok = v > 0
        vals.append(
            {
                "positive": 1.0 if ok else 0.0,
                "negative": 0.0 if ok else -1.0,
                "weighted": lam if ok else -1.0,
            }[mode]
        )
    out = advantages_of("psr_nsr", r, gid, mask, mode=mode, positive_weight=lam)
    close(out, broadcast(vals, mask))
    with pytest.raises(ValueError, match="valid"):
        advantages_of("psr_nsr", r, gid, mask, mode="both")


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unlikeliness_matches_reference(seed, dtype):
    r, gid, mask, old_logp, _ = make_batch(seed)
    r = (r > 0).double()  # 0/1 rewards: incorrect stay at 0
    lp_in = old_logp.to(dtype)
    lp = lp_in.double()
    beta = 0.25
    rl = r.tolist()
    mod = [0.0] * len(rl)
    for members in groups_of(gid).values():
        means = [(resp_mean(lp, mask, i), pos, i) for pos, i in enumerate(members)]
        order = sorted(means, key=lambda x: (x[0], x[1]))  # ascending, ties by position
        size = len(members)
        for rank, (_, _, i) in enumerate(order):
            mod[i] = rl[i] * (1 - beta * rank / size)
    adv = [0.0] * len(rl)
    for members in groups_of(gid).values():
        for i, z in zip(members, zscore([mod[i] for i in members], 1e-6)):
            adv[i] = z
    out = advantages_of("unlikeliness", r, gid, mask, lp_in, beta_rank=beta)
    close(out, broadcast(adv, mask), atol=1e-5)
    assert_clean(out, mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unlikeliness_same_advantages_for_pm1_and_01_rewards(dtype):
    """The reference code scores wrong answers 0 (spec §6: "incorrect samples stay at 0").

    R(1 - beta rank/G) applied to -1 would give wrong answers a rank-dependent reward; rewards are
    mapped to 1[R > success_threshold] first, so +-1 and 0/1 inputs give the same advantages.
    """
    r_pm, gid, mask, old_logp, _ = make_batch(11)
    r01 = (r_pm > 0).to(dtype)
    out_pm = advantages_of("unlikeliness", r_pm.to(dtype), gid, mask, old_logp)
    out_01 = advantages_of("unlikeliness", r01, gid, mask, old_logp)
    torch.testing.assert_close(out_pm, out_01, rtol=0, atol=0)
    # against the loop reference on 0/1 rewards (the released code's convention)
    rl = r01.double().tolist()
    mod = [0.0] * len(rl)
    for members in groups_of(gid).values():
        means = [(resp_mean(old_logp, mask, i), pos, i) for pos, i in enumerate(members)]
        for rank, (_, _, i) in enumerate(sorted(means, key=lambda x: (x[0], x[1]))):
            mod[i] = rl[i] * (1 - 0.25 * rank / len(members))
    adv = [0.0] * len(rl)
    for members in groups_of(gid).values():
        for i, z in zip(members, zscore([mod[i] for i in members], 1e-6)):
            adv[i] = z
    close(out_pm, broadcast(adv, mask), atol=1e-5)
    # a group of only wrong answers gets 0, whatever the convention
    wrong = torch.full((4,), -1.0, dtype=dtype)
    m4 = torch.ones(4, 3, dtype=torch.bool)
    lp4 = -torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    assert (advantages_of("unlikeliness", wrong, torch.zeros(4, dtype=torch.long), m4, lp4) == 0).all()
    # a custom threshold: rewards in {0.2, 0.8} with threshold 0.5
    r_b = torch.where(r01 > 0, 0.8, 0.2).to(dtype)
    out_b = advantages_of("unlikeliness", r_b, gid, mask, old_logp, success_threshold=0.5)
    torch.testing.assert_close(out_b, out_01, rtol=0, atol=0)


def test_unlikeliness_ranks_most_likely_correct_lowest():
    mask = torch.ones(4, 2, dtype=torch.bool)
    r = torch.tensor([1.0, 1.0, 1.0, 0.0])
    gid = torch.zeros(4, dtype=torch.long)
    lp = torch.tensor([[-0.1, -0.1], [-2.0, -2.0], [-1.0, -1.0], [-3.0, -3.0]])
    out = advantages_of("unlikeliness", r, gid, mask, lp)[:, 0]
    # the most likely correct sample (row 0) gets the smallest positive advantage
    assert out[0] < out[2] < out[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_entropy_advantage_matches_reference(dtype):
    r, gid, mask, _, ent = make_batch(6)
    h = ent.to(dtype)
    base = advantages_of("grpo", r, gid, mask)
    ref = torch.zeros_like(base)
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if mask[i, j]:
                a = float(base[i, j])
                ref[i, j] = a + min(0.4 * float(h[i, j].double()), abs(a) / 2.0)
    out = advantages_of("entropy_adv", r, gid, mask, h, alpha=0.4, kappa=2.0)
    close(out, ref)
    assert_clean(out, mask)
    # the bonus never flips the sign, and zero advantage gets no bonus
    assert (torch.sign(out) == torch.sign(base)).all()
    with pytest.raises(ValueError, match="kappa"):
        advantages_of("entropy_adv", r, gid, mask, h, kappa=1.0)


def ref_gtpo(r, gid, mask, h, a1, a2, floor=1e-6, eps=1e-6):
    b, t = mask.shape
    hh = [[max(float(h[i, j]), floor) for j in range(t)] for i in range(b)]
    rl = r.tolist()
    shaped = torch.zeros(b, t, dtype=torch.float64)
    out = torch.zeros(b, t, dtype=torch.float64)
    for members in groups_of(gid).values():
        for j in range(t):
            pos = [k for k in members if rl[k] > 0 and mask[k, j]]
            neg = [k for k in members if rl[k] <= 0 and mask[k, j]]
            sp = sum(hh[k][j] for k in pos)
            sn = sum(1 / hh[k][j] for k in neg)
            for k in pos:
                shaped[k, j] = a1 * rl[k] + a2 * hh[k][j] / sp * len(pos)
            for k in neg:
                shaped[k, j] = a1 * rl[k] + a2 * (1 / hh[k][j]) / sn * len(neg) * rl[k]
        cells = [(k, j) for k in members for j in range(t) if mask[k, j]]
        if len(cells) <= 1:
            continue
        z = zscore([float(shaped[c]) for c in cells], eps)
        for c, v in zip(cells, z):
            out[c] = v
    return out


@pytest.mark.parametrize("seed", [0, 7])
def test_gtpo_matches_reference(seed):
    r, gid, mask, _, ent = make_batch(seed)
    out = advantages_of("gtpo", r, gid, mask, ent, alpha1=0.6, alpha2=0.4)
    close(out, ref_gtpo(r, gid, mask, ent, 0.6, 0.4))
    assert_clean(out, mask)
    with pytest.raises(ValueError, match="alpha1"):
        advantages_of("gtpo", r, gid, mask, ent)  # alpha1/alpha2 are required


@pytest.mark.parametrize("seed", [0, 8])
def test_grpo_s_matches_reference(seed):
    r, gid, mask, _, ent = make_batch(seed)
    b1, b2, floor = 0.7, 0.3, 1e-6
    rl = r.tolist()
    hs = [max(resp_mean(ent.nan_to_num(0.0, 0.0, 0.0), mask, i), floor) for i in range(len(rl))]
    assert not mask[1].any()  # make_batch has an empty response
    shaped = [b1 * v for v in rl]  # empty responses keep only the base term
    for members in groups_of(gid).values():
        pos = [k for k in members if rl[k] > 0 and mask[k].any()]
        neg = [k for k in members if rl[k] <= 0 and mask[k].any()]
        for k in pos:
            shaped[k] = b1 * rl[k] + b2 * hs[k] / sum(hs[q] for q in pos) * len(pos)
        for k in neg:
            shaped[k] = b1 * rl[k] + b2 * (1 / hs[k]) / sum(1 / hs[q] for q in neg) * len(neg) * rl[k]
    adv = [0.0] * len(rl)
    for members in groups_of(gid).values():
        for k, z in zip(members, zscore([shaped[k] for k in members], 1e-6)):
            adv[k] = z
    out = advantages_of("grpo_s", r, gid, mask, ent, beta1=b1, beta2=b2)
    close(out, broadcast(adv, mask))
    assert_clean(out, mask)


def test_grpo_s_and_edge_ignore_empty_responses_in_shares():
    """An empty failed response (mean entropy 0, floored to 1e-6) must not swamp the share sums.

    Its 1/H = 1e6 used to take the whole failure share, flattening the other failed responses'
    advantages; it keeps its base reward term only. EDGE-GRPO leaves it out of the group mean of P.
    """
    t = 6
    r = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    g = torch.zeros(5, dtype=torch.long)
    h = torch.tensor([0.5, 1.0, 0.2, 0.4, 0.8], dtype=torch.float64)[:, None].expand(5, t).clone()
    mask = torch.ones(5, t, dtype=torch.bool)
    mask[4] = False
    b1, b2 = 0.5, 0.5
    hs = [0.5, 1.0, 0.2, 0.4]
    shaped = [
        b1 * 1 + b2 * 0.5 / 1.5 * 2,
        b1 * 1 + b2 * 1.0 / 1.5 * 2,
        b1 * -1 + b2 * (1 / 0.2) / (1 / 0.2 + 1 / 0.4) * 2 * -1,
        b1 * -1 + b2 * (1 / 0.4) / (1 / 0.2 + 1 / 0.4) * 2 * -1,
        b1 * -1,  # the empty response: base term only, still in the group statistics
    ]
    want = zscore(shaped, 1e-6)
    out = advantages_of("grpo_s", r, g, mask, h, beta1=b1, beta2=b2)
    close(out, broadcast(want, mask))
    # the two non-empty failed responses keep a clear contrast (they were equal to 1e-6 before)
    assert float(out[2, 0] - out[3, 0]) < -0.1
    # EDGE-GRPO: mean P over the 4 non-empty responses
    base = zscore(r.tolist(), 1e-4)
    mp = sum(hs) / 4
    want_e = [base[k] / (hs[k] / mp) for k in range(4)] + [0.0]
    close(advantages_of("edge_grpo", r, g, mask, h), broadcast(want_e, mask))
    # a group of only empty responses stays defined
    assert (advantages_of("grpo_s", r, g, torch.zeros_like(mask), h, beta1=b1, beta2=b2) == 0).all()
    assert (advantages_of("edge_grpo", r, g, torch.zeros_like(mask), h) == 0).all()


@pytest.mark.parametrize("padded", [False, True])
def test_edge_grpo_matches_reference(padded):
    r, gid, mask, _, ent = make_batch(9)
    t = mask.shape[1]
    rl = r.tolist()
    base = [0.0] * len(rl)
    for members in groups_of(gid).values():
        for k, z in zip(members, zscore([rl[k] for k in members], 1e-4)):
            base[k] = z
    clean = torch.where(mask, ent, torch.zeros_like(ent))
    p = []
    for i in range(len(rl)):
        v = float(clean[i].sum()) / t if padded else resp_mean(clean, mask, i)
        p.append(max(v, 1e-6))
    adv = [0.0] * len(rl)
    for members in groups_of(gid).values():
        filled = [k for k in members if mask[k].any()]  # empty responses are left out of mean P
        if not filled:
            continue
        mp = sum(p[k] for k in filled) / len(filled)
        for k in members:
            adv[k] = base[k] / (p[k] / mp)
    out = advantages_of("edge_grpo", r, gid, mask, ent, padded_mean=padded)
    close(out, broadcast(adv, mask))
    assert_clean(out, mask)


@pytest.mark.parametrize("standardize", [True, False])
def test_ppl_matches_reference(standardize):
    r, gid, mask, old_logp, _ = make_batch(10)
    alpha = 0.2
    base = ref_grpo(r, gid, mask)
    lp = torch.where(mask, old_logp, torch.zeros_like(old_logp))
    log_ppl = [-resp_mean(lp, mask, i) for i in range(mask.shape[0])]
    if standardize:
        z = [0.0] * len(log_ppl)
        for members in groups_of(gid).values():
            for k, v in zip(members, zscore([log_ppl[k] for k in members], 1e-6)):
                z[k] = v
    else:
        z = log_ppl
    ref = base * torch.tensor([1 - alpha * v for v in z], dtype=torch.float64)[:, None]
    out = advantages_of("ppl", r, gid, mask, old_logp, alpha=alpha, standardize=standardize)
    close(out, ref)
    assert_clean(out, mask)


@pytest.mark.parametrize("sigma", ["linear", "sigmoid"])
def test_position_matches_reference(sigma):
    r, gid, mask, *_ = make_batch(11)
    gamma = 0.3
    base = ref_grpo(r, gid, mask)
    ref = torch.zeros_like(base)
    for i in range(mask.shape[0]):
        n = int(mask[i].sum())
        pos = 0
        for j in range(mask.shape[1]):
            if mask[i, j]:
                pos += 1
                rel = pos / n
                ramp = rel if sigma == "linear" else 1 / (1 + math.exp(-10 * (rel - 0.5)))
                a = float(base[i, j])
                s = (a > 0) - (a < 0)
                ref[i, j] = a + gamma * s * ramp
    out = advantages_of("position", r, gid, mask, gamma=gamma, sigma=sigma)
    close(out, ref)
    with pytest.raises(ValueError, match="valid"):
        advantages_of("position", r, gid, mask, gamma=gamma, sigma="cubic")


def test_bad_inputs_raise():
    r, gid, mask, old_logp, ent = make_batch(0)
    bad = r.clone()
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="rewards"):
        advantages_of("grpo", bad, gid, mask)
    with pytest.raises(ValueError, match="group_ids"):
        advantages_of("grpo", r, gid[:-1], mask)
    with pytest.raises(ValueError, match="integer"):
        advantages_of("grpo", r, gid.double(), mask)
    with pytest.raises(ValueError, match="response_mask"):
        advantages_of("grpo", r, gid, mask[:-1])
    with pytest.raises(ValueError, match="epsilon"):
        advantages_of("grpo", r, gid, mask, epsilon=-1.0)
    lp = torch.where(mask, old_logp, torch.zeros_like(old_logp))
    lp[0, 0] = float("nan")
    assert mask[0, 0]
    with pytest.raises(ValueError, match="old_logp"):
        advantages_of("unlikeliness", r, gid, mask, lp)
    with pytest.raises(ValueError, match="entropy"):
        advantages_of("edge_grpo", r, gid, mask, ent[:, :-1])


def test_all_empty_and_zero_entropy_are_defined():
    r = torch.tensor([1.0, -1.0, 1.0])
    gid = torch.tensor([0, 0, 0])
    mask = torch.zeros(3, 4, dtype=torch.bool)
    zeros = torch.zeros(3, 4)
    for out in (
        advantages_of("grpo", r, gid, mask),
        advantages_of("opo", r, gid, mask),
        advantages_of("edge_grpo", r, gid, mask, zeros),
        advantages_of("gtpo", r, gid, mask, zeros, alpha1=0.5, alpha2=0.5),
        advantages_of("grpo_s", r, gid, mask, zeros, beta1=0.5, beta2=0.5),
        advantages_of("unlikeliness", r, gid, mask, zeros),
    ):
        assert (out == 0).all()
    mask = torch.ones(3, 4, dtype=torch.bool)
    for out in (
        advantages_of("edge_grpo", r, gid, mask, zeros),
        advantages_of("gtpo", r, gid, mask, zeros, alpha1=0.5, alpha2=0.5),
        advantages_of("grpo_s", r, gid, mask, zeros, beta1=0.5, beta2=0.5),
    ):
        assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------
# Parity with verl's own estimators (only where verl is installed, e.g. `.venv-bench`).


def _verl_inputs(seed: int):
    r, gid, mask, *_ = make_batch(seed, binary=False)
    mask[:, 0] = True  # verl reads the reward from the token-level rewards: no empty responses here
    last = mask.long().cumsum(-1).argmax(-1)
    tlr = torch.zeros(mask.shape, dtype=torch.float32)
    tlr[torch.arange(mask.shape[0]), last] = r.float()
    return r.float(), gid, mask, tlr


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_matches_verl(norm):
    pytest.importorskip("verl")
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    r, gid, mask, tlr = _verl_inputs(20)
    theirs, _ = compute_grpo_outcome_advantage(tlr, mask.float(), gid.numpy(), norm_adv_by_std_in_grpo=norm)
    ours = advantages_of("grpo", r, gid, mask, norm_adv_by_std=norm)
    torch.testing.assert_close(ours, theirs * mask, rtol=1e-5, atol=1e-6)


def test_opo_matches_verl():
    pytest.importorskip("verl")
    from verl.trainer.ppo.core_algos import compute_opo_outcome_advantage

    r, gid, mask, tlr = _verl_inputs(21)
    theirs, _ = compute_opo_outcome_advantage(tlr, mask.float(), gid.numpy())
    ours = advantages_of("opo", r, gid, mask)
    torch.testing.assert_close(ours, theirs * mask, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("entropy_value", [0.37, 1.3, 2.9])
def test_gtpo_groups_equal_in_exact_arithmetic_get_zero(dtype, entropy_value):
    # Every response correct with the same constant entropy: each shaped value is
    # alpha1 + alpha2 * H / (d H) * d, equal in exact arithmetic but not after rounding.
    # The z-score must not blow the rounding up into O(1) advantages.
    g, t = 8, 13
    rewards = torch.ones(g, dtype=dtype)
    group_ids = torch.zeros(g, dtype=torch.long)
    mask = torch.ones(g, t, dtype=torch.bool)
    mask[3, 9:] = False  # ragged lengths change d_t
    entropy = torch.full((g, t), entropy_value, dtype=dtype)
    adv = advantages_of("gtpo", rewards, group_ids, mask, entropy, alpha1=0.5, alpha2=0.5)
    assert torch.equal(adv, torch.zeros_like(adv))
