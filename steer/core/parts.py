"""The tables of pure functions a method is composed of, the way verl's ``core_algos.py``
registers its advantage estimators and policy losses.

Three kinds of part, each one pure function with one signature, registered by name with a
parameter dataclass (its published defaults and checks) and a declaration of what it reads:

- **advantage estimators** (:data:`ADVANTAGES`): ``fn(batch: RolloutBatch, config) -> Tensor``,
  the ``(B, T)`` token advantages, 0 on padding;
- **policy losses** (:data:`POLICY_LOSSES`): ``fn(batch: LossBatch, mask, config, generator)
  -> (TokenLoss, SurrogateResult)``: the per-token loss matrix (not aggregated) with its metrics,
  and the surrogate whose ratio and clip masks a weighting builds on;
- **token weightings** (:data:`WEIGHTINGS`): ``fn(batch: LossBatch, mask, config, surrogate,
  generator) -> Weighting``: detached per-token weights (or a token selection) applied on top of a
  policy loss. A weighting declares the policy losses it composes with; any other combination is
  an error (:func:`check_combination`).

``config`` is the method's config object (a dataclass holding the union of its parts' parameter
dataclasses, built by :mod:`steer.core.registry`); a part reads only its own fields and the
shared ones of :class:`CommonParams`. ``requires`` is a frozenset of names from
:data:`REQUIREMENTS`, or a function ``config -> frozenset`` when it depends on a parameter.

Adding a method touches two places: its function (registered here with one decorator, next to
its math) and its row in :mod:`steer.core.presets`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from steer.core.aggregation import AGG_MODES
from steer.core.metrics import register_reduction
from steer.core.regularisers import KL_TYPES

__all__ = [
    "ADVANTAGES",
    "POLICY_LOSSES",
    "REQUIREMENTS",
    "WEIGHTINGS",
    "CommonParams",
    "NoParams",
    "Part",
    "Weighting",
    "check_choice",
    "check_combination",
    "check_range",
    "register_advantage",
    "register_policy_loss",
    "register_weighting",
]

#: The names a part may require beyond logp, old_logp, advantages, response_mask and lr.
REQUIREMENTS = frozenset({"entropy", "old_entropy", "sums", "ref_logp", "old_logp", "generator", "cause"})


# --------------------------------------------------------------------------------------------
# parameter checks


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPE_CHECKS = {
    "float": lambda v: _is_number(v) and math.isfinite(v),
    "float | None": lambda v: v is None or (_is_number(v) and math.isfinite(v)),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "int | None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def check_choice(name: str, value, valid) -> None:
    """ValueError naming ``name`` unless ``value`` is one of ``valid``."""
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {list(valid)}")


def check_range(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
    """ValueError naming ``name`` unless ``value`` lies in the (half-)open or closed interval."""
    ok = True
    if lo is not None:
        ok = ok and (value > lo if lo_open else value >= lo)
    if hi is not None:
        ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(
            f"{name} must lie in {lb}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{rb}, got {value!r}"
        )


@dataclass(kw_only=True)
class NoParams:
    """Base of every parameter dataclass: cooperative ``validate`` (each class checks its own
    fields, then calls ``super().validate()``)."""

    def validate(self) -> None:
        pass


@dataclass(kw_only=True)
class CommonParams(NoParams):
    """Fields shared by every method (policy loss, aggregation, regularisers).

    - ``eps_low`` / ``eps_high``: decoupled clip range ``[1 - eps_low, 1 + eps_high]`` (Eq. 2, 6).
    - ``clip_c``: dual-clip constant c (only A < 0), None = off.
    - ``loss_agg_mode``: one of :data:`steer.core.aggregation.AGG_MODES`; ``loss_scale_factor``:
      the constant of ``seq-mean-token-sum-norm`` (None = ``LossBatch.max_response_length``, the
      configured maximum response length; the padded length T when that is not given either).
    - ``log_ratio_clamp``: bound of the log-ratio before exp.
    - ``norm_adv_by_std`` / ``adv_epsilon``: GRPO normalisation (Eq. 1) where the estimator uses it.
    - ``entropy_coef``: fixed entropy bonus ``-c * agg(H)`` (0 = off).
    - ``kl_coef`` / ``kl_type``: KL penalty ``kl_coef * agg(kl)`` against ``LossBatch.ref_logp``.
    - ``quadrant_metrics``: emit the quadrant and clip-by-probability metrics.
    - ``seed``: seed of the method's ``torch.Generator`` (random token selection).
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    clip_c: float | None = None
    loss_agg_mode: str = "token-mean"
    loss_scale_factor: float | None = None
    log_ratio_clamp: float = 20.0
    norm_adv_by_std: bool = True
    adv_epsilon: float = 1e-6
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    kl_type: str = "k3"
    quadrant_metrics: bool = True
    seed: int = 0

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            check = _TYPE_CHECKS.get(str(f.type))
            v = getattr(self, f.name)
            if check is not None and not check(v):
                raise ValueError(f"{type(self).__name__}.{f.name} must be of type {f.type}, got {v!r}")
        check_range("eps_low", self.eps_low, 0)
        check_range("eps_high", self.eps_high, 0)
        if self.clip_c is not None:
            check_range("clip_c", self.clip_c, 1.0, lo_open=True)
        check_choice("loss_agg_mode", self.loss_agg_mode, AGG_MODES)
        if self.loss_scale_factor is not None:
            check_range("loss_scale_factor", self.loss_scale_factor, 0.0, lo_open=True)
        check_range("log_ratio_clamp", self.log_ratio_clamp, 0.0, lo_open=True)
        check_range("adv_epsilon", self.adv_epsilon, 0.0)
        check_range("kl_coef", self.kl_coef, 0.0)
        check_choice("kl_type", self.kl_type, KL_TYPES)
        super().validate()


