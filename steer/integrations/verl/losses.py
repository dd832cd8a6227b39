"""steer's methods as verl policy losses: registration, the entropy hook, the scope pass, metrics.

Everything here is a thin adapter over the core (``steer.core.registry.build_method``): it fills a
``steer.core.types.LossBatch`` from what verl hands a policy loss, calls ``Method.token_loss`` and
aggregates the result with verl's own ``agg_loss(..., **config.global_batch_info)``. No formula of
the core is repeated here.

What verl does not hand a policy loss, and how it gets there (verl 0.9.1):

- **Current-policy entropy** (the paper's estimator): the engine computes it when
  ``actor.calculate_entropy=True`` and keeps it in ``model_output["entropy"]``, but
  ``verl.workers.utils.losses.ppo_loss`` only passes log-probs and advantages to the registered
  function. :func:`ppo_loss` wraps verl's: it pads the entropy exactly as verl pads the log-probs,
  puts it in a context variable (``context.CONTEXT.loss``) for the duration of the call and restores
  it after. The bridge (:mod:`steer.integrations.verl.bridge`) puts the wrap in place of
  ``verl.workers.utils.losses.ppo_loss`` and of the name ``verl.workers.engine_workers.ppo_loss``
  (bound at import), before the actor's loss is built.
- **Old-policy entropy** (the released code's estimator): verl's v1 trainer computes it with the
  old log-probs and stores it as ``entropy`` next to ``old_log_probs``; the micro-batch handed to
  ``ppo_loss`` carries it, and the wrap pads it the way verl pads ``old_log_probs``.
- **Mini-batch statistics** (STEER's max|Omega| over the mini-batch, Eq. 10): see
  :func:`train_batch_with_scope`.

Metrics: verl's own names (``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower``)
from the policy loss, and every core metric under ``actor/steer/<key>``, reduced exactly over all
micro-batches, mini-batches and data-parallel ranks of a step by ``steer.core.metrics`` (see
:func:`train_mini_batch_with_metrics`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from typing import Any

import torch

from steer.core.advantages import shape_entropy_advantage
from steer.core.metrics import reduce_metrics
from steer.core.registry import Method, build_method, method_config_class
from steer.core.types import LossBatch
from steer.integrations.verl.context import CONTEXT, ORIGINALS, LossContext
from steer.integrations.verl.names import LOSS_LEVEL_ADVANTAGES, LOSS_MODES

__all__ = [
    "LOSS_MODES",
    "LossContext",
    "check_actor_config",
    "init_model_with_checks",
    "make_loss",
    "method_for",
    "ppo_loss",
    "train_batch_with_scope",
    "train_mini_batch_with_metrics",
    "validate_policy_loss_config",
]

logger = logging.getLogger("steer.integrations.verl")


def _setup_logger() -> None:
    # verl sets the root logger to WARNING; the plugin's own INFO lines (loaded, running) must
    # still reach the worker logs, so this logger has its own handler.
    if getattr(logger, "_steer_configured", False):
        return
    logger.setLevel(os.environ.get("STEER_VERL_LOG_LEVEL", "INFO").upper())
    if not logger.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("[steer.verl %(levelname)s pid=%(process)d] %(message)s"))
        logger.addHandler(h)
    logger.propagate = False
    logger._steer_configured = True  # type: ignore[attr-defined]


_setup_logger()

#: loss modes whose advantage is shaped per token in the loss (verl's advantage estimators
#: receive no entropy): A~ = shape_entropy_advantage(A_grpo, H_old)
_SHAPED_ADVANTAGE = {"entropy_adv": "old_entropy"}

_CONTEXT = CONTEXT


# --------------------------------------------------------------------------------------------
# building the core method from verl's actor config

_METHODS: dict[tuple, Method] = {}
_METHODS_LOCK = threading.Lock()
_ANNOUNCED: set[str] = set()


def _policy_loss_overrides(pl) -> dict[str, Any]:
    fn = getattr(pl, "steer_overrides", None)
    return fn() if callable(fn) else {}


def _method_kwargs(loss_mode: str, config) -> tuple[str, dict[str, Any]]:
    """The core method name and its parameters for verl's actor ``config``."""
    pl = config.policy_loss
    name = (getattr(pl, "steer_method", "") or "") or LOSS_MODES[loss_mode]
    cls = method_config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    kw: dict[str, Any] = {}
    if getattr(pl, "use_verl_clip", True):
        clip = config.get("clip_ratio", 0.2)
        lo = config.get("clip_ratio_low", None)
        hi = config.get("clip_ratio_high", None)
        if "eps_low" in fields:
            kw["eps_low"] = float(clip if lo is None else lo)
        if "eps_high" in fields:
            kw["eps_high"] = float(clip if hi is None else hi)
        if "clip_c" in fields and cls.policy_loss == "vanilla":
            kw["clip_c"] = float(config.get("clip_ratio_c", 3.0))
    agg = config.get("loss_agg_mode", "token-mean")
    if "loss_agg_mode" in fields:
        kw["loss_agg_mode"] = agg
    lsf = config.get("loss_scale_factor", None)
    if lsf is not None and "loss_scale_factor" in fields:
        kw["loss_scale_factor"] = float(lsf)
    # verl's own Clip-Cov / KL-Cov keys, for parity with its clip_cov / kl_cov losses
    if cls.policy_loss == "clip_cov":
        for k in ("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub"):
            if k in fields and pl.get(k, None) is not None:
                kw[k] = float(pl.get(k))
    if cls.policy_loss == "kl_cov":
        if "kl_cov_ratio" in fields and pl.get("kl_cov_ratio", None) is not None:
            kw["kl_cov_ratio"] = float(pl.get("kl_cov_ratio"))
        if "kl_cov_coef" in fields and pl.get("ppo_kl_coef", None) is not None:
            kw["kl_cov_coef"] = float(pl.get("ppo_kl_coef"))
    kw.update(_policy_loss_overrides(pl))
    return name, kw


