"""The method registry: every entropy intervention (and STEER) by a stable name.

A method is a row of the method table (:mod:`steer.core.presets`) that composes parts from the
tables of pure functions (:mod:`steer.core.parts`):

1. an **advantage estimator** (``grpo``, ``opo``, ``psr_nsr``, ``unlikeliness``, ``entropy_adv``,
   ``gtpo``, ``grpo_s``, ``edge_grpo``, ``ppl``, ``position``; :mod:`steer.core.advantages`);
2. a **policy loss** returning the per-token loss matrix (``vanilla`` clipped surrogate with
   eps_low/eps_high and optional dual clip, ``clip_cov``, ``kl_cov``; :mod:`steer.core.losses`);
3. an optional **token weighting** on top of it (``steer`` (:mod:`steer.core.steer`), ``forking``,
   ``quadrant``); a weighting declares the policy losses it composes with, any other combination
   is an error;
4. **regularisers** present in every config: an entropy bonus (``entropy_coef``, or Skywork's
   adaptive controller for ``adaptive_entropy``) and a KL penalty (``kl_coef``, ``kl_type``).

Aggregation happens once (:func:`steer.core.aggregation.aggregate`), with the
normalisers as one object. A method's config class is generated from its row: the union of its
parts' parameter dataclasses with the row's defaults; unknown parameters are refused.

Public API: :func:`list_methods`, :func:`build_method`, :func:`method_config_class`,
:func:`define_method`, :class:`Method`, :class:`MethodConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from steer.core import advantages as _advantages  # noqa: F401  (registers the estimators)
from steer.core import causal as _causal  # noqa: F401  (registers steer_causal, entropy_band)
from steer.core import losses as L
from steer.core import steer as _steer  # noqa: F401  (registers the STEER weightings)
from steer.core.aggregation import aggregate
from steer.core.errors import NonFiniteError, check_finite
from steer.core.estimators import omega_paper
from steer.core.parts import (
    ADVANTAGES,
    POLICY_LOSSES,
    REQUIREMENTS,
    WEIGHTINGS,
    CommonParams,
    NoParams,
    check_combination,
    check_range,
)
from steer.core.presets import PRESETS, Preset
from steer.core.regularisers import AdaptiveEntropyController, entropy_bonus_loss, kl_penalty_loss
from steer.core.types import LossBatch, Normalisers, RolloutBatch, TokenLoss, as_bool_mask, check_same_shape

__all__ = [
    "ADVANTAGE_KINDS",
    "POLICY_LOSS_KINDS",
    "REQUIREMENTS",
    "WEIGHTING_KINDS",
    "AdaptiveEntropyParams",
    "Method",
    "MethodConfig",
    "build_method",
    "define_method",
    "list_methods",
    "method_config_class",
    "method_preset",
    "row_requirements",
]

ADVANTAGE_KINDS = tuple(ADVANTAGES)
POLICY_LOSS_KINDS = tuple(POLICY_LOSSES)
WEIGHTING_KINDS = (None, *WEIGHTINGS)


# --------------------------------------------------------------------------------------------
# configs


@dataclass(kw_only=True)
class MethodConfig(CommonParams):
    """Base of every method's config: :class:`steer.core.parts.CommonParams` plus, as class
    attributes, the row it was built from (``name``, ``advantage``, ``policy_loss``,
    ``weighting``, ``citation``, ``caveats``). The concrete class of a method adds its parts'
    parameter fields (:func:`method_config_class`)."""

    name: ClassVar[str] = ""
    advantage: ClassVar[str] = "grpo"
    policy_loss: ClassVar[str] = "vanilla"
    weighting: ClassVar[str | None] = None
    citation: ClassVar[str] = ""
    caveats: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()


@dataclass(kw_only=True)
class AdaptiveEntropyParams(NoParams):
    """Skywork-OR1's adaptive entropy controller (:class:`steer.core.regularisers.AdaptiveEntropyController`)."""

    entropy_target: float = 0.2
    entropy_delta: float = 1e-4
    entropy_coef_init: float = 0.0
    entropy_coef_min: float = 0.0
    entropy_coef_max: float = 0.005

    def validate(self) -> None:
        check_range("entropy_delta", self.entropy_delta, 0.0)
        if not self.entropy_coef_min <= self.entropy_coef_max:
            raise ValueError("entropy_coef_min must be <= entropy_coef_max")
        super().validate()