# --------------------------------------------------------------------------------------------
# the tables


Requires = frozenset | Callable[[Any], frozenset]


@dataclass(frozen=True)
class Part:
    """One registered function.

    - ``kind``: 'advantage', 'policy_loss' or 'weighting'; ``name``: its table key.
    - ``fn``: the function (signature per kind, see the module docstring).
    - ``params``: its parameter dataclass (fields with defaults and a ``validate``).
    - ``requires``: what it reads (frozenset or ``config -> frozenset``).
    - ``surrogates``: weightings only: the policy losses it composes with.
    - ``scope_stats``: weightings only: ``fn(batch, mask, config, surrogate) -> dict[str, Tensor]``
      for statistics the caller reduces over the mini-batch (None: none).
    - ``scope_reduce``: weightings only: ``fn(config, [stats, ...]) -> stats``, how per-micro-batch
      statistics combine into the mini-batch's (None: the elementwise MAX of every key, which a
      caller can also take over ranks with an all-reduce).
    - ``omega``: weightings only: ``fn(batch, config, surrogate) -> Tensor``, the per-token
      entropy-change estimate its weights act on (``Method.compute_omega``; None: it has none).
    - ``surrogate``: policy losses only: ``fn(batch, mask, config) -> SurrogateResult``, the
      loss's ratio and clip masks without its random token selection (for the scope pre-pass
      and ``Method.compute_omega``, which must not consume the method's generator).
    - ``doc``: one line for listings.
    """

    kind: str
    name: str
    fn: Callable
    params: type = NoParams
    requires: Requires = frozenset()
    surrogates: tuple[str, ...] = ()
    scope_stats: Callable | None = None
    scope_reduce: Callable | None = None
    omega: Callable | None = None
    surrogate: Callable | None = None
    doc: str = ""

    def requirements(self, config) -> frozenset:
        r = self.requires(config) if callable(self.requires) else self.requires
        bad = set(r) - REQUIREMENTS
        if bad:
            raise ValueError(f"{self.kind} {self.name!r} declares unknown requirement(s) {sorted(bad)}")
        return frozenset(r)