def _check_supported(loss_mode: str, name: str, method: Method) -> None:
    c = method.config
    if c.advantage not in LOSS_LEVEL_ADVANTAGES:
        raise ValueError(
            f"policy_loss.steer_method={name!r}: its advantage estimator {c.advantage!r} needs the "
            "rewards of whole groups, which a verl policy loss does not receive; only methods on "
            f"GRPO advantages (or entropy_adv) run as verl losses (loss modes: {sorted(LOSS_MODES)})"
        )
    if "cause" in method.requires:
        raise ValueError(
            f"policy_loss: method {name!r} needs each token's cause of the mini-batch's entropy change "
            "(a backward of the entropy and a forward-mode pass through the model before the loss), which "
            "a verl policy loss cannot compute; it runs in steer's own trainer (`steer train`)"
        )
    if "sums" in method.requires:
        raise ValueError(
            f"policy_loss: estimator 'exact' needs sum_v pi^2 log pi per token, which verl's engine does "
            f"not compute (it offers sum_pi_squared only); use estimator 'paper' or 'reference' (method {name!r})"
        )
    if c.kl_coef != 0 or c.entropy_coef != 0 or method.controller is not None:
        raise ValueError(
            f"policy_loss: method {name!r} has a regulariser (kl_coef / entropy_coef / adaptive entropy); "
            "in verl use the actor's own use_kl_loss / kl_loss_coef / entropy_coeff instead"
        )
    if getattr(c, "scope", None) == "global":
        raise ValueError(
            "policy_loss.scope='global' is not supported in verl: the policy changes between the "
            "mini-batches of a step, so no max|Omega| over the whole step exists before the first "
            "update; use 'minibatch' (Eq. 10) or 'microbatch' (the released code)"
        )
    if loss_mode in _SHAPED_ADVANTAGE and c.advantage != "entropy_adv":
        raise ValueError(f"loss_mode {loss_mode!r} needs an entropy_adv method, got {name!r}")


