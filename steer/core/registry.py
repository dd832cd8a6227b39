"""The method registry: every entropy intervention (and STEER) by a stable name.

A :class:`Method` is composed from four parts, all declared by its config class:

1. an **advantage estimator** (``config.advantage``: grpo, opo, psr_nsr, unlikeliness, entropy_adv,
   gtpo, grpo_s, edge_grpo, ppl, position; :mod:`steer.core.advantages`);
2. a **policy-loss kind** (``config.policy_loss``: vanilla clipped surrogate with eps_low/eps_high
   and optional dual clip, clip_cov, kl_cov; :mod:`steer.core.losses`);
3. an optional **token weighting** (``config.weighting``: steer, forking, quadrant) that multiplies
   the per-token loss or selects tokens; aggregation is unchanged;
4. **regularisers** present in every config: an entropy bonus (``entropy_coef``, or Skywork's
   adaptive controller for ``adaptive_entropy``) and a KL penalty (``kl_coef``, ``kl_type``).

So STEER composes with clip-higher and dual clip (its defaults: eps 0.2/0.28, c = 10, as in the
paper's recipe), and any method can add an entropy bonus or a KL penalty through ``build_method``
overrides. Each config class holds the published defaults, a one-line ``citation`` and, where a
default is unverified, ``caveats`` (spec methods.md §16).

Public API: :func:`list_methods`, :func:`build_method`, :func:`method_config_class`, :class:`Method`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from steer.core import advantages as adv
from steer.core import losses as L
from steer.core.aggregation import aggregate_token_loss
from steer.core.errors import NonFiniteError
from steer.core.estimators import omega_exact, omega_paper, omega_reference, token_weight_w
from steer.core.types import LossBatch, Normalisers, RolloutBatch, TokenLoss, as_bool_mask, check_same_shape
from steer.core.weights import MAPPINGS, scope_max_abs, steer_weights

__all__ = [
    "ADVANTAGE_KINDS",
    "POLICY_LOSS_KINDS",
    "REQUIREMENTS",
    "STEER_ESTIMATORS",
    "STEER_SCOPES",
    "WEIGHTING_KINDS",
    "Method",
    "MethodConfig",
    "build_method",
    "list_methods",
    "method_config_class",
]

ADVANTAGE_KINDS = (
    "grpo",
    "opo",
    "psr_nsr",
    "unlikeliness",
    "entropy_adv",
    "gtpo",
    "grpo_s",
    "edge_grpo",
    "ppl",
    "position",
)
POLICY_LOSS_KINDS = ("vanilla", "clip_cov", "kl_cov")
WEIGHTING_KINDS = (None, "steer", "forking", "quadrant")
STEER_ESTIMATORS = ("paper", "reference", "exact")
STEER_SCOPES = ("microbatch", "minibatch", "global")
#: the names ``Method.requires`` draws from
REQUIREMENTS = frozenset({"entropy", "old_entropy", "sums", "ref_logp", "old_logp", "generator"})

_REQUIRED = dataclasses.MISSING


# --------------------------------------------------------------------------------------------
# configs


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


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")


def _range(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
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
class MethodConfig:
    """Fields shared by every method (policy loss, aggregation, regularisers).

    - ``eps_low`` / ``eps_high``: decoupled clip range ``[1 - eps_low, 1 + eps_high]`` (Eq. 2, 6).
    - ``clip_c``: dual-clip constant c (only A < 0), None = off.
    - ``loss_agg_mode``: one of :data:`steer.core.losses.AGG_MODES`; ``loss_scale_factor`` for
      ``seq-mean-token-sum-norm`` (None = padded length).
    - ``norm_adv_by_std`` / ``adv_epsilon``: GRPO normalisation (Eq. 1) where the estimator uses it.
    - ``entropy_coef``: fixed entropy bonus ``-c * agg(H)`` (0 = off).
    - ``kl_coef`` / ``kl_type``: KL penalty ``kl_coef * agg(kl)`` against ``LossBatch.ref_logp``.
    - ``quadrant_metrics``: emit ``quadrant/{q}/count`` and ``omega_sum`` when entropy is available.
    - ``seed``: seed of the method's ``torch.Generator`` (random token selection).
    """

    advantage: ClassVar[str] = "grpo"
    policy_loss: ClassVar[str] = "vanilla"
    weighting: ClassVar[str | None] = None
    citation: ClassVar[str] = ""
    caveats: ClassVar[str] = ""

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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Type and value checks; raise ValueError naming the field."""
        for f in dataclasses.fields(self):
            check = _TYPE_CHECKS.get(str(f.type))
            v = getattr(self, f.name)
            if check is not None and not check(v):
                raise ValueError(f"{type(self).__name__}.{f.name} must be of type {f.type}, got {v!r}")
        _range("eps_low", self.eps_low, 0)
        _range("eps_high", self.eps_high, 0)
        if self.clip_c is not None:
            _range("clip_c", self.clip_c, 1.0, lo_open=True)
        _choice("loss_agg_mode", self.loss_agg_mode, L.AGG_MODES)
        if self.loss_scale_factor is not None:
            _range("loss_scale_factor", self.loss_scale_factor, 0.0, lo_open=True)
        _range("log_ratio_clamp", self.log_ratio_clamp, 0.0, lo_open=True)
        _range("adv_epsilon", self.adv_epsilon, 0.0)
        _range("kl_coef", self.kl_coef, 0.0)
        _choice("kl_type", self.kl_type, L.KL_TYPES)