ADVANTAGES: dict[str, Part] = {}
POLICY_LOSSES: dict[str, Part] = {}
WEIGHTINGS: dict[str, Part] = {}
_TABLES = {"advantage": ADVANTAGES, "policy_loss": POLICY_LOSSES, "weighting": WEIGHTINGS}


def _register(kind: str, name: str, metrics: dict[str, str] | None = None, **kw):
    table = _TABLES[kind]

    def deco(fn):
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered")
        for key, reduction in (metrics or {}).items():
            register_reduction(key, reduction)
        doc = kw.pop("doc", "")
        if not doc and fn.__doc__:
            doc = fn.__doc__.strip().splitlines()[0]
        table[name] = Part(kind=kind, name=name, fn=fn, doc=doc, **kw)
        return fn

    return deco


def register_advantage(
    name: str, *, params: type = NoParams, requires: Requires = frozenset(), doc: str = ""
):
    """Decorator: register ``fn(batch: RolloutBatch, config) -> Tensor`` as advantage ``name``."""
    return _register("advantage", name, params=params, requires=requires, doc=doc)


# ``metrics=`` of the loss and weighting decorators: the reductions of the metric keys the function
# emits beyond the standard ones (``{key or pattern: "sum" | "token_mean" | "mean" | "min" |
# "max"}``, declared in :mod:`steer.core.metrics` when the function is registered).


def register_policy_loss(
    name: str,
    *,
    surrogate: Callable,
    params: type = NoParams,
    requires: Requires = frozenset(),
    metrics: dict[str, str] | None = None,
    doc: str = "",
):
    """Decorator: register ``fn(batch, mask, config, generator) -> (TokenLoss, SurrogateResult)``
    with its deterministic ``surrogate(batch, mask, config) -> SurrogateResult``."""
    return _register(
        "policy_loss", name, metrics, params=params, requires=requires, surrogate=surrogate, doc=doc
    )


def register_weighting(
    name: str,
    *,
    params: type = NoParams,
    requires: Requires = frozenset(),
    surrogates: tuple[str, ...] = ("vanilla",),
    scope_stats: Callable | None = None,
    scope_reduce: Callable | None = None,
    omega: Callable | None = None,
    metrics: dict[str, str] | None = None,
    doc: str = "",
):
    """Decorator: register ``fn(batch, mask, config, surrogate, generator) -> Weighting``."""
    return _register(
        "weighting",
        name,
        metrics,
        params=params,
        requires=requires,
        surrogates=tuple(surrogates),
        scope_stats=scope_stats,
        scope_reduce=scope_reduce,
        omega=omega,
        doc=doc,
    )


def check_combination(advantage: str, policy_loss: str, weighting: str | None) -> None:
    """ValueError (listing the valid options) for an unknown part or an unsupported combination."""
    if advantage not in ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {advantage!r}; valid: {sorted(ADVANTAGES)}")
    if policy_loss not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {policy_loss!r}; valid: {sorted(POLICY_LOSSES)}")
    if weighting is None:
        return
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown token weighting {weighting!r}; valid: {sorted(WEIGHTINGS)}")
    ok = WEIGHTINGS[weighting].surrogates
    if policy_loss not in ok:
        raise ValueError(
            f"token weighting {weighting!r} does not compose with policy loss {policy_loss!r} "
            f"(it composes with {list(ok)}); the combination is not supported"
        )


@dataclass
class Weighting:
    """What a token weighting returns (applied on top of a policy loss's matrix).

    - ``weight``: (B, T) detached weights (1 = unchanged); multiplies the loss matrix.
    - ``metrics``: its own metric keys (declared in :mod:`steer.core.metrics`).
    - ``loss_mask`` / ``num_tokens_scale``: a token selection for the aggregation (forking
      tokens), see :class:`steer.core.types.TokenLoss`.
    - ``omega``: the per-token entropy-change estimate it used, if any (reused by the quadrant
      metrics so that they describe the Omega the method acted on).
    """

    weight: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    loss_mask: Tensor | None = None
    num_tokens_scale: float = 1.0
    omega: Tensor | None = None
