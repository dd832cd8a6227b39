"""steer's verl losses through verl's own registry and real call site
(``verl.workers.utils.losses.ppo_loss``) with verl's config objects."""

from __future__ import annotations

import pytest
import torch
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, get_policy_loss_fn
from verl.workers.config.actor import PolicyLossConfig
from verl.workers.utils import losses as verl_losses
from verl_test_helpers import actor_config, make_data, model_output, random_batch

from steer.core.aggregation import aggregate
from steer.core.registry import build_method
from steer.core.types import LossBatch, Normalisers
from steer.integrations.verl import LOSS_MODES, SteerPolicyLossConfig
from steer.integrations.verl import losses as steer_losses
from steer.integrations.verl.bridge import BRIDGE

SEEDS = (0, 1, 2)


def _run(cfg, b, *, rows=None, **data_kw):
    mo, flat = model_output(b, rows=rows, with_entropy=data_kw.pop("with_entropy", True))
    data = make_data(b, rows=rows, **data_kw)
    loss, metrics = verl_losses.ppo_loss(cfg, mo, data)
    loss.backward()
    return loss.detach(), flat.grad.clone(), metrics


def _batch(seed):
    return random_batch(6, 9, seed=seed, empty_rows=(2,), equal_reward_rows=(4,))


def test_every_loss_mode_is_in_verls_registry():
    for mode in LOSS_MODES:
        fn = get_policy_loss_fn(mode)
        assert fn._steer_loss_mode == mode
    # verl's own losses are untouched
    for own in ("vanilla", "clip_cov", "kl_cov"):
        assert not hasattr(POLICY_LOSS_REGISTRY[own], "_steer_loss_mode")
    assert verl_losses.ppo_loss is steer_losses.ppo_loss


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("mode", ["steer", "steer_reference", "steer_linear", "steer_binary"])
def test_lambda_min_1_is_verls_vanilla_exactly(seed, agg, mode):
    b = _batch(seed)
    n = int(b["mask"].sum())
    kw = dict(loss_agg_mode=agg)
    ref = _run(
        actor_config(PolicyLossConfig(loss_mode="vanilla"), **kw), b, batch_num_tokens=n, global_batch_size=6
    )
    # the linear mapping runs from lambda_max down to lambda_min: GRPO needs both at 1
    extra = {"lambda_max": 1.0} if mode == "steer_linear" else {}
    ours = _run(
        actor_config(SteerPolicyLossConfig(loss_mode=mode, lambda_min=1.0, **extra), **kw),
        b,
        batch_num_tokens=n,
        global_batch_size=6,
    )
    assert torch.equal(ref[0], ours[0])
    assert torch.equal(ref[1], ours[1])
    for key in ("actor/pg_clipfrac", "actor/pg_clipfrac_lower", "actor/ppo_kl"):
        assert ref[2][key].aggregate() == pytest.approx(ours[2][key].aggregate(), abs=1e-7), key


def _core_expected(method_name, b, *, n_tokens, rows=None, lr=1e-6, **params):
    idx = torch.arange(b["mask"].shape[0]) if rows is None else torch.as_tensor(rows)
    m = build_method(method_name, eps_low=0.2, eps_high=0.28, **params)
    logp = b["logp"][idx].clone().requires_grad_(True)
    batch = LossBatch(
        logp=logp,
        old_logp=b["old_logp"][idx],
        advantages=b["advantages"][idx],
        response_mask=b["mask"][idx],
        entropy=b["entropy"][idx],
        old_entropy=b["old_entropy"][idx],
        lr=lr,
        global_num_tokens=n_tokens,
    )
    tl = m.token_loss(batch)
    loss = aggregate(tl, batch.response_mask, m.config.loss_agg_mode, Normalisers.of(batch, m.config.loss_scale_factor))
    loss.backward()
    return loss.detach(), logp.grad, tl