@dataclass(kw_only=True)
class GRPOConfig(MethodConfig):
    citation: ClassVar[str] = (
        "GRPO (Shao et al. 2024, arXiv 2402.03300): paper Eq. 1-2; verl compute_grpo_outcome_advantage + compute_policy_loss_vanilla"
    )


@dataclass(kw_only=True)
class DrGRPOConfig(MethodConfig):
    citation: ClassVar[str] = (
        "Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): no std normalisation, seq-mean-token-sum-norm; spec §10"
    )
    caveats: ClassVar[str] = (
        "verl divides by the padded length unless loss_scale_factor is set; the paper uses the max generation length"
    )
    norm_adv_by_std: bool = False
    loss_agg_mode: str = "seq-mean-token-sum-norm"


@dataclass(kw_only=True)
class ClipHigherConfig(MethodConfig):
    citation: ClassVar[str] = (
        "DAPO clip-higher (Yu et al. 2025, arXiv 2503.14476): eps_low 0.2, eps_high 0.28; spec §10"
    )
    eps_high: float = 0.28


@dataclass(kw_only=True)
class DualClipConfig(MethodConfig):
    citation: ClassVar[str] = (
        "Dual clip (Ye et al. 2019, arXiv 1912.09729): cap -c*A for A < 0; verl clip_ratio_c; spec §10"
    )
    caveats: ClassVar[str] = "c = 3 is verl's default; the Entropy-Mechanism, 80/20 and STEER scripts use 10"
    clip_c: float | None = 3.0


@dataclass(kw_only=True)
class EntropyBonusConfig(MethodConfig):
    citation: ClassVar[str] = (
        "Entropy regularisation -c*agg(H) (paper Table 3; spec §11); c = 0.001 (verl 0.2 / Skywork config default)"
    )
    caveats: ClassVar[str] = "the coefficient of the paper's 'GRPO w/ Entro. Loss' baseline is not stated"
    entropy_coef: float = 0.001


@dataclass(kw_only=True)
class AdaptiveEntropyConfig(MethodConfig):
    citation: ClassVar[str] = (
        "Skywork-OR1 adaptive entropy control (He et al. 2025, arXiv 2505.22312; EntController); spec §11"
    )
    caveats: ClassVar[str] = (
        "defaults from or1_scripts (config-file fallbacks differ: delta 1e-3, c_max 0.5, target 0); "
        "the controller updates once per step from metrics['old_nll_mean'] via on_step_end"
    )
    entropy_target: float = 0.2
    entropy_delta: float = 1e-4
    entropy_coef_init: float = 0.0
    entropy_coef_min: float = 0.0
    entropy_coef_max: float = 0.005

    def validate(self) -> None:
        super().validate()
        _range("entropy_delta", self.entropy_delta, 0.0)
        if not self.entropy_coef_min <= self.entropy_coef_max:
            raise ValueError("entropy_coef_min must be <= entropy_coef_max")


@dataclass(kw_only=True)
class KLPenaltyConfig(MethodConfig):
    citation: ClassVar[str] = (
        "KL penalty in the loss (verl use_kl_loss: kl_loss_coef 0.001, low_var_kl = k3); spec §12"
    )
    caveats: ClassVar[str] = "DeepSeekMath's GRPO used k3 with beta = 0.04 [recalled]"
    kl_coef: float = 0.001
    kl_type: str = "k3"


@dataclass(kw_only=True)
class ForkingConfig(MethodConfig):
    weighting: ClassVar[str | None] = "forking"
    citation: ClassVar[str] = (
        "Forking tokens / 80-20 rule (Wang et al. 2025, arXiv 2506.01939): top-20% entropy tokens only; spec §7"
    )
    rho: float = 0.2
    eps_high: float = 0.28
    clip_c: float | None = 10.0

    def validate(self) -> None:
        super().validate()
        _range("rho", self.rho, 0.0, 1.0, lo_open=True)


@dataclass(kw_only=True)
class PSRNSRConfig(MethodConfig):
    advantage: ClassVar[str] = "psr_nsr"
    citation: ClassVar[str] = (
        "PSR/NSR/W-REINFORCE (Zhu et al. 2025, arXiv 2506.01347): compute_psr_nsr_outcome_advantage; spec §5"
    )
    caveats: ClassVar[str] = (
        "the released code optimises with PPO-clip 0.2 and leaves verl's entropy_coeff 0.001 active; set entropy_coef=0.001 to match"
    )
    mode: str = "weighted"
    positive_weight: float = 0.1
    success_threshold: float = 0.0

    def validate(self) -> None:
        super().validate()
        _choice("mode", self.mode, ("positive", "negative", "weighted"))
        _range("positive_weight", self.positive_weight, 0.0)


@dataclass(kw_only=True)
class PSRConfig(PSRNSRConfig):
    mode: str = "positive"


@dataclass(kw_only=True)
class NSRConfig(PSRNSRConfig):
    mode: str = "negative"


@dataclass(kw_only=True)
class WReinforceConfig(PSRNSRConfig):
    caveats: ClassVar[str] = PSRNSRConfig.caveats + "; lambda = 0.1 was chosen empirically (not ablated)"
    mode: str = "weighted"


@dataclass(kw_only=True)
class EntropyAdvConfig(MethodConfig):
    advantage: ClassVar[str] = "entropy_adv"
    citation: ClassVar[str] = (
        "Entropy advantage (Cheng et al. 2025, arXiv 2506.14758): A + min(alpha*H, |A|/kappa); spec §2"
    )
    caveats: ClassVar[str] = (
        "alpha per base algorithm is unverified (0.4 for GRPO and 0.1 for PPO come from re-implementations); no official code"
    )
    alpha: float = 0.4
    kappa: float = 2.0

    def validate(self) -> None:
        super().validate()
        _range("alpha", self.alpha, 0.0)
        _range("kappa", self.kappa, 1.0, lo_open=True)