def method_for(loss_mode: str, config) -> Method:
    """The (cached) core method for ``loss_mode`` under verl's actor ``config``."""
    name, kw = _method_kwargs(loss_mode, config)
    key = (loss_mode, name, tuple(sorted((k, repr(v)) for k, v in kw.items())))
    with _METHODS_LOCK:
        m = _METHODS.get(key)
        if m is None:
            try:
                m = build_method(name, **kw)
            except ValueError as e:
                raise ValueError(f"actor_rollout_ref.actor.policy_loss (loss_mode={loss_mode!r}): {e}") from e
            _check_supported(loss_mode, name, m)
            _METHODS[key] = m
    return m


def validate_policy_loss_config(pl) -> None:
    """Build the core method of a policy-loss config alone (no actor config yet): unknown keys and
    bad values fail here, when verl instantiates the config in the worker, before training."""
    name = (getattr(pl, "steer_method", "") or "") or LOSS_MODES[pl.loss_mode]
    overrides = _policy_loss_overrides(pl)
    try:
        m = build_method(name, **overrides)
    except ValueError as e:
        raise ValueError(f"actor_rollout_ref.actor.policy_loss (loss_mode={pl.loss_mode!r}): {e}") from e
    _check_supported(pl.loss_mode, name, m)


# --------------------------------------------------------------------------------------------
# the registered loss


def _needs(loss_mode: str, method: Method) -> tuple[bool, bool]:
    """(needs current entropy, needs old entropy) for the loss."""
    req = method.requires
    need_old = "old_entropy" in req or loss_mode in _SHAPED_ADVANTAGE
    return "entropy" in req, need_old


def _missing_entropy_error(loss_mode: str, ctx: LossContext | None) -> RuntimeError:
    if ctx is None:
        return RuntimeError(
            f"loss_mode={loss_mode!r} needs the current-policy entropy, but the policy loss was called "
            "outside steer's ppo_loss hook (steer.integrations.verl.losses.ppo_loss), which is the "
            "only way verl's entropy reaches a policy loss; is the steer plugin installed in this "
            "process (pip install 'steer[verl]')?"
        )
    return RuntimeError(
        f"loss_mode={loss_mode!r} needs the current-policy entropy: set "
        "actor_rollout_ref.actor.calculate_entropy=True (verl computes no entropy otherwise; "
        "steer never falls back to GRPO)"
    )


def _build_batch(
    loss_mode: str,
    method: Method,
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    config,
    ctx: LossContext | None,
) -> LossBatch:
    need_ent, need_old = _needs(loss_mode, method)
    entropy = ctx.entropy if ctx is not None else None
    old_entropy = ctx.old_entropy if ctx is not None else None
    if need_ent and entropy is None:
        raise _missing_entropy_error(loss_mode, ctx)
    if need_old and old_entropy is None:
        raise RuntimeError(
            f"loss_mode={loss_mode!r} needs the old-policy entropy, which verl's v1 trainer stores "
            "as 'entropy' next to 'old_log_probs'; it is missing from this micro-batch (legacy "
            "trainer, or rollout_correction.bypass_mode, which skips the old log-prob pass?)"
        )
    mask = response_mask.bool()
    adv = advantages
    if loss_mode in _SHAPED_ADVANTAGE:
        c = method.config
        adv = shape_entropy_advantage(advantages, old_entropy, mask, alpha=c.alpha, kappa=c.kappa)
    optim = config.get("optim", None)
    lr = float(optim.get("lr", 1e-6)) if optim is not None else 1e-6
    return LossBatch(
        logp=log_prob,
        old_logp=old_log_prob,
        advantages=adv,
        response_mask=mask,
        entropy=None if entropy is None else entropy.detach(),
        old_entropy=old_entropy,
        lr=lr,
        scope_stats=ctx.scope_stats if ctx is not None else None,
    )


def _key(core_key: str) -> str:
    """The verl metric name of a core metric (under ``steer/``; verl adds ``actor/``)."""
    return core_key if core_key.startswith("steer/") else f"steer/{core_key}"