_CONTROLLERS = {"adaptive_entropy": AdaptiveEntropyParams}
_PRESETS: dict[str, Preset] = {}
_CONFIGS: dict[str, type[MethodConfig]] = {}


def _class_name(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) + "Config"


def _make_config_class(row: Preset) -> type[MethodConfig]:
    check_combination(row.advantage, row.policy_loss, row.weighting)
    parts = [ADVANTAGES[row.advantage].params, POLICY_LOSSES[row.policy_loss].params]
    if row.weighting is not None:
        parts.append(WEIGHTINGS[row.weighting].params)
    if row.controller is not None:
        if row.controller not in _CONTROLLERS:
            raise ValueError(f"unknown controller {row.controller!r}; valid: {sorted(_CONTROLLERS)}")
        parts.append(_CONTROLLERS[row.controller])
    bases: list[type] = [MethodConfig]
    seen: dict[str, type] = {f.name: MethodConfig for f in dataclasses.fields(MethodConfig)}
    for p in parts:
        if p is NoParams or p in bases:
            continue
        for f in dataclasses.fields(p):
            if f.name in seen:
                raise ValueError(
                    f"method {row.name!r}: parameter {f.name!r} is declared by both {seen[f.name].__name__} "
                    f"and {p.__name__}; parts composed into one method need distinct parameter names"
                )
            seen[f.name] = p
        bases.append(p)
    proto = {f.name: f for b in bases for f in dataclasses.fields(b)}
    unknown = sorted(set(row.defaults) - set(proto))
    if unknown:
        raise ValueError(f"method {row.name!r}: default(s) for unknown parameter(s) {unknown}")
    fields = [(k, proto[k].type, dataclasses.field(default=v, kw_only=True)) for k, v in row.defaults.items()]
    namespace = {
        "name": row.name,
        "advantage": row.advantage,
        "policy_loss": row.policy_loss,
        "weighting": row.weighting,
        "citation": row.citation,
        "caveats": row.caveats,
        "__module__": __name__,
    }
    cls = dataclasses.make_dataclass(
        _class_name(row.name), fields, bases=tuple(bases), namespace=namespace, kw_only=True
    )
    cls.__doc__ = f"Config of method {row.name!r}: {row.citation}"
    return cls


def define_method(row: Preset, *, register: bool = True) -> type[MethodConfig]:
    """Add a row to the method table (a name not yet registered); returns its config class.

    The parts must exist and compose (:func:`steer.core.parts.check_combination`); defaults must
    name existing parameters. Errors are ValueError naming the problem. ``register=False`` only
    builds and returns the config class (``Method(row.name, cls(**params))`` then builds the
    method) without adding the name to the table.
    """
    if not isinstance(row, Preset):
        raise ValueError(f"define_method needs a steer.core.presets.Preset, got {type(row).__name__}")
    if register and row.name in _PRESETS:
        raise ValueError(f"method {row.name!r} is already registered")
    cls = _make_config_class(row)
    if not register:
        return cls
    _PRESETS[row.name] = row
    _CONFIGS[row.name] = cls
    globals()[cls.__name__] = cls  # importable (pickle) as steer.core.registry.<Name>Config
    return cls


for _row in PRESETS:
    define_method(_row)


def list_methods() -> list[str]:
    """Registered method names, in table order."""
    return list(_CONFIGS)


def method_config_class(name: str) -> type[MethodConfig]:
    """The config dataclass of a method; unknown name -> ValueError listing the valid ones."""
    try:
        return _CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {list_methods()}") from None


def method_preset(name: str) -> Preset:
    """The table row of a method (its parts, defaults, citation, caveats)."""
    method_config_class(name)
    return _PRESETS[name]