@dataclass(kw_only=True)
class ClipCovConfig(MethodConfig):
    policy_loss: ClassVar[str] = "clip_cov"
    citation: ClassVar[str] = (
        "Clip-Cov (Cui et al. 2025, arXiv 2505.22617): compute_policy_loss_clip_cov; spec §1.2"
    )
    caveats: ClassVar[str] = "statistics per micro-batch as in the reference; no dual clip in this loss"
    eps_low: float = 1.0
    eps_high: float = 1.0
    clip_cov_ratio: float = 2e-4
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0

    def validate(self) -> None:
        super().validate()
        _range("clip_cov_ratio", self.clip_cov_ratio, 0.0, 1.0)
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ValueError("clip_cov_lb must be < clip_cov_ub")
        if self.clip_c is not None:
            raise ValueError("clip_cov applies no dual clip; clip_c must be None")


@dataclass(kw_only=True)
class KLCovConfig(MethodConfig):
    policy_loss: ClassVar[str] = "kl_cov"
    citation: ClassVar[str] = (
        "KL-Cov (Cui et al. 2025, arXiv 2505.22617): compute_policy_loss_kl_cov; spec §1.3"
    )
    caveats: ClassVar[str] = (
        "k = 2e-3 is the Qwen2.5-7B setting (2e-4 for 32B); no PPO clip (eps_low/eps_high/clip_c unused)"
    )
    kl_cov_ratio: float = 2e-3
    kl_cov_coef: float = 1.0

    def validate(self) -> None:
        super().validate()
        _range("kl_cov_ratio", self.kl_cov_ratio, 0.0, 1.0)
        _range("kl_cov_coef", self.kl_cov_coef, 0.0)


@dataclass(kw_only=True)
class GTPOConfig(MethodConfig):
    advantage: ClassVar[str] = "gtpo"
    citation: ClassVar[str] = (
        "GTPO (Tan & Pan 2025, arXiv 2508.04349): token-level entropy-shaped rewards; spec §3"
    )
    caveats: ClassVar[str] = (
        "alpha1/alpha2 have no verified default (required; the paper states alpha1 + alpha2 = 1); "
        "joint z-score over the group's tokens is our choice; no official code"
    )
    alpha1: float = _REQUIRED  # type: ignore[assignment]
    alpha2: float = _REQUIRED  # type: ignore[assignment]
    success_threshold: float = 0.0
    eps_high: float = 0.28

    def validate(self) -> None:
        super().validate()
        _range("alpha1", self.alpha1, 0.0)
        _range("alpha2", self.alpha2, 0.0)


@dataclass(kw_only=True)
class GRPOSConfig(MethodConfig):
    advantage: ClassVar[str] = "grpo_s"
    citation: ClassVar[str] = (
        "GRPO-S (Tan & Pan 2025, arXiv 2508.04349): sequence-level entropy-shaped rewards; spec §3"
    )
    caveats: ClassVar[str] = "beta1/beta2 have no verified default (required); no official code"
    beta1: float = _REQUIRED  # type: ignore[assignment]
    beta2: float = _REQUIRED  # type: ignore[assignment]
    success_threshold: float = 0.0
    eps_high: float = 0.28

    def validate(self) -> None:
        super().validate()
        _range("beta1", self.beta1, 0.0)
        _range("beta2", self.beta2, 0.0)


@dataclass(kw_only=True)
class EdgeGRPOConfig(MethodConfig):
    advantage: ClassVar[str] = "edge_grpo"
    citation: ClassVar[str] = (
        "EDGE-GRPO EDA (Zhang et al. 2025, arXiv 2507.21848): A / (P_i / mean P); grpo_aha_trainer.py; spec §4"
    )
    caveats: ClassVar[str] = (
        "P over response tokens and detached (the released code averages over padded length and keeps the graph); "
        "GEC is a rollout-time intervention, not in the core"
    )
    adv_epsilon: float = 1e-4
    padded_mean: bool = False


@dataclass(kw_only=True)
class UnlikelinessConfig(MethodConfig):
    advantage: ClassVar[str] = "unlikeliness"
    citation: ClassVar[str] = (
        "Unlikeliness reward (He, Fried, Welleck 2025, arXiv 2506.02355): R*(1 - beta*rank/G); spec §6"
    )
    caveats: ClassVar[str] = (
        "the paper's best recipe also uses kl_coef 0.1 (k3) and 2 PPO epochs; G = 32 there; "
        "rewards are binarised to 1[R > success_threshold] (the reference code's 0/1 rewards)"
    )
    beta_rank: float = 0.25
    success_threshold: float = 0.0

    def validate(self) -> None:
        super().validate()
        _range("beta_rank", self.beta_rank, 0.0)


@dataclass(kw_only=True)
class OPOConfig(MethodConfig):
    advantage: ClassVar[str] = "opo"
    citation: ClassVar[str] = (
        "OPO (Hao et al. 2025, arXiv 2505.23585): length-weighted optimal baseline, exact on-policy; spec §9"
    )
    caveats: ClassVar[str] = "exact on-policy training (one step per rollout batch) is a trainer setting"


@dataclass(kw_only=True)
class PPLAdvConfig(MethodConfig):
    advantage: ClassVar[str] = "ppl"
    citation: ClassVar[str] = (
        "PPL-based shaping (Deng et al. 2025, arXiv 2508.02260): A*(1 - alpha*z(log PPL)); spec §8"
    )
    caveats: ClassVar[str] = "form and alpha unverified (no released code); alpha is required"
    alpha: float = _REQUIRED  # type: ignore[assignment]
    standardize: bool = True

    def validate(self) -> None:
        super().validate()
        _range("alpha", self.alpha, 0.0)


