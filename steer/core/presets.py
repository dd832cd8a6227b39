"""The method table: every registered method is one row.

A row names its parts (an advantage estimator, a policy loss, an optional token weighting from
:mod:`steer.core.parts`), the published defaults that differ from the parts' own, a one-line
``citation`` and, where a default is unverified, ``caveats`` (spec methods.md §16). Presets that
only change defaults (dr_grpo, psr, nsr, steer_linear, ...) are rows like any other.
``adaptive_entropy`` adds Skywork's entropy controller (``controller="adaptive_entropy"``).

Adding a method touches two places: its function, registered next to its math with one
decorator (``register_advantage`` / ``register_policy_loss`` / ``register_weighting``), and its
row here (or :func:`steer.core.registry.define_method` from user code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    """One row of the method table."""

    name: str
    advantage: str = "grpo"
    policy_loss: str = "vanilla"
    weighting: str | None = None
    defaults: dict = field(default_factory=dict)
    citation: str = ""
    caveats: str = ""
    controller: str | None = None


_STEER_RECIPE = {"eps_low": 0.2, "eps_high": 0.28, "clip_c": 10.0}
_PSR_CITATION = (
    "PSR/NSR/W-REINFORCE (Zhu et al. 2025, arXiv 2506.01347): compute_psr_nsr_outcome_advantage; spec §5"
)
_PSR_CAVEAT = (
    "the released code optimises with PPO-clip 0.2 and leaves verl's entropy_coeff 0.001 active; "
    "set entropy_coef=0.001 to match"
)

PRESETS: tuple[Preset, ...] = (
    Preset(
        "grpo",
        citation="GRPO (Shao et al. 2024, arXiv 2402.03300): paper Eq. 1-2; verl compute_grpo_outcome_advantage + compute_policy_loss_vanilla",
    ),
    Preset(
        "dr_grpo",
        defaults={"norm_adv_by_std": False, "loss_agg_mode": "seq-mean-token-sum-norm"},
        citation="Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): no std normalisation, seq-mean-token-sum-norm (verl's agg_loss convention); spec §10",
        caveats="the constant is loss_scale_factor, else LossBatch.max_response_length (the configured maximum response length, the paper's choice); the padded length T only when neither is given",
    ),
    Preset(
        "clip_higher",
        defaults={"eps_high": 0.28},
        citation="DAPO clip-higher (Yu et al. 2025, arXiv 2503.14476): eps_low 0.2, eps_high 0.28; spec §10",
    ),
    Preset(
        "dual_clip",
        defaults={"clip_c": 3.0},
        citation="Dual clip (Ye et al. 2019, arXiv 1912.09729): cap -c*A for A < 0; verl clip_ratio_c; spec §10",
        caveats="c = 3 is verl's default; the Entropy-Mechanism, 80/20 and STEER scripts use 10",
    ),
    Preset(
        "entropy_bonus",
        defaults={"entropy_coef": 0.001},
        citation="Entropy regularisation -c*agg(H) (paper Table 3; spec §11); c = 0.001 (verl 0.2 / Skywork config default)",
        caveats="the coefficient of the paper's 'GRPO w/ Entro. Loss' baseline is not stated",
    ),
    Preset(
        "adaptive_entropy",
        controller="adaptive_entropy",
        citation="Skywork-OR1 adaptive entropy control (He et al. 2025, arXiv 2505.22312; EntController); spec §11",
        caveats=(
            "defaults from or1_scripts (config-file fallbacks differ: delta 1e-3, c_max 0.5, target 0); "
            "the controller updates once per step from metrics['old_nll_mean'] via on_step_end"
        ),
    ),
    Preset(
        "kl_penalty",
        defaults={"kl_coef": 0.001, "kl_type": "k3"},
        citation="KL penalty in the loss (verl use_kl_loss: kl_loss_coef 0.001, low_var_kl = k3); spec §12",
        caveats="DeepSeekMath's GRPO used k3 with beta = 0.04 [recalled]",
    ),
    Preset(
        "forking_tokens",
        weighting="forking",
        defaults={"eps_high": 0.28, "clip_c": 10.0},
        citation="Forking tokens / 80-20 rule (Wang et al. 2025, arXiv 2506.01939): top-20% entropy tokens only; spec §7",
    ),
    Preset(
        "psr",
        advantage="psr_nsr",
        defaults={"mode": "positive"},
        citation=_PSR_CITATION,
        caveats=_PSR_CAVEAT,
    ),
    Preset(
        "nsr",
        advantage="psr_nsr",
        defaults={"mode": "negative"},
        citation=_PSR_CITATION,
        caveats=_PSR_CAVEAT,
    ),
    Preset(
        "w_reinforce",
        advantage="psr_nsr",
        defaults={"mode": "weighted"},
        citation=_PSR_CITATION,
        caveats=_PSR_CAVEAT + "; lambda = 0.1 was chosen empirically (not ablated)",
    ),
    Preset(
        "entropy_adv",
        advantage="entropy_adv",
        citation="Entropy advantage (Cheng et al. 2025, arXiv 2506.14758): A + min(alpha*H, |A|/kappa); spec §2",
        caveats="alpha per base algorithm is unverified (0.4 for GRPO and 0.1 for PPO come from re-implementations); no official code",
    ),
    Preset(
        "clip_cov",
        policy_loss="clip_cov",
        defaults={"eps_low": 1.0, "eps_high": 1.0},
        citation="Clip-Cov (Cui et al. 2025, arXiv 2505.22617): compute_policy_loss_clip_cov; spec §1.2",
        caveats="statistics per micro-batch as in the reference; no dual clip in this loss",
    ),
    Preset(
        "kl_cov",
        policy_loss="kl_cov",
        citation="KL-Cov (Cui et al. 2025, arXiv 2505.22617): compute_policy_loss_kl_cov; spec §1.3",
        caveats="k = 2e-3 is the Qwen2.5-7B setting (2e-4 for 32B); no PPO clip (eps_low/eps_high/clip_c unused)",
    ),
    Preset(
        "gtpo",
        advantage="gtpo",
        defaults={"eps_high": 0.28},
        citation="GTPO (Tan & Pan 2025, arXiv 2508.04349): token-level entropy-shaped rewards; spec §3",
        caveats=(
            "alpha1/alpha2 have no verified default (required; the paper states alpha1 + alpha2 = 1); "
            "joint z-score over the group's tokens is our choice; no official code"
        ),
    ),
    Preset(
        "grpo_s",
        advantage="grpo_s",
        defaults={"eps_high": 0.28},
        citation="GRPO-S (Tan & Pan 2025, arXiv 2508.04349): sequence-level entropy-shaped rewards; spec §3",
        caveats="beta1/beta2 have no verified default (required); no official code",
    ),
    Preset(
        "edge_grpo",
        advantage="edge_grpo",
        defaults={"adv_epsilon": 1e-4},
        citation="EDGE-GRPO EDA (Zhang et al. 2025, arXiv 2507.21848): A / (P_i / mean P); grpo_aha_trainer.py; spec §4",
        caveats=(
            "P over response tokens and detached (the released code averages over padded length and keeps the graph); "
            "GEC is a rollout-time intervention, not in the core"
        ),
    ),
    Preset(
        "unlikeliness",
        advantage="unlikeliness",
        citation="Unlikeliness reward (He, Fried, Welleck 2025, arXiv 2506.02355): R*(1 - beta*rank/G); spec §6",
        caveats=(
            "the paper's best recipe also uses kl_coef 0.1 (k3) and 2 PPO epochs; G = 32 there; "
            "rewards are binarised to 1[R > success_threshold] (the reference code's 0/1 rewards)"
        ),
    ),
    Preset(
        "opo",
        advantage="opo",
        citation="OPO (Hao et al. 2025, arXiv 2505.23585): length-weighted optimal baseline, exact on-policy; spec §9",
        caveats="exact on-policy training (one step per rollout batch) is a trainer setting",
    ),
    Preset(
        "ppl_adv",
        advantage="ppl",
        citation="PPL-based shaping (Deng et al. 2025, arXiv 2508.02260): A*(1 - alpha*z(log PPL)); spec §8",
        caveats="form and alpha unverified (no released code); alpha is required",
    ),
    Preset(
        "position_adv",
        advantage="position",
        citation="Position-based shaping (Deng et al. 2025, arXiv 2508.02260): A + gamma*sign(A)*sigma(t/|o|); spec §8",
        caveats="form, gamma and sigma unverified (no released code); gamma and sigma are required",
    ),
    Preset(
        "quadrant",
        weighting="quadrant",
        citation="Quadrant interventions (STEER paper section 3.2.1, Figure 6, appendix D.2): mask or up-weight 10% of one quadrant",
        caveats="appendix D.2 selects by probability > 0.8 / < 0.2 (current policy here); by='delta' uses sign(delta) of Eq. 8",
    ),
    Preset(
        "steer",
        weighting="steer",
        defaults={**_STEER_RECIPE, "scope": "minibatch"},
        citation="STEER (Hao et al., arXiv 2510.10150): lambda = exp(-k|Omega|), k = -ln(lambda_min)/max|Omega| over the mini-batch (Eq. 10)",
        caveats=(
            "lambda_min 0.7 is the paper's ablation setting (released code: 0.8); the printed Omega (Eq. 7) "
            "differs from the released code's form (spec §13.2-13.3)"
        ),
    ),
    Preset(
        "steer_reference",
        weighting="steer",
        defaults={
            **_STEER_RECIPE,
            "estimator": "reference",
            "lambda_min": 0.8,
            "max_floor": 0.02,
            "omega_lr": 1.0,
            "scope": "microbatch",
        },
        citation="STEER released configuration (zz-haooo/STEER run_exp.sh, compute_token_weights): reference Omega, lambda_min 0.8, max floor 0.02, per-micro-batch max",
        caveats="Omega computed without lr (omega_lr = 1) so that the 0.02 floor acts as in the released code",
    ),
    Preset(
        "steer_linear",
        weighting="steer",
        defaults={**_STEER_RECIPE, "scope": "minibatch", "mapping": "linear"},
        citation="STEER linear mapping (paper section 5 ablation): lambda_min 0.7, lambda_max 1.2",
    ),
    Preset(
        "steer_binary",
        weighting="steer",
        defaults={**_STEER_RECIPE, "scope": "microbatch", "mapping": "binary"},
        citation="STEER binary mapping (paper section 5 ablation): top 20% |Omega| get lambda_min 0.7",
        caveats="the 0.8-quantile is taken per micro-batch: a quantile cannot be combined over micro-batches and ranks by a MAX reduction",
    ),
    Preset(
        "steer_directional",
        weighting="steer_directional",
        defaults={**_STEER_RECIPE},
        citation="steer_directional (this project's own variant, not from a paper): STEER's exp weights on the entropy-decreasing tokens only (Omega < 0), lambda_min at the most negative over the mini-batch",
        caveats="untested in training at scale; mapping='quantile' (rho share of the negative tokens) needs scope='microbatch'",
    ),
    Preset(
        "steer_causal",
        weighting="steer_causal",
        defaults={**_STEER_RECIPE},
        citation="steer_causal (this project's own method, not from a paper): steer_directional's weights on each token's cause c_t of the mini-batch's entropy change (one backward + one forward-mode pass per mini-batch) instead of Omega",
        caveats="single-process trainer only (needs the model for the JVP); Adam's first step uses an identity preconditioner",
    ),
    Preset(
        "entropy_band",
        weighting="entropy_band",
        citation="entropy_band (this project's own method, not from a paper): closed-loop; weights 1 (GRPO) while the predicted entropy change of the optimiser step lies in [-b H, +b H], else the tokens pushing it out are damped with the weakest strength that reaches the band",
        caveats="single-process trainer only; abstains (weights 1) on Adam's first step, whose update is not linear in the gradient; the prediction ignores gradient clipping",
    ),
)