def row_requirements(name: str) -> frozenset[str]:
    """What method ``name`` reads with its row's defaults (a subset of :data:`REQUIREMENTS`), known
    without building it: a parameter without a published default stays unset, and a part whose
    requirements would read it counts as reading nothing extra. For listings (which engines can
    run it); a built method's own is :attr:`Method.requires`."""
    cls = method_config_class(name)
    defaults = types.SimpleNamespace(
        **{f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    )
    row = _PRESETS[name]
    parts = [ADVANTAGES[row.advantage], POLICY_LOSSES[row.policy_loss]]
    if row.weighting is not None:
        parts.append(WEIGHTINGS[row.weighting])
    out: set[str] = set()
    for part in parts:
        try:
            out |= part.requirements(defaults)
        except AttributeError:  # reads a parameter that has no default
            pass
    return frozenset(out)


def _required_fields(cls: type) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def build_method(name: str, **overrides) -> Method:
    """Build the registered method ``name`` with its published defaults, overridden by ``overrides``.

    Unknown name or parameter, a missing required parameter, or a bad value raise ValueError
    (listing the valid names/parameters where relevant).
    """
    cls = method_config_class(name)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for method {name!r}; valid: {sorted(valid)}")
    missing = [f for f in _required_fields(cls) if f not in overrides]
    if missing:
        raise ValueError(
            f"method {name!r} needs parameter(s) {missing} (no verified published default; see "
            f"{cls.__name__}.caveats: {cls.caveats})"
        )
    return Method(name, cls(**overrides))


# --------------------------------------------------------------------------------------------
# Method


#: The per-token tensors of a :class:`LossBatch` (None where absent) that every loss checks: the
#: shape of the response mask, finite values on its valid tokens.
_LOSS_TENSORS = (
    "logp",
    "old_logp",
    "advantages",
    "entropy",
    "old_entropy",
    "sum_p2",
    "sum_p2_logp",
    "ref_logp",
)


def _needs(requirement: str, of: str = "_loss_requires") -> property:
    """A ``Method.needs_*`` flag: ``requirement`` is in the method's requirement set ``of``."""
    return property(lambda self: requirement in getattr(self, of), doc=f"{requirement!r} in Method.{of}")


class Method:
    """A registered method: advantages, per-token loss, aggregation, regularisers, controllers.
    Build it with :func:`build_method`.

    Attributes: ``name``, ``config``, ``requires`` (what it reads), ``generator`` (random token
    selection; its state is in :meth:`state_dict`), ``controller`` (adaptive entropy, else None);
    the flags ``needs_entropy``, ``needs_old_entropy``, ``needs_sums``, ``needs_ref``,
    ``needs_old_logp``, ``needs_generator`` spell out ``requires``.
    """

    def __init__(self, name: str, config: MethodConfig) -> None:
        if not isinstance(config, MethodConfig):
            raise ValueError(f"config must be a MethodConfig, got {type(config).__name__}")
        config.validate()
        check_combination(config.advantage, config.policy_loss, config.weighting)
        self.name = name
        self.config = config
        self._advantage = ADVANTAGES[config.advantage]
        self._loss = POLICY_LOSSES[config.policy_loss]
        self._weighting = WEIGHTINGS[config.weighting] if config.weighting is not None else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.controller: AdaptiveEntropyController | None = None
        if isinstance(config, AdaptiveEntropyParams):
            self.controller = AdaptiveEntropyController(
                target=config.entropy_target,
                delta=config.entropy_delta,
                coef_init=config.entropy_coef_init,
                coef_min=config.entropy_coef_min,
                coef_max=config.entropy_coef_max,
            )
        c = config
        loss_req = set(self._loss.requirements(c))
        if self._weighting is not None:
            loss_req |= self._weighting.requirements(c)
        if c.entropy_coef != 0 or self.controller is not None:
            loss_req.add("entropy")
        if c.kl_coef != 0:
            loss_req.add("ref_logp")
        self._loss_requires = frozenset(loss_req)
        self._advantage_requires = self._advantage.requirements(c)

    def __repr__(self) -> str:
        return f"Method({self.name!r}, {self.config!r})"

    # ---- requirements ------------------------------------------------------------------------
    @property
    def requires(self) -> frozenset[str]:
        """What the method reads beyond the always-present inputs (logp, old_logp, advantages,
        response_mask, lr), a subset of :data:`REQUIREMENTS`:

        - ``"entropy"``: current-policy entropy in ``LossBatch.entropy`` (with its graph when an
          entropy bonus uses it); without it the quadrant metrics fall back to ``old_entropy``;
        - ``"old_entropy"``: rollout-policy entropy (``RolloutBatch`` for the advantage and/or
          ``LossBatch`` for the loss);
        - ``"sums"``: ``LossBatch.sum_p2`` and ``sum_p2_logp`` (the ``exact`` estimator);
        - ``"ref_logp"``: reference-policy log-probs (a KL penalty);
        - ``"old_logp"``: ``RolloutBatch.old_logp`` for the advantage;
        - ``"generator"``: the method draws random tokens from ``Method.generator`` (its state is
          in ``state_dict``).
        """
        return self._loss_requires | self._advantage_requires

    needs_old_entropy = _needs("old_entropy", "requires")  # the advantage's or the loss's
    needs_entropy = _needs("entropy")
    needs_sums = _needs("sums")
    needs_ref = _needs("ref_logp")
    needs_old_logp = _needs("old_logp", "_advantage_requires")
    needs_generator = _needs("generator")

    # ---- advantages --------------------------------------------------------------------------
    def compute_advantages(self, batch: RolloutBatch) -> Tensor:
        """(B, T) token advantages, 0 on padding (the method's advantage estimator)."""
        req = self._advantage_requires
        if "old_entropy" in req and batch.old_entropy is None:
            raise ValueError(f"method {self.name!r} needs RolloutBatch.old_entropy")
        if "old_logp" in req and batch.old_logp is None:
            raise ValueError(f"method {self.name!r} needs RolloutBatch.old_logp")
        return self._advantage.fn(batch, self.config)

    # ---- loss --------------------------------------------------------------------------------
    def _validate_loss_batch(self, batch: LossBatch) -> Tensor:
        tensors = {k: getattr(batch, k) for k in _LOSS_TENSORS}
        check_same_shape(response_mask=batch.response_mask, **tensors)
        m = as_bool_mask(batch.response_mask)
        req = self._loss_requires
        if "entropy" in req and batch.entropy is None:
            raise ValueError(f"method {self.name!r} needs LossBatch.entropy (current-policy entropy)")
        if "old_entropy" in req and batch.old_entropy is None:
            raise ValueError(f"method {self.name!r} needs LossBatch.old_entropy")
        if "sums" in req and (batch.sum_p2 is None or batch.sum_p2_logp is None):
            raise ValueError(f"method {self.name!r} needs LossBatch.sum_p2 and sum_p2_logp")
        if "ref_logp" in req and batch.ref_logp is None:
            raise ValueError(f"method {self.name!r} needs LossBatch.ref_logp (kl_coef != 0)")
        if "cause" in req:
            if batch.token_cause is None:
                raise ValueError(
                    f"method {self.name!r} needs LossBatch.token_cause (the per-token JVP along the "
                    "preconditioned entropy gradient; the single-process trainer computes it)"
                )
            check_same_shape(token_cause=batch.token_cause, response_mask=batch.response_mask)
            check_finite(m, token_cause=batch.token_cause)
            if batch.cause_offset is not None and not math.isfinite(float(batch.cause_offset)):
                raise NonFiniteError(
                    f"cause_offset must be finite, got {batch.cause_offset!r}", name="cause_offset", count=1
                )
        check_finite(m, **tensors)
        if not math.isfinite(float(batch.lr)):
            raise NonFiniteError(f"lr must be finite, got {batch.lr!r}", name="lr", count=1)
        if batch.max_response_length is not None and not (
            isinstance(batch.max_response_length, int) and batch.max_response_length > 0
        ):
            raise ValueError(f"max_response_length must be a positive int, got {batch.max_response_length!r}")
        return m

    def _surrogate(self, batch: LossBatch, m: Tensor) -> L.SurrogateResult:
        with torch.no_grad():
            return self._loss.surrogate(batch, m, self.config)

    def scope_stats(self, batch: LossBatch) -> dict[str, Tensor]:
        """Statistics (no grad) that the caller MAX-reduces over every micro-batch of the
        mini-batch, and over ranks, before the loss; pass the result as ``LossBatch.scope_stats``.

        STEER with ``scope`` 'minibatch' (the default) / 'global': ``{"omega_max": max|Omega| of
        this batch}`` (0-dim tensor). Every other method, and STEER with ``scope='microbatch'``
        (``steer_reference``): ``{}``. Does not touch the method's generator.
        """
        w = self._weighting
        if w is None or w.scope_stats is None or getattr(self.config, "scope", "microbatch") == "microbatch":
            return {}
        m = self._validate_loss_batch(batch)
        with torch.no_grad():
            return w.scope_stats(batch, m, self.config, self._surrogate(batch, m))

    def reduce_scope_stats(self, stats: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Combine the :meth:`scope_stats` of every micro-batch of a mini-batch into the
        mini-batch's: the weighting's own reduction where it declares one (``entropy_band``
        solves for its strength over the whole mini-batch), else the elementwise MAX of every key.
        An empty list, or a method without statistics, gives ``{}``."""
        stats = [s for s in stats if s]
        if not stats:
            return {}
        w = self._weighting
        if w is not None and w.scope_reduce is not None:
            return w.scope_reduce(self.config, stats)
        out = dict(stats[0])
        for more in stats[1:]:
            if set(more) != set(out):
                raise ValueError(f"scope statistics have different keys: {sorted(out)} vs {sorted(more)}")
            out = {k: torch.maximum(v, more[k]) for k, v in out.items()}
        return out

    @property
    def scope_reduce_op(self) -> str | None:
        """The elementwise op of :meth:`reduce_scope_stats` that a distributed caller applies over
        ranks with an all-reduce after it (``"max"``), or None when the weighting reduces its
        statistics with its own function (no all-reduce reproduces it; single process only)."""
        w = self._weighting
        return None if w is not None and w.scope_reduce is not None else "max"

    def compute_omega(self, batch: LossBatch) -> Tensor:
        """The per-token Omega this method's weighting acts on for this batch (detached, 0 on
        padding). Only for a weighting that declares one (:class:`steer.core.parts.Part` ``omega``);
        ``scope_stats`` is the hook a caller needs for the mini-batch statistics."""
        w = self._weighting
        if w is None or w.omega is None:
            having = sorted(n for n, p in WEIGHTINGS.items() if p.omega is not None)
            raise ValueError(
                f"method {self.name!r} has no per-token Omega; compute_omega needs a method whose "
                f"weighting declares one ({having})"
            )
        m = self._validate_loss_batch(batch)
        with torch.no_grad():
            omega = w.omega(batch, self.config, self._surrogate(batch, m))
        return torch.where(m, omega, torch.zeros((), dtype=omega.dtype))

    def token_loss(self, batch: LossBatch) -> TokenLoss:
        """The method's per-token policy loss for one (micro-)batch, not aggregated, without the
        entropy-bonus / KL regularisers (:class:`steer.core.types.TokenLoss`).

        Same inputs and validation as :meth:`compute_loss`. Its metrics are every per-batch key
        except ``pg_loss``, ``loss`` and the regularisers' (those need the aggregated loss).
        """
        m = self._validate_loss_batch(batch)
        return self._token_loss(batch, m)

    def _token_loss(self, batch: LossBatch, m: Tensor) -> TokenLoss:
        c = self.config
        tl, s = self._loss.fn(batch, m, c, self.generator)
        omega: Tensor | None = None
        if self._weighting is not None:
            wt = self._weighting.fn(batch, m, c, s, self.generator)
            tl = L.apply_weighting(tl, wt, m)
            omega = wt.omega
        if c.quadrant_metrics:
            # quadrants from sign(A) and sign(delta) (Eq. 8); Omega: the method's own (STEER), else
            # Eq. 7 with w = I_clip r A from the loss's surrogate
            ent = batch.entropy if batch.entropy is not None else batch.old_entropy
            with torch.no_grad():
                if ent is not None:
                    q = L.assign_quadrants(batch.advantages, m, logp=batch.logp, entropy=ent, by="delta")
                    if omega is None:
                        w = s.token_weight(batch.advantages)
                        omega = omega_paper(w, batch.logp, ent, float(batch.lr))
                    tl.metrics.update(L.quadrant_metrics(q, omega))
                tl.metrics.update(L.clip_by_prob_metrics(s, batch.old_logp, m))
        tl.metrics["old_nll_mean"] = AdaptiveEntropyController.estimate(batch.old_logp, m)
        return tl

    def compute_loss(self, batch: LossBatch) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss (to minimise) and metrics for one (micro-)batch.

        ``loss = aggregate(token_loss) - entropy_coef * agg(H) + kl_coef * agg(kl)``. Metrics: the
        token loss's (the standard keys ``clipfrac_low``, ``clipfrac_high``, ``clipfrac_dual``,
        ``ratio_mean``, ``entropy_mean`` when entropy is given, ``weight_mean``, ``weight_min``,
        ``tokens``, ``quadrant/{I..IV}/count`` and ``quadrant/{I..IV}/omega_sum`` when an entropy
        is given, ``clip_by_prob/*``, ``old_nll_mean``, method-specific keys), plus ``pg_loss``,
        ``loss`` and the regularisers' keys (docs/methods.md). Non-finite inputs on valid tokens
        raise :class:`steer.core.errors.NonFiniteError`; missing required statistics or
        mismatched shapes raise ValueError.
        """
        c = self.config
        m = self._validate_loss_batch(batch)
        tl = self._token_loss(batch, m)
        norm = Normalisers.of(batch, c.loss_scale_factor)
        pg = aggregate(tl, m, c.loss_agg_mode, norm)
        loss = pg
        extra: dict[str, float] = {"pg_loss": float(pg.detach())}
        if batch.token_cause is not None:
            extra.update(self._predicted_change(batch, m, pg))
        coef = self.controller.realised_coef if self.controller is not None else c.entropy_coef
        if self.controller is not None or c.entropy_coef != 0:
            ent_term = entropy_bonus_loss(
                batch.entropy,
                m,
                coef,
                c.loss_agg_mode,
                norm,
            )
            loss = loss + ent_term
            extra["entropy_coef"] = float(coef)
            extra["entropy_loss"] = float(ent_term.detach())
        if c.kl_coef != 0:
            kl_term, kl_mean = kl_penalty_loss(
                batch.logp,
                batch.ref_logp,
                m,
                c.kl_coef,
                c.kl_type,
                c.loss_agg_mode,
                norm,
            )
            loss = loss + kl_term
            extra["kl_loss"] = float(kl_term.detach())
            extra["kl_mean"] = kl_mean
        metrics = tl.metrics
        metrics.update(extra)
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def cause_coefficients(self, batch: LossBatch) -> Tensor:
        """(B, T) detached float64 ``u_t = -d L0 / d log pi_t`` of the method's surrogate loss L0
        without its token weights (``coef_t * I_clip r_t A_t``), 0 on padding: what a caller needs
        for the unweighted policy gradient ``-grad sum_t u_t log pi_t`` that the cause pass
        linearises the optimiser step at. Needs no ``token_cause``."""
        m = as_bool_mask(batch.response_mask)
        return _causal.cause_coefficients(batch, m, self.config, self._surrogate(batch, m))

    def _predicted_change(self, batch: LossBatch, m: Tensor, pg: Tensor) -> dict[str, float]:
        """``cause/pred_sum``: ``sum_t u_t g_t`` with ``u_t = -d pg / d log pi_t`` of the method's own
        aggregated policy loss (its weights, masks and normaliser, by autograd) and
        ``g_t = batch.token_cause``: the first-order change of the mini-batch's total entropy that
        this micro-batch's policy-loss gradient causes (the regularisers' terms are not in it).
        ``cause/pred_sum_unweighted``: the same with every weight 1 (the surrogate alone)."""
        g = batch.token_cause.detach().double()
        if batch.logp.requires_grad and pg.requires_grad:
            (du,) = torch.autograd.grad(pg, batch.logp, retain_graph=True, allow_unused=True)
            u = torch.zeros_like(g) if du is None else -du.detach().double().to(g.device)
            pred = float((u * g)[m.to(g.device)].sum())
        else:
            pred = math.nan
        c0 = _causal.token_cause(batch, m, self.config, self._surrogate(batch, m))
        return {"cause/pred_sum": pred, "cause/pred_sum_unweighted": float(c0[m.to(c0.device)].sum())}

    # ---- controllers and state ---------------------------------------------------------------
    def on_step_end(self, step_metrics: dict) -> dict:
        """Call once per training step after the update with the step's (reduced) metrics.

        For ``adaptive_entropy`` it feeds ``step_metrics['old_nll_mean']`` (-mean old log-prob, the
        Skywork estimate) to the controller and returns ``{'entropy_coef': realised, 'entropy_coef_raw': c}``;
        other methods return ``{}``.
        """
        if self.controller is None:
            return {}
        if "old_nll_mean" not in step_metrics:
            raise ValueError(
                f"adaptive_entropy.on_step_end needs 'old_nll_mean' in step_metrics; got keys {sorted(step_metrics)}"
            )
        realised = self.controller.update(float(step_metrics["old_nll_mean"]))
        return {"entropy_coef": realised, "entropy_coef_raw": self.controller.coef}

    def state_dict(self) -> dict:
        """Controller state and the generator state (for exact resumption)."""
        state: dict = {"name": self.name, "generator": self.generator.get_state()}
        if self.controller is not None:
            state["controller"] = self.controller.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"state_dict is for method {state.get('name')!r}, not {self.name!r}")
        if "generator" in state:
            self.generator.set_state(state["generator"])
        if self.controller is not None and "controller" in state:
            self.controller.load_state_dict(state["controller"])