@dataclass(kw_only=True)
class PositionAdvConfig(MethodConfig):
    advantage: ClassVar[str] = "position"
    citation: ClassVar[str] = (
        "Position-based shaping (Deng et al. 2025, arXiv 2508.02260): A + gamma*sign(A)*sigma(t/|o|); spec §8"
    )
    caveats: ClassVar[str] = (
        "form, gamma and sigma unverified (no released code); gamma and sigma are required"
    )
    gamma: float = _REQUIRED  # type: ignore[assignment]
    sigma: str = _REQUIRED  # type: ignore[assignment]
    sharpness: float = 10.0
    center: float = 0.5

    def validate(self) -> None:
        super().validate()
        _range("gamma", self.gamma, 0.0)
        _choice("sigma", self.sigma, ("linear", "sigmoid"))


@dataclass(kw_only=True)
class QuadrantConfig(MethodConfig):
    weighting: ClassVar[str | None] = "quadrant"
    citation: ClassVar[str] = (
        "Quadrant interventions (STEER paper section 3.2.1, Figure 6, appendix D.2): mask or up-weight 10% of one quadrant"
    )
    caveats: ClassVar[str] = (
        "appendix D.2 selects by probability > 0.8 / < 0.2 (current policy here); by='delta' uses sign(delta) of Eq. 8"
    )
    target: str = _REQUIRED  # type: ignore[assignment]
    action: str = "mask"
    fraction: float = 0.1
    factor: float = 2.0
    by: str = "prob"
    high_prob: float = 0.8
    low_prob: float = 0.2

    def validate(self) -> None:
        super().validate()
        _choice("target", self.target, L.QUADRANTS)
        _choice("action", self.action, ("mask", "upweight"))
        _choice("by", self.by, ("prob", "delta"))
        _range("fraction", self.fraction, 0.0, 1.0)
        _range("factor", self.factor, 0.0)
        if not 0.0 <= self.low_prob <= self.high_prob <= 1.0:
            raise ValueError("need 0 <= low_prob <= high_prob <= 1")


@dataclass(kw_only=True)
class SteerConfig(MethodConfig):
    """STEER (paper section 4, Eq. 10) on top of clip-higher and dual clip.

    - ``estimator``: 'paper' (Eq. 7 with w = I_clip*r*A from the detached current ratio and the
      current entropy), 'reference' (the released code's form with the old entropy, spec §13.3),
      'exact' (first-order softmax value, spec §13.1; needs the sums).
    - ``lambda_min`` in (0, 1] (1 = exactly GRPO); ``mapping`` exp / linear / binary with
      ``lambda_max`` (linear) and ``quantile`` (binary).
    - ``scope``: where max|Omega| is taken. The Method always uses the batch it is given unless
      ``LossBatch.omega_max`` is set; for 'minibatch' / 'global' the caller computes the max first
      (``Method.compute_omega`` + ``scope_max_abs``, or an all-reduce MAX) and passes it.
    - ``max_floor``: M = max(max|Omega|, max_floor) (0.02 in the released code).
    - ``omega_lr``: learning rate used inside Omega; None = ``LossBatch.lr``. It cancels in the
      weights unless ``max_floor`` > 0.
    """

    weighting: ClassVar[str | None] = "steer"
    citation: ClassVar[str] = (
        "STEER (Hao et al., arXiv 2510.10150): lambda = exp(-k|Omega|), k = -ln(lambda_min)/max|Omega| (Eq. 10)"
    )
    caveats: ClassVar[str] = (
        "lambda_min 0.7 is the paper's ablation setting (released code: 0.8); the printed Omega (Eq. 7) "
        "differs from the released code's form (spec §13.2-13.3)"
    )
    eps_low: float = 0.2
    eps_high: float = 0.28
    clip_c: float | None = 10.0
    estimator: str = "paper"
    lambda_min: float = 0.7
    mapping: str = "exp"
    lambda_max: float = 1.2
    quantile: float = 0.8
    scope: str = "microbatch"
    max_floor: float = 0.0
    omega_lr: float | None = None

    def validate(self) -> None:
        super().validate()
        _choice("estimator", self.estimator, STEER_ESTIMATORS)
        _range("lambda_min", self.lambda_min, 0.0, 1.0, lo_open=True)
        _choice("mapping", self.mapping, MAPPINGS)
        if self.mapping == "linear" and self.lambda_max < self.lambda_min:
            raise ValueError("lambda_max must be >= lambda_min")
        _range("quantile", self.quantile, 0.0, 1.0)
        _choice("scope", self.scope, STEER_SCOPES)
        _range("max_floor", self.max_floor, 0.0)
        if self.omega_lr is not None:
            _range("omega_lr", self.omega_lr, 0.0, lo_open=True)


@dataclass(kw_only=True)
class SteerReferenceConfig(SteerConfig):
    citation: ClassVar[str] = (
        "STEER released configuration (zz-haooo/STEER run_exp.sh, compute_token_weights): reference Omega, lambda_min 0.8, max floor 0.02"
    )
    caveats: ClassVar[str] = (
        "Omega computed without lr (omega_lr = 1) so that the 0.02 floor acts as in the released code"
    )
    estimator: str = "reference"
    lambda_min: float = 0.8
    max_floor: float = 0.02
    omega_lr: float | None = 1.0
    scope: str = "microbatch"