def _padded_grad(flat_grad, b, rows=None):
    """The flat leaf's gradient at the response positions, padded (B, T)."""
    from verl_test_helpers import PROMPT_LEN

    idx = torch.arange(b["mask"].shape[0]) if rows is None else torch.as_tensor(rows)
    out = torch.zeros(len(idx), b["mask"].shape[1])
    pos = 0
    for i, r in enumerate(idx.tolist()):
        n = int(b["lens"][r])
        out[i, :n] = flat_grad[pos + PROMPT_LEN - 1 : pos + PROMPT_LEN - 1 + n]
        pos += PROMPT_LEN + n
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "mode,params",
    [
        ("steer", {"lambda_min": 0.7, "clip_c": 10.0}),
        ("steer", {"lambda_min": 0.5, "clip_c": 10.0, "scope": "microbatch"}),
        ("steer_reference", {"clip_c": 10.0}),
        ("steer_linear", {"clip_c": 10.0}),
        ("steer_binary", {"clip_c": 10.0}),
        ("forking_tokens", {"clip_c": 10.0}),
        ("quadrant", {"target": "II", "action": "upweight", "clip_c": 10.0}),
        ("steer_directional", {"clip_c": 10.0}),
    ],
)
def test_equals_the_core_on_the_same_inputs(seed, mode, params):
    b = _batch(seed)
    n = int(b["mask"].sum())
    core_params = dict(params)
    steer_fields = {k: core_params[k] for k in ("lambda_min", "scope") if k in core_params}
    method_params = {k: v for k, v in core_params.items() if k not in steer_fields and k != "clip_c"}
    pl = SteerPolicyLossConfig(loss_mode=mode, method_params=method_params, **steer_fields)
    loss, flat_grad, metrics = _run(actor_config(pl), b, batch_num_tokens=n)
    exp_loss, exp_grad, tl = _core_expected(LOSS_MODES[mode], b, n_tokens=n, **core_params)
    torch.testing.assert_close(loss, exp_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(_padded_grad(flat_grad, b), exp_grad, rtol=1e-6, atol=1e-7)
    if tl.weight is not None and mode.startswith("steer"):
        valid = b["mask"]
        assert metrics["actor/steer/weight_min"] == pytest.approx(float(tl.weight[valid].min()))


@pytest.mark.parametrize("seed", SEEDS)
def test_steer_directional_through_the_steer_method_key(seed):
    """The project's own steer_directional reaches verl through the same adapter
    (``policy_loss.steer_method``): loss and gradient equal the core's."""
    b = _batch(seed)
    n = int(b["mask"].sum())
    pl = SteerPolicyLossConfig(loss_mode="steer", steer_method="steer_directional", lambda_min=0.6)
    loss, flat_grad, metrics = _run(actor_config(pl), b, batch_num_tokens=n)
    exp_loss, exp_grad, tl = _core_expected("steer_directional", b, n_tokens=n, lambda_min=0.6, clip_c=10.0)
    torch.testing.assert_close(loss, exp_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(_padded_grad(flat_grad, b), exp_grad, rtol=1e-6, atol=1e-7)
    assert float(tl.weight[b["mask"]].min()) == pytest.approx(0.6)
    assert metrics["actor/steer/weight_min"] == pytest.approx(0.6)


@pytest.mark.parametrize("seed", SEEDS)
def test_entropy_adv_shapes_verls_advantage_in_the_loss(seed):
    from steer.core.advantages import shape_entropy_advantage

    b = _batch(seed)
    n = int(b["mask"].sum())
    loss, flat_grad, _ = _run(
        actor_config(SteerPolicyLossConfig(loss_mode="entropy_adv")), b, batch_num_tokens=n
    )
    shaped = dict(b)
    shaped["advantages"] = shape_entropy_advantage(
        b["advantages"], b["old_entropy"], b["mask"], alpha=0.4, kappa=2.0
    )
    exp_loss, exp_grad, _ = _core_expected("grpo", shaped, n_tokens=n, clip_c=10.0)
    torch.testing.assert_close(loss, exp_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(_padded_grad(flat_grad, b), exp_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_cov_through_ours_matches_verls_kl_cov(seed):
    b = random_batch(8, 40, seed=seed)
    n = int(b["mask"].sum())
    kw = dict(policy_loss=None)
    del kw["policy_loss"]
    ref = _run(actor_config(PolicyLossConfig(loss_mode="kl_cov", kl_cov_ratio=0.05)), b, batch_num_tokens=n)
    ours = _run(
        actor_config(SteerPolicyLossConfig(loss_mode="steer_kl_cov", kl_cov_ratio=0.05)),
        b,
        batch_num_tokens=n,
    )
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_global_batch_normalisation_over_micro_batches_and_ranks(seed, agg):
    """Micro-batches (and dp ranks) with verl's global_batch_info add up to the whole mini-batch:
    the sum of micro-batch losses (and the mean over ranks of each rank's sum, which is what
    data-parallel gradient averaging computes) equals the loss of the mini-batch at once."""
    b = random_batch(8, 9, seed=seed, empty_rows=(5,), equal_reward_rows=(1,))
    n = int(b["mask"].sum())
    method = build_method("steer", eps_low=0.2, eps_high=0.28, clip_c=10.0)
    full_batch = LossBatch(
        logp=b["logp"],
        old_logp=b["old_logp"],
        advantages=b["advantages"],
        response_mask=b["mask"],
        entropy=b["entropy"],
        old_entropy=b["old_entropy"],
    )
    scope = method.scope_stats(full_batch)  # max|Omega| of the mini-batch, as the scope pass gives
    cfg = actor_config(SteerPolicyLossConfig(loss_mode="steer"), loss_agg_mode=agg)
    whole = _run(cfg, b, batch_num_tokens=n, global_batch_size=8)
    token = BRIDGE.context.scope.set(scope)
    try:
        # one rank, four micro-batches
        parts = [
            _run(cfg, b, rows=r, batch_num_tokens=n, global_batch_size=8)
            for r in ([0, 1], [2, 3], [4, 5], [6, 7])
        ]
        # two ranks (dp_size 2), two micro-batches each
        ranks = [
            [_run(cfg, b, rows=r, dp_size=2, batch_num_tokens=n, global_batch_size=8) for r in rr]
            for rr in (([0, 1], [2, 3]), ([4, 5], [6, 7]))
        ]
    finally:
        BRIDGE.context.scope.reset(token)
    torch.testing.assert_close(sum(p[0] for p in parts), whole[0], rtol=1e-6, atol=1e-7)
    rank_sums = [sum(p[0] for p in r) for r in ranks]
    torch.testing.assert_close(sum(rank_sums) / 2, whole[0], rtol=1e-6, atol=1e-7)
    # gradients: concatenating the micro-batches' flat gradients gives the whole batch's
    torch.testing.assert_close(torch.cat([p[1] for p in parts]), whole[1], rtol=1e-6, atol=1e-7)
    grads_dp = torch.cat([g[1] for r in ranks for g in r]) / 2
    torch.testing.assert_close(grads_dp, whole[1], rtol=1e-6, atol=1e-7)


def test_without_the_scope_pass_each_micro_batch_is_its_own_scope():
    b = random_batch(8, 9, seed=3)
    n = int(b["mask"].sum())
    cfg = actor_config(SteerPolicyLossConfig(loss_mode="steer", scope="microbatch"))
    metrics = [_run(cfg, b, rows=r, batch_num_tokens=n)[2] for r in ([0, 1], [2, 3])]
    for m in metrics:  # every micro-batch's largest |Omega| gets exactly lambda_min
        assert m["actor/steer/weight_min"] == pytest.approx(0.7)


def test_entropy_reaches_the_loss_and_calculate_entropy_is_checked():
    b = _batch(0)
    n = int(b["mask"].sum())
    seen = {}
    orig = steer_losses._build_batch

    def spy(*a, **k):
        batch = orig(*a, **k)
        seen["entropy"], seen["old_entropy"] = batch.entropy, batch.old_entropy
        return batch

    steer_losses._build_batch = spy
    try:
        _run(actor_config(SteerPolicyLossConfig(loss_mode="steer")), b, batch_num_tokens=n)
    finally:
        steer_losses._build_batch = orig
    assert torch.equal(seen["entropy"], b["entropy"])
    assert torch.equal(seen["old_entropy"], b["old_entropy"])
    with pytest.raises(RuntimeError, match="calculate_entropy=True"):
        _run(
            actor_config(SteerPolicyLossConfig(loss_mode="steer"), calculate_entropy=False),
            b,
            batch_num_tokens=n,
        )
    with pytest.raises(RuntimeError, match="calculate_entropy=True"):
        _run(
            actor_config(SteerPolicyLossConfig(loss_mode="steer")), b, batch_num_tokens=n, with_entropy=False
        )
    # the released code's estimator needs only the old entropy
    _run(
        actor_config(SteerPolicyLossConfig(loss_mode="steer_reference"), calculate_entropy=False),
        b,
        batch_num_tokens=n,
        with_entropy=False,
    )
    with pytest.raises(RuntimeError, match="old-policy entropy"):
        _run(
            actor_config(SteerPolicyLossConfig(loss_mode="steer_reference")),
            b,
            batch_num_tokens=n,
            with_old_entropy=False,
        )


def test_called_outside_the_hook_explains_itself():
    b = _batch(0)
    fn = get_policy_loss_fn("steer")
    cfg = actor_config(SteerPolicyLossConfig(loss_mode="steer"))
    with pytest.raises(RuntimeError, match="outside steer's ppo_loss hook"):
        fn(
            old_log_prob=b["old_logp"],
            log_prob=b["logp"],
            advantages=b["advantages"],
            response_mask=b["mask"],
            loss_agg_mode="token-mean",
            config=cfg,
            rollout_is_weights=None,
        )


def test_rollout_is_weights_are_honoured():
    b = _batch(1)
    n = int(b["mask"].sum())
    w = torch.rand(b["mask"].shape, generator=torch.Generator().manual_seed(5)) + 0.5
    cfg = actor_config(SteerPolicyLossConfig(loss_mode="steer", lambda_min=1.0))
    ours = _run(cfg, b, batch_num_tokens=n, rollout_is_weights=w)
    ref = _run(
        actor_config(PolicyLossConfig(loss_mode="vanilla")), b, batch_num_tokens=n, rollout_is_weights=w
    )
    plain = _run(cfg, b, batch_num_tokens=n)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    assert not torch.equal(ours[0], plain[0])


def test_non_finite_log_probs_raise_before_any_gradient():
    from steer.core.errors import NonFiniteError

    b = _batch(0)
    b["logp"][0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        _run(actor_config(SteerPolicyLossConfig(loss_mode="steer")), b, batch_num_tokens=int(b["mask"].sum()))


def test_bad_keys_and_values_fail_when_verl_builds_the_config():
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    target = "steer.integrations.verl.SteerPolicyLossConfig"
    ok = omega_conf_to_dataclass(
        OmegaConf.create({"_target_": target, "loss_mode": "steer", "lambda_min": 0.8})
    )
    assert isinstance(ok, SteerPolicyLossConfig) and ok.lambda_min == 0.8
    with pytest.raises(ValueError, match="lambda_min"):
        SteerPolicyLossConfig(loss_mode="steer", lambda_min=1.5)
    with pytest.raises(ValueError, match="estimator"):
        SteerPolicyLossConfig(loss_mode="steer", estimator="bogus")
    with pytest.raises(ValueError, match="not_a_parameter"):
        SteerPolicyLossConfig(loss_mode="steer", method_params={"not_a_parameter": 1})
    with pytest.raises(ValueError, match="exact"):
        SteerPolicyLossConfig(loss_mode="steer", estimator="exact")
    for name in ("steer_causal", "entropy_band"):  # need the model before the loss
        with pytest.raises(ValueError, match="cause"):
            SteerPolicyLossConfig(loss_mode="steer", steer_method=name)
    with pytest.raises(ValueError, match="global"):
        SteerPolicyLossConfig(loss_mode="steer", scope="global")
    with pytest.raises(ValueError, match="lambda_min"):
        SteerPolicyLossConfig(loss_mode="steer", lambda_min=0.8, method_params={"lambda_min": 0.9})
    with pytest.raises(Exception, match="lamda_min"):  # a typo in a key: verl's own instantiation error
        omega_conf_to_dataclass(
            OmegaConf.create({"_target_": target, "loss_mode": "steer", "lamda_min": 0.8})
        )
    # verl's own class refuses steer keys (why the subclass exists)
    with pytest.raises(Exception, match="lambda_min"):
        omega_conf_to_dataclass(
            OmegaConf.create(
                {"_target_": "verl.workers.config.PolicyLossConfig", "loss_mode": "steer", "lambda_min": 0.8}
            )
        )


def test_actor_config_check_at_init_names_calculate_entropy():
    from steer.integrations.verl.losses import check_actor_config

    check_actor_config(actor_config(SteerPolicyLossConfig(loss_mode="steer")))
    check_actor_config(
        actor_config(SteerPolicyLossConfig(loss_mode="steer_reference"), calculate_entropy=False)
    )
    check_actor_config(actor_config(PolicyLossConfig(loss_mode="vanilla"), calculate_entropy=False))
    with pytest.raises(ValueError, match="calculate_entropy=True"):
        check_actor_config(actor_config(SteerPolicyLossConfig(loss_mode="steer"), calculate_entropy=False))
    with pytest.raises(ValueError, match="calculate_entropy=True"):
        check_actor_config(
            actor_config(PolicyLossConfig(loss_mode="forking_tokens"), calculate_entropy=False)
        )


def test_init_model_is_wrapped_with_the_check():
    from verl.workers.engine_workers import ActorRolloutRefWorker

    assert getattr(ActorRolloutRefWorker.init_model, "_steer_wrapped", False)