def _verl_metrics(tl_metrics: dict, log_prob, old_log_prob, mask) -> dict[str, float]:
    """verl's policy-loss metric names, from the core's clip counts (same definitions)."""
    from verl.utils.torch_functional import masked_mean

    with torch.no_grad():
        neg_kl = torch.clamp(log_prob.detach() - old_log_prob, min=-20.0, max=20.0)
        ppo_kl = float(masked_mean(-neg_kl, mask)) if bool(mask.any()) else 0.0
    return {
        "actor/pg_clipfrac": float(tl_metrics.get("clipfrac_low", 0.0))
        + float(tl_metrics.get("clipfrac_high", 0.0)),
        "actor/ppo_kl": ppo_kl,
        "actor/pg_clipfrac_lower": float(tl_metrics.get("clipfrac_dual", 0.0)),
    }


def make_loss(loss_mode: str):
    """steer's verl policy loss for ``loss_mode`` (the function the bridge registers)."""

    def policy_loss(
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        loss_agg_mode: str = "token-mean",
        config=None,
        rollout_is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        from verl.trainer.ppo.core_algos import agg_loss

        if config is None:
            raise ValueError(f"loss_mode={loss_mode!r}: verl passed no actor config to the policy loss")
        ctx = _CONTEXT.loss.get()
        method = method_for(loss_mode, config)
        if ctx is not None and _needs(loss_mode, method)[0] and not ctx.calculate_entropy:
            raise _missing_entropy_error(loss_mode, ctx)
        batch = _build_batch(
            loss_mode, method, old_log_prob, log_prob, advantages, response_mask, config, ctx
        )
        mask = batch.response_mask
        collector = _CONTEXT.scope_pass.get()
        if collector is not None:  # scope pre-pass: statistics only, no loss
            collector.append(method.scope_stats(batch))
            return log_prob.sum() * 0.0, {}
        tl = method.token_loss(batch)
        loss_mat = tl.loss_mat
        if rollout_is_weights is not None:
            loss_mat = loss_mat * rollout_is_weights
        gbi = dict(config.get("global_batch_info", None) or {})
        agg_mask = mask
        if tl.loss_mask is not None:
            agg_mask = tl.loss_mask
            if gbi.get("batch_num_tokens") is not None:
                gbi["batch_num_tokens"] = gbi["batch_num_tokens"] * tl.num_tokens_scale
        pg_loss = agg_loss(loss_mat=loss_mat, loss_mask=agg_mask, loss_agg_mode=loss_agg_mode, **gbi)
        metrics: dict[str, Any] = _verl_metrics(tl.metrics, log_prob, old_log_prob, mask)
        if loss_mode not in _ANNOUNCED:
            _ANNOUNCED.add(loss_mode)
            logger.info(
                "running loss_mode=%r (core method %r, scope=%s) in pid %d; entropy in the micro-batch: "
                "current=%s old=%s",
                loss_mode,
                method.name,
                getattr(method.config, "scope", "-"),
                os.getpid(),
                ctx is not None and ctx.entropy is not None,
                ctx is not None and ctx.old_entropy is not None,
            )
        if ctx is not None:
            ctx.metrics = dict(tl.metrics)
            ctx.n_tokens = float(mask.sum())
            ctx.ran = True
        else:  # called directly (no hook): hand the core metrics back as plain floats
            metrics.update({f"actor/{_key(k)}": float(v) for k, v in tl.metrics.items()})
        return pg_loss, metrics

    policy_loss.__name__ = f"steer_policy_loss_{loss_mode}"
    policy_loss.__qualname__ = policy_loss.__name__
    policy_loss.__doc__ = (
        f"steer's {LOSS_MODES[loss_mode]!r} method as verl policy loss {loss_mode!r} (verl's keyword "
        "signature; returns (loss, metrics))."
    )
    policy_loss._steer_loss_mode = loss_mode  # type: ignore[attr-defined]
    return policy_loss


# --------------------------------------------------------------------------------------------
# the ppo_loss wrap (entropy), the scope pass and the metric collection


def _original_ppo_loss():
    """verl's own ``ppo_loss``: the one the bridge replaced, else the module's (not installed)."""
    original = ORIGINALS.get(("verl.workers.utils.losses", "ppo_loss"))
    if original is None:
        from verl.workers.utils import losses as verl_losses

        original = verl_losses.ppo_loss
        if original is ppo_loss:
            raise RuntimeError(
                "verl.workers.utils.losses.ppo_loss is steer's, but the bridge holds no original"
            )
    return original


def _pad_like_old_log_probs(data, key: str):
    """``data[key]`` padded exactly as verl's ppo_loss pads ``old_log_probs``."""
    sel = data.select("response_mask", "old_log_probs", key).to_padded_tensor()
    return sel[key]


def ppo_loss(config, model_output, data, dp_group=None):
    """verl's ``ppo_loss`` with the per-token entropies handed to steer's losses.

    For any other loss mode it is verl's function unchanged.
    """
    from verl.workers.utils.padding import no_padding_2_padding

    mode = config.policy_loss.get("loss_mode", "vanilla")
    if mode not in LOSS_MODES:
        return _original_ppo_loss()(config, model_output, data, dp_group)
    ctx = LossContext(calculate_entropy=bool(config.get("calculate_entropy", False)))
    ent = model_output.get("entropy", None)
    if ent is not None:
        ctx.entropy = no_padding_2_padding(ent, data)
    if "entropy" in data.keys():
        ctx.old_entropy = _pad_like_old_log_probs(data, "entropy")
    ctx.scope_stats = _CONTEXT.scope.get()
    token = _CONTEXT.loss.set(ctx)
    try:
        loss, metrics = _original_ppo_loss()(config, model_output, data, dp_group)
    finally:
        _CONTEXT.loss.reset(token)
    collector = _CONTEXT.collect.get()
    if ctx.ran and collector is not None and _CONTEXT.scope_pass.get() is None:
        collector.append((ctx.metrics, ctx.n_tokens))
    elif ctx.ran and collector is None:
        metrics.update({f"actor/{_key(k)}": float(v) for k, v in ctx.metrics.items()})
    return loss, metrics


def _scope_method(loss_function) -> tuple[Method, Any] | None:
    """The steer method of an actor loss function that needs a mini-batch scope pass, else None."""
    if not isinstance(loss_function, functools.partial) or loss_function.func is not ppo_loss:
        return None
    config = loss_function.keywords.get("config")
    if config is None:
        return None
    mode = config.policy_loss.get("loss_mode", "vanilla")
    if mode not in LOSS_MODES:
        return None
    method = method_for(mode, config)
    if getattr(method.config, "scope", "microbatch") == "microbatch":
        return None
    return method, config


def _rank_op(method: Method):
    """The all-reduce op of the method's scope reduction over ranks (``Method.scope_reduce_op``)."""
    op = method.scope_reduce_op
    if op is None:
        raise RuntimeError(
            f"method {method.name!r} reduces its scope statistics with its own function, which no "
            "all-reduce over data-parallel ranks can reproduce; run it in one process"
        )
    return getattr(torch.distributed.ReduceOp, op.upper())


def train_batch_with_scope(original):
    """``BaseEngine.train_batch`` with STEER's mini-batch scope (Eq. 10) made exact.

    Before the update of a mini-batch, a forward pass without grad over all of its micro-batches
    computes each one's ``Method.scope_stats`` (max|Omega| with the current policy, exactly the
    Omega the training pass then uses); they are reduced locally by the method's own reduction
    (``Method.reduce_scope_stats``) and over the data-parallel group by an all-reduce with that
    reduction's op (``Method.scope_reduce_op``), and every micro-batch's loss receives them.
    Cost: one extra forward pass per mini-batch. Only for a STEER method with scope 'minibatch'.
    """

    @functools.wraps(original)
    def train_batch(self, data, loss_function):
        found = _scope_method(loss_function)
        if found is None:
            return original(self, data, loss_function)
        collected: list[dict] = []
        token = _CONTEXT.scope_pass.set(collected)
        try:
            with torch.no_grad():
                self.forward_backward_batch(data, loss_function, forward_only=True)
        finally:
            _CONTEXT.scope_pass.reset(token)
        method = found[0]
        reduced: dict[str, torch.Tensor] = {}
        for k, local in method.reduce_scope_stats(collected).items():
            v = local.detach().float().reshape(1)
            if torch.distributed.is_initialized():
                from verl.utils.device import get_device_id

                v = v.to(get_device_id())
                torch.distributed.all_reduce(v, op=_rank_op(method), group=self.get_data_parallel_group())
            reduced[k] = v.cpu().reshape(())
        token = _CONTEXT.scope.set(reduced or None)
        try:
            return original(self, data, loss_function)
        finally:
            _CONTEXT.scope.reset(token)

    train_batch._steer_wrapped = True  # type: ignore[attr-defined]
    return train_batch


def train_mini_batch_with_metrics(original):
    """``TrainingWorker.train_mini_batch`` with steer's metrics reduced exactly over the step.

    Every trained micro-batch's core metrics and valid-token count are collected; at the end of the
    update they are gathered over the data-parallel group and reduced by
    ``steer.core.metrics.reduce_metrics`` (sums summed, token means weighted by tokens, min/max,
    quadrant shares and clip fractions derived from the reduced counts) and added to verl's
    metrics as ``steer/<key>`` (verl logs them as ``actor/steer/<key>``).
    """

    @functools.wraps(original)
    def train_mini_batch(self, data):
        collected: list = []
        token = _CONTEXT.collect.set(collected)
        try:
            output = original(self, data)
        finally:
            _CONTEXT.collect.reset(token)
        group = self.engine.get_data_parallel_group() if torch.distributed.is_initialized() else None
        items = collected
        if group is not None and torch.distributed.get_world_size(group) > 1:
            gathered: list = [None] * torch.distributed.get_world_size(group)
            torch.distributed.all_gather_object(gathered, collected, group)
            items = [it for part in gathered for it in part]
        if output is None or not items:
            return output
        from verl.utils import tensordict_utils as tu

        reduced = reduce_metrics(items)
        metrics = dict(tu.get(output, "metrics"))
        metrics.update({_key(k): float(v) for k, v in reduced.items()})
        return tu.get_tensordict(tensor_dict={}, non_tensor_dict={"metrics": metrics}).cpu()

    train_mini_batch._steer_wrapped = True  # type: ignore[attr-defined]
    return train_mini_batch


# --------------------------------------------------------------------------------------------
# the actor-config checks (run when verl builds the actor)


def check_actor_config(config) -> None:
    """Checks of verl's actor config for a steer loss mode, run when the actor is built (before
    training): the method builds, and ``calculate_entropy=True`` is set when it reads the
    current entropy."""
    mode = config.policy_loss.get("loss_mode", "vanilla")
    if mode not in LOSS_MODES:
        return
    method = method_for(mode, config)
    if _needs(mode, method)[0] and not config.get("calculate_entropy", False):
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode={mode!r} reads the current-policy entropy: set "
            "actor_rollout_ref.actor.calculate_entropy=True (verl computes no entropy otherwise; steer "
            "never falls back to GRPO)"
        )


def init_model_with_checks(original):
    """``ActorRolloutRefWorker.init_model`` followed by :func:`check_actor_config` of its loss."""

    @functools.wraps(original)
    def init_model(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        loss_fn = getattr(self, "loss_fn", None)
        if isinstance(loss_fn, functools.partial) and "config" in loss_fn.keywords:
            check_actor_config(loss_fn.keywords["config"])
        return out

    init_model._steer_wrapped = True  # type: ignore[attr-defined]
    return init_model