@dataclass(kw_only=True)
class SteerLinearConfig(SteerConfig):
    citation: ClassVar[str] = (
        "STEER linear mapping (paper section 5 ablation): lambda_min 0.7, lambda_max 1.2"
    )
    mapping: str = "linear"


@dataclass(kw_only=True)
class SteerBinaryConfig(SteerConfig):
    citation: ClassVar[str] = (
        "STEER binary mapping (paper section 5 ablation): top 20% |Omega| get lambda_min 0.7"
    )
    mapping: str = "binary"


_REGISTRY: dict[str, type[MethodConfig]] = {
    "grpo": GRPOConfig,
    "dr_grpo": DrGRPOConfig,
    "clip_higher": ClipHigherConfig,
    "dual_clip": DualClipConfig,
    "entropy_bonus": EntropyBonusConfig,
    "adaptive_entropy": AdaptiveEntropyConfig,
    "kl_penalty": KLPenaltyConfig,
    "forking_tokens": ForkingConfig,
    "psr": PSRConfig,
    "nsr": NSRConfig,
    "w_reinforce": WReinforceConfig,
    "entropy_adv": EntropyAdvConfig,
    "clip_cov": ClipCovConfig,
    "kl_cov": KLCovConfig,
    "gtpo": GTPOConfig,
    "grpo_s": GRPOSConfig,
    "edge_grpo": EdgeGRPOConfig,
    "unlikeliness": UnlikelinessConfig,
    "opo": OPOConfig,
    "ppl_adv": PPLAdvConfig,
    "position_adv": PositionAdvConfig,
    "quadrant": QuadrantConfig,
    "steer": SteerConfig,
    "steer_reference": SteerReferenceConfig,
    "steer_linear": SteerLinearConfig,
    "steer_binary": SteerBinaryConfig,
}


def list_methods() -> list[str]:
    """Registered method names, in registry order."""
    return list(_REGISTRY)


def method_config_class(name: str) -> type[MethodConfig]:
    """The config dataclass of a method; unknown name -> ValueError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {list_methods()}") from None


def _required_fields(cls: type[MethodConfig]) -> list[str]:
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


def _check_finite(name: str, x: Tensor | None, mask: Tensor) -> None:
    if x is None:
        return
    bad = mask & ~torch.isfinite(x.detach())
    if bool(bad.any()):
        raise NonFiniteError.on_valid(name, int(bad.sum()))


class Method:
    """A registered method: advantages, loss, controllers. Build it with :func:`build_method`.

    Attributes: ``name``, ``config``, ``needs_old_entropy`` (RolloutBatch/LossBatch.old_entropy),
    ``needs_entropy`` (current entropy in LossBatch, with graph where a bonus uses it),
    ``needs_sums`` (LossBatch.sum_p2 / sum_p2_logp), ``needs_ref`` (LossBatch.ref_logp),
    ``needs_old_logp`` (RolloutBatch.old_logp for the advantage), ``generator`` (random selection).
    """

    def __init__(self, name: str, config: MethodConfig) -> None:
        if not isinstance(config, MethodConfig):
            raise ValueError(f"config must be a MethodConfig, got {type(config).__name__}")
        config.validate()
        if config.advantage not in ADVANTAGE_KINDS:
            raise ValueError(f"unknown advantage kind {config.advantage!r}; valid: {list(ADVANTAGE_KINDS)}")
        if config.policy_loss not in POLICY_LOSS_KINDS:
            raise ValueError(
                f"unknown policy loss kind {config.policy_loss!r}; valid: {list(POLICY_LOSS_KINDS)}"
            )
        if config.weighting not in WEIGHTING_KINDS:
            raise ValueError(f"unknown weighting kind {config.weighting!r}; valid: {list(WEIGHTING_KINDS)}")
        self.name = name
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.controller: L.AdaptiveEntropyController | None = None
        if isinstance(config, AdaptiveEntropyConfig):
            self.controller = L.AdaptiveEntropyController(
                target=config.entropy_target,
                delta=config.entropy_delta,
                coef_init=config.entropy_coef_init,
                coef_min=config.entropy_coef_min,
                coef_max=config.entropy_coef_max,
            )

    def __repr__(self) -> str:
        return f"Method({self.name!r}, {self.config!r})"

    # ---- requirements ------------------------------------------------------------------------
    @property
    def needs_old_entropy(self) -> bool:
        c = self.config
        return c.advantage in ("entropy_adv", "gtpo", "grpo_s", "edge_grpo") or (
            c.weighting == "steer" and c.estimator == "reference"
        )

    @property
    def needs_entropy(self) -> bool:
        c = self.config
        if c.entropy_coef != 0 or self.controller is not None or c.weighting == "forking":
            return True
        if c.weighting == "steer":
            return c.estimator in ("paper", "exact")
        if c.weighting == "quadrant":
            return c.by == "delta"
        return False

    @property
    def needs_sums(self) -> bool:
        return self.config.weighting == "steer" and self.config.estimator == "exact"

    @property
    def needs_ref(self) -> bool:
        return self.config.kl_coef != 0

    @property
    def needs_old_logp(self) -> bool:
        return self.config.advantage in ("unlikeliness", "ppl")

    @property
    def needs_generator(self) -> bool:
        return self.config.policy_loss == "clip_cov" or self.config.weighting == "quadrant"

    @property
    def requires(self) -> frozenset[str]:
        """What the method reads beyond the always-present inputs (logp, old_logp, advantages,
        response_mask, lr), a subset of :data:`REQUIREMENTS`:

        - ``"entropy"``: current-policy entropy in ``LossBatch.entropy`` (with its graph when an
          entropy bonus uses it); without it the quadrant metrics fall back to ``old_entropy``;
        - ``"old_entropy"``: rollout-policy entropy (``RolloutBatch`` and ``LossBatch``);
        - ``"sums"``: ``LossBatch.sum_p2`` and ``sum_p2_logp`` (the ``exact`` estimator);
        - ``"ref_logp"``: reference-policy log-probs (a KL penalty);
        - ``"old_logp"``: ``RolloutBatch.old_logp`` for the advantage;
        - ``"generator"``: the method draws random tokens from ``Method.generator`` (its state is
          in ``state_dict``).
        """
        flags = {
            "entropy": self.needs_entropy,
            "old_entropy": self.needs_old_entropy,
            "sums": self.needs_sums,
            "ref_logp": self.needs_ref,
            "old_logp": self.needs_old_logp,
            "generator": self.needs_generator,
        }
        return frozenset(k for k, v in flags.items() if v)

    # ---- advantages --------------------------------------------------------------------------
    def compute_advantages(self, batch: RolloutBatch) -> Tensor:
        """(B, T) token advantages, 0 on padding (the config's advantage estimator)."""
        c = self.config
        r, g, m = batch.rewards, batch.group_ids, batch.response_mask
        kind = c.advantage
        if kind in ("entropy_adv", "gtpo", "grpo_s", "edge_grpo") and batch.old_entropy is None:
            raise ValueError(f"method {self.name!r} needs RolloutBatch.old_entropy")
        if kind in ("unlikeliness", "ppl") and batch.old_logp is None:
            raise ValueError(f"method {self.name!r} needs RolloutBatch.old_logp")
        if kind == "grpo":
            return adv.grpo_advantages(r, g, m, norm_adv_by_std=c.norm_adv_by_std, epsilon=c.adv_epsilon)
        if kind == "opo":
            return adv.opo_advantages(r, g, m)
        if kind == "psr_nsr":
            return adv.psr_nsr_advantages(
                r, g, m, mode=c.mode, positive_weight=c.positive_weight, success_threshold=c.success_threshold
            )
        if kind == "unlikeliness":
            return adv.unlikeliness_advantages(
                r,
                g,
                m,
                batch.old_logp,
                beta_rank=c.beta_rank,
                epsilon=c.adv_epsilon,
                success_threshold=c.success_threshold,
            )
        if kind == "entropy_adv":
            return adv.entropy_advantages(
                r,
                g,
                m,
                batch.old_entropy,
                alpha=c.alpha,
                kappa=c.kappa,
                norm_adv_by_std=c.norm_adv_by_std,
                epsilon=c.adv_epsilon,
            )
        if kind == "gtpo":
            return adv.gtpo_advantages(
                r,
                g,
                m,
                batch.old_entropy,
                alpha1=c.alpha1,
                alpha2=c.alpha2,
                success_threshold=c.success_threshold,
                epsilon=c.adv_epsilon,
            )
        if kind == "grpo_s":
            return adv.grpo_s_advantages(
                r,
                g,
                m,
                batch.old_entropy,
                beta1=c.beta1,
                beta2=c.beta2,
                success_threshold=c.success_threshold,
                epsilon=c.adv_epsilon,
            )
        if kind == "edge_grpo":
            return adv.edge_grpo_advantages(
                r, g, m, batch.old_entropy, epsilon=c.adv_epsilon, padded_mean=c.padded_mean
            )
        if kind == "ppl":
            return adv.ppl_advantages(
                r,
                g,
                m,
                batch.old_logp,
                alpha=c.alpha,
                standardize=c.standardize,
                norm_adv_by_std=c.norm_adv_by_std,
                epsilon=c.adv_epsilon,
            )
        # position
        return adv.position_advantages(
            r,
            g,
            m,
            gamma=c.gamma,
            sigma=c.sigma,
            sharpness=c.sharpness,
            center=c.center,
            norm_adv_by_std=c.norm_adv_by_std,
            epsilon=c.adv_epsilon,
        )

    # ---- loss --------------------------------------------------------------------------------
    def _validate_loss_batch(self, batch: LossBatch) -> Tensor:
        check_same_shape(
            logp=batch.logp,
            old_logp=batch.old_logp,
            advantages=batch.advantages,
            response_mask=batch.response_mask,
            entropy=batch.entropy,
            old_entropy=batch.old_entropy,
            sum_p2=batch.sum_p2,
            sum_p2_logp=batch.sum_p2_logp,
            ref_logp=batch.ref_logp,
        )
        m = as_bool_mask(batch.response_mask)
        if self.needs_entropy and batch.entropy is None:
            raise ValueError(f"method {self.name!r} needs LossBatch.entropy (current-policy entropy)")
        if self.needs_old_entropy and self.config.weighting == "steer" and batch.old_entropy is None:
            raise ValueError(f"method {self.name!r} needs LossBatch.old_entropy")
        if self.needs_sums and (batch.sum_p2 is None or batch.sum_p2_logp is None):
            raise ValueError(f"method {self.name!r} needs LossBatch.sum_p2 and sum_p2_logp")
        if self.needs_ref and batch.ref_logp is None:
            raise ValueError(f"method {self.name!r} needs LossBatch.ref_logp (kl_coef != 0)")
        for name in (
            "logp",
            "old_logp",
            "advantages",
            "entropy",
            "old_entropy",
            "sum_p2",
            "sum_p2_logp",
            "ref_logp",
        ):
            _check_finite(name, getattr(batch, name), m)
        if not math.isfinite(float(batch.lr)):
            raise ValueError(f"lr must be finite, got {batch.lr!r}")
        return m

    def _omega_lr(self, batch: LossBatch) -> float:
        c = self.config
        return float(batch.lr) if getattr(c, "omega_lr", None) is None else float(c.omega_lr)

    def _token_w(self, ratio: Tensor, advantages: Tensor) -> Tensor:
        """Theorem 1's ``w = I_clip * r * A`` with I_clip the full gradient-flow indicator of the loss used.

        ``token_weight_w`` covers Eq. 6 (the eps_low/eps_high clip); with a dual clip ``clip_c`` a
        token with A < 0 and r > c passes no gradient either (its loss is the constant -c A), so
        its w is 0 too (as :func:`steer.core.losses.clipped_surrogate`'s ``clipped_dual``).
        """
        c = self.config
        w = token_weight_w(ratio, advantages, c.eps_low, c.eps_high)
        if c.clip_c is not None:
            dual = (advantages < 0) & (ratio > c.clip_c)
            w = torch.where(dual, torch.zeros((), dtype=w.dtype, device=w.device), w)
        return w

    def _steer_omega(self, batch: LossBatch, ratio: Tensor) -> Tensor:
        c = self.config
        lr = self._omega_lr(batch)
        logp = batch.logp.detach()
        if c.estimator == "reference":
            return omega_reference(batch.advantages, logp, batch.old_logp, batch.old_entropy, lr=lr)
        w = self._token_w(ratio, batch.advantages)
        if c.estimator == "paper":
            return omega_paper(w, logp, batch.entropy, lr)
        return omega_exact(w, logp, batch.entropy, batch.sum_p2, batch.sum_p2_logp, lr)

    def _ratio(self, batch: LossBatch, m: Tensor) -> Tensor:
        """Detached ratio exactly as :func:`steer.core.losses.clipped_surrogate` computes it."""
        dt = torch.promote_types(batch.logp.dtype, torch.float32)
        lr_ = L.log_ratio(batch.logp.detach().to(dt), batch.old_logp.to(dt), m, self.config.log_ratio_clamp)
        return torch.exp(lr_)

    def compute_omega(self, batch: LossBatch) -> Tensor:
        """The STEER method's per-token Omega for this batch (detached, 0 on padding).

        For ``scope`` 'minibatch'/'global': call it on every micro-batch, take
        ``scope_max_abs`` of each (and a MAX all-reduce across ranks), and pass the result as
        ``LossBatch.omega_max``.
        """
        if self.config.weighting != "steer":
            raise ValueError(
                f"method {self.name!r} has no STEER weighting; compute_omega needs a steer method"
            )
        m = self._validate_loss_batch(batch)
        with torch.no_grad():
            omega = self._steer_omega(batch, self._ratio(batch, m))
        return torch.where(m, omega, torch.zeros((), dtype=omega.dtype))

    def normalisers(self, batch: LossBatch) -> Normalisers:
        """The aggregation normalisers of ``batch`` for this method (with its Dr. GRPO constant)."""
        return batch.normalisers(self.config.loss_scale_factor)

    def aggregate(self, token_loss: TokenLoss, batch: LossBatch) -> Tensor:
        """The scalar policy loss of ``token_loss``: the method's ``loss_agg_mode`` with the
        batch's normalisers (:func:`steer.core.aggregation.aggregate_token_loss`)."""
        return aggregate_token_loss(
            token_loss, batch.response_mask, self.config.loss_agg_mode, self.normalisers(batch)
        )

    def scope_stats(self, batch: LossBatch) -> dict[str, Tensor]:
        """Statistics (no grad) that the caller MAX-reduces over every micro-batch of the
        mini-batch, and over ranks, before the loss; pass the result as ``LossBatch.scope_stats``.

        STEER with ``scope`` 'minibatch' / 'global': ``{"omega_max": max|Omega| of this batch}``
        (0-dim tensor). Every other method, and STEER with ``scope='microbatch'``: ``{}``.
        """
        c = self.config
        if c.weighting != "steer" or getattr(c, "scope", "microbatch") == "microbatch":
            return {}
        m = self._validate_loss_batch(batch)
        with torch.no_grad():
            omega = self._steer_omega(batch, self._ratio(batch, m))
            return {"omega_max": scope_max_abs(omega, m)}

    def _omega_max_of(self, batch: LossBatch):
        if batch.scope_stats is not None and "omega_max" in batch.scope_stats:
            return batch.scope_stats["omega_max"]
        return batch.omega_max

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
        omega: Tensor | None = None
        ratio: Tensor | None = None
        if c.policy_loss == "clip_cov":
            tl, _ = L.clip_cov_token_loss(
                batch.logp,
                batch.old_logp,
                batch.advantages,
                m,
                eps_low=c.eps_low,
                eps_high=c.eps_high,
                clip_cov_ratio=c.clip_cov_ratio,
                clip_cov_lb=c.clip_cov_lb,
                clip_cov_ub=c.clip_cov_ub,
                generator=self.generator,
                entropy=batch.entropy,
            )
        elif c.policy_loss == "kl_cov":
            tl, _ = L.kl_cov_token_loss(
                batch.logp,
                batch.old_logp,
                batch.advantages,
                m,
                kl_cov_ratio=c.kl_cov_ratio,
                kl_cov_coef=c.kl_cov_coef,
                log_ratio_clamp=c.log_ratio_clamp,
                entropy=batch.entropy,
            )
        elif c.weighting == "forking":
            tl, _ = L.forking_token_loss(
                batch.logp,
                batch.old_logp,
                batch.advantages,
                m,
                batch.entropy,
                rho=c.rho,
                eps_low=c.eps_low,
                eps_high=c.eps_high,
                clip_c=c.clip_c,
            )
        elif c.weighting == "quadrant":
            tl, _ = L.quadrant_token_loss(
                batch.logp,
                batch.old_logp,
                batch.advantages,
                m,
                target=c.target,
                action=c.action,
                fraction=c.fraction,
                factor=c.factor,
                by=c.by,
                entropy=batch.entropy,
                high_prob=c.high_prob,
                low_prob=c.low_prob,
                generator=self.generator,
                eps_low=c.eps_low,
                eps_high=c.eps_high,
                clip_c=c.clip_c,
            )
        else:
            s = L.clipped_surrogate(
                batch.logp,
                batch.old_logp,
                batch.advantages,
                m,
                eps_low=c.eps_low,
                eps_high=c.eps_high,
                clip_c=c.clip_c,
                log_ratio_clamp=c.log_ratio_clamp,
                check_finite=False,  # validated above
            )
            ratio = s.ratio
            weight = None
            loss_mat = s.loss_mat
            extra: dict[str, float] = {}
            if c.weighting == "steer":
                omega_max = self._omega_max_of(batch)
                omega = self._steer_omega(batch, s.ratio)
                weight = steer_weights(
                    omega,
                    m,
                    lambda_min=c.lambda_min,
                    mapping=c.mapping,
                    lambda_max=c.lambda_max,
                    quantile=c.quantile,
                    omega_max=omega_max,
                    max_floor=c.max_floor,
                )
                loss_mat = loss_mat * weight.to(loss_mat.dtype)
                with torch.no_grad():
                    a = torch.where(m, omega.abs(), torch.zeros((), dtype=omega.dtype))
                    used_max = a.max() if omega_max is None else torch.as_tensor(omega_max)
                    extra["steer/omega_max"] = float(max(float(used_max), c.max_floor))
                    extra["steer/omega_abs_mean"] = float(a.sum()) / max(int(m.sum()), 1)
            metrics = L.standard_metrics(m, surrogate=s, entropy=batch.entropy, weight=weight)
            metrics.update(extra)
            tl = TokenLoss(loss_mat, None if weight is None else weight.detach(), metrics)

        # quadrant diagnostics (sign(A), sign(delta))
        ent_for_metrics = batch.entropy if batch.entropy is not None else batch.old_entropy
        if c.quadrant_metrics and ent_for_metrics is not None:
            with torch.no_grad():
                q = L.assign_quadrants(
                    batch.advantages, m, logp=batch.logp, entropy=ent_for_metrics, by="delta"
                )
                if omega is None:  # methods without STEER: Eq. 7 Omega with w = I_clip r A
                    if ratio is None:
                        ratio = self._ratio(batch, m)
                    w = self._token_w(ratio, batch.advantages)
                    omega = omega_paper(w, batch.logp, ent_for_metrics, float(batch.lr))
                tl.metrics.update(L.quadrant_metrics(q, omega))
        tl.metrics["old_nll_mean"] = L.AdaptiveEntropyController.estimate(batch.old_logp, m)
        return tl

    def compute_loss(self, batch: LossBatch) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss (to minimise) and metrics for one (micro-)batch.

        ``loss = aggregate(token_loss) - entropy_coef * agg(H) + kl_coef * agg(kl)``. Metrics: the
        token loss's (the standard keys ``clipfrac_low``, ``clipfrac_high``, ``clipfrac_dual``,
        ``ratio_mean``, ``entropy_mean`` when entropy is given, ``weight_mean``, ``weight_min``,
        ``tokens``, ``quadrant/{I..IV}/count`` and ``quadrant/{I..IV}/omega_sum`` when an entropy
        is given, ``old_nll_mean``, method-specific keys), plus ``pg_loss``, ``loss`` and the
        regularisers' keys (docs/methods.md). Non-finite inputs on valid tokens raise
        :class:`steer.core.errors.NonFiniteError`; missing required statistics or mismatched
        shapes raise ValueError.
        """
        c = self.config
        m = self._validate_loss_batch(batch)
        tl = self._token_loss(batch, m)
        pg = self.aggregate(tl, batch)
        loss = pg
        extra: dict[str, float] = {"pg_loss": float(pg.detach())}
        # regularisers
        coef = self.controller.realised_coef if self.controller is not None else c.entropy_coef
        if self.controller is not None or c.entropy_coef != 0:
            ent_term = L.entropy_bonus_loss(
                batch.entropy,
                m,
                coef,
                c.loss_agg_mode,
                global_num_tokens=batch.global_num_tokens,
                global_num_seqs=batch.global_num_seqs,
                loss_scale_factor=c.loss_scale_factor,
            )
            loss = loss + ent_term
            extra["entropy_coef"] = float(coef)
            extra["entropy_loss"] = float(ent_term.detach())
        if c.kl_coef != 0:
            kl_term, kl_mean = L.kl_penalty_loss(
                batch.logp,
                batch.ref_logp,
                m,
                c.kl_coef,
                c.kl_type,
                c.loss_agg_mode,
                global_num_tokens=batch.global_num_tokens,
                global_num_seqs=batch.global_num_seqs,
                loss_scale_factor=c.loss_scale_factor,
            )
            loss = loss + kl_term
            extra["kl_loss"] = float(kl_term.detach())
            extra["kl_mean"] = kl_mean
        metrics = tl.metrics
        metrics.update(extra)
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    # ---- controllers and state ---------------------------------------------------------------
    def on_step_end(self, step_metrics: dict) -> dict:
        """Call once per training step after the update with the step's (averaged) metrics.

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
