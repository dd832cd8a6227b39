"""Trainer configuration: a structured schema (dataclasses) loaded from YAML with dotted overrides.

``load_config(path, overrides)`` merges, in order, the schema defaults, the YAML file and the
``key=value`` overrides (omegaconf dot-list syntax), then checks every value. An unknown key, a
value of the wrong type, or a value out of range raises :class:`ConfigError` naming the key, before
any model, data or file is touched.

The ``method`` section is a free-form mapping: ``method.name`` picks a method from
``steer.core.registry`` and every other ``method.<param>`` is passed to ``build_method`` as an
override (an unknown parameter is reported by the registry, also before any work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from steer.train.shipped import CONFIG_DIR, shipped_configs

#: ``task.name`` values (``steer.train.tasks.build_task``).
TASK_NAMES = ("countdown", "math", "reasoning_gym")


class ConfigError(ValueError):
    """An invalid configuration key or value (the message names it)."""


@dataclass
class ModelConfig:
    """Which policy to train.

    ``source="testbed"``: the warm-started tiny policy of ``steer.testbed`` (built and cached
    by ``warm_start`` when missing). ``source="hf"``: any causal LM loadable by
    ``transformers.AutoModelForCausalLM.from_pretrained(name_or_path)`` (local path or hub name;
    nothing is downloaded at run time unless the files are already in the HF cache).
    """

    source: str = "testbed"
    name_or_path: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False


@dataclass
class WarmStartConfig:
    """Supervised warm-start of the testbed policy (``steer.testbed.warm_start``), cached on disk.
    ``overrides``: fields of ``steer.testbed.WarmStartConfig``; ``cache_dir`` None = the testbed's
    default (``$STEER_CACHE_DIR/warmstart`` or ``~/.cache/steer/warmstart``)."""

    cache_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskConfig:
    """Training and held-out problems and the reward.

    ``name="countdown"`` uses the testbed's countdown task and verifier; ``name="math"`` reads
    parquet files through ``steer.data`` and scores with ``steer.rewards``;
    ``name="reasoning_gym"`` draws problems of any reasoning-gym dataset
    (``options.dataset``, required; ``options.config``: its generator settings) and scores them
    by strict exact match (``steer.testbed.strict_match``, no partial credit), or with
    ``options.scorer`` (a ``steer.rewards`` scorer) on the answer extracted from a boxed /
    ``Answer:`` line, the question wrapped in ``options.template`` (a ``steer.data`` template).
    ``reward_correct`` / ``reward_wrong`` follow the paper (R = 1 or -1, section 2.1).
    """

    name: str = "countdown"
    train_path: str | None = None
    heldout_path: str | None = None
    train_size: int = 4096
    heldout_size: int = 64
    train_seed: int | None = None
    heldout_seed: int | None = None
    chat_template: bool = True
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutConfig:
    """Sampling with HF ``generate`` (section 5.1: temperature 1.0, top-p 1.0 for training)."""

    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 48
    max_prompt_tokens: int = 128
    generation_batch_size: int = 0


@dataclass
class OptimConfig:
    """AdamW with global-norm gradient clipping and an optional linear warm-up."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 0


@dataclass
class TrainerConfig:
    """The GRPO loop (section 2.1, appendix E.2).

    Per step: ``prompts_per_step`` prompts x ``rollout.n`` rollouts, split into
    ``num_mini_batches`` mini-batches, each one optimiser step, for ``ppo_epochs`` passes.
    ``micro_batch_size`` (responses; 0 = whole mini-batch) only bounds memory: gradients are
    accumulated, the loss is normalised over the whole mini-batch, and a method's mini-batch
    statistics (``Method.scope_stats``, e.g. STEER's max|Omega| with its default
    ``scope=minibatch``) are MAX-reduced over every micro-batch before the loss, so the update
    does not depend on it (up to float rounding).
    ``nonfinite``: ``skip`` (drop that optimiser step and log it) or ``stop`` (raise).
    ``cause_probe``: run the cause pass (``steer.train.cause``: one backward of the mini-batch's
    entropy and one forward-mode pass per mini-batch, plus a forward after the step) for any
    method and log the predicted against the realised entropy change of every optimiser step
    (``cause/*``); methods that require it (``steer_causal``, ``entropy_band``) always run it.
    """

    steps: int = 60
    prompts_per_step: int = 16
    num_mini_batches: int = 4
    ppo_epochs: int = 1
    micro_batch_size: int = 0
    shuffle_mini_batches: bool = False
    seed: int = 0
    nonfinite: str = "skip"
    max_nonfinite_skips: int = 20
    num_threads: int = 0
    stop_after: int = 0
    cause_probe: bool = False


@dataclass
class EvalConfig:
    """Held-out evaluation every ``every`` steps (0 = only at the end); section 5.1 validates with
    top-p 0.7 and temperature 1.0. ``max_new_tokens`` 0 = ``rollout.max_new_tokens``;
    ``batch_size`` counts sequences per ``generate`` call. ``entropy`` also reports the policy
    entropy on the held-out samples (``heldout/entropy``); it keeps the raw logits of a
    ``generate`` call (``batch_size x max_new_tokens x vocabulary`` floats), so switch it off for
    large vocabularies."""

    every: int = 20
    at_start: bool = True
    at_end: bool = True
    n_samples: int = 16
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    temperature: float = 1.0
    top_p: float = 0.7
    max_new_tokens: int = 0
    batch_size: int = 256
    entropy: bool = True


@dataclass
class CheckpointConfig:
    """Atomic checkpoints every ``every`` steps (0 = only at the end), the ``keep_last`` newest kept,
    plus ``best/`` by ``best_metric`` (a held-out metric key) in ``best_mode``. ``hf_weights``: each
    checkpoint also holds the model and tokenizer in Hugging Face form (``config.json``,
    ``model.safetensors``, tokenizer files), so ``from_pretrained``, ``steer eval``, verl and TRL load
    the folder as it is; this stores the weights a second time (``model.pt`` is what a resume reads).
    Off, ``steer export`` writes that folder on demand."""

    every: int = 20
    keep_last: int = 2
    best_metric: str = "heldout/acc"
    best_mode: str = "max"
    save_best: bool = True
    hf_weights: bool = True


@dataclass
class LoggingConfig:
    """Where the run writes: ``out_dir/metrics.jsonl``, ``out_dir/tb`` and ``out_dir/checkpoints``."""

    out_dir: str = "runs/train"
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Config:
    """The whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "grpo"})


def _fail(key: str, msg: str) -> None:
    raise ConfigError(f"invalid config value for '{key}': {msg}")


def _check_positive(key: str, value: float, *, strict: bool = True) -> None:
    if (
        not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (value <= 0 if strict else value < 0)
    ):
        _fail(key, f"{value!r} must be {'> 0' if strict else '>= 0'}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(key, f"{value!r} is not one of {list(choices)}")


def _check_model(cfg: Config) -> None:
    """The model section: source, a named model's package, dtype."""
    _check_choice("model.source", cfg.model.source, ("testbed", "hf"))
    if cfg.model.source == "hf" and not cfg.model.name_or_path:
        _fail("model.name_or_path", "required when model.source=hf")
    if cfg.model.name_or_path:
        from steer.models import ModelNotAvailable, check_available

        try:
            check_available(cfg.model.name_or_path)  # a named model whose package is missing
        except ModelNotAvailable as exc:
            _fail("model.name_or_path", str(exc))
    _check_choice("model.dtype", cfg.model.dtype, ("float32", "bfloat16", "float16"))


def _check_task(cfg: Config) -> None:
    """The task section: the task's name and its data, sizes, rewards."""
    _check_choice("task.name", cfg.task.name, TASK_NAMES)
    if cfg.task.name == "math" and not cfg.task.train_path:
        _fail("task.train_path", "required when task.name=math")
    if cfg.task.name == "reasoning_gym" and not isinstance(cfg.task.options.get("dataset"), str):
        _fail(
            "task.options.dataset",
            "required when task.name=reasoning_gym (a reasoning-gym dataset name, e.g. chain_sum)",
        )
    if cfg.task.name == "reasoning_gym":
        from steer.train.tasks import ReasoningGymTaskAdapter

        try:
            ReasoningGymTaskAdapter(cfg.task)  # dataset name, options and generator config
        except ValueError as exc:
            _fail("task.options", str(exc))
    _check_positive("task.train_size", cfg.task.train_size)
    _check_positive("task.heldout_size", cfg.task.heldout_size)
    if cfg.task.reward_correct <= cfg.task.reward_wrong:
        _fail(
            "task.reward_correct",
            f"{cfg.task.reward_correct} must exceed task.reward_wrong={cfg.task.reward_wrong}",
        )


def _check_rollout(cfg: Config) -> None:
    """The rollout section: group size and sampling."""
    if cfg.rollout.n < 2:
        _fail(
            "rollout.n",
            f"{cfg.rollout.n} must be >= 2 (group-relative advantages need 2 rollouts per prompt)",
        )
    _check_positive("rollout.temperature", cfg.rollout.temperature)
    if not 0.0 < cfg.rollout.top_p <= 1.0:
        _fail("rollout.top_p", f"{cfg.rollout.top_p} must be in (0, 1]")
    _check_positive("rollout.top_k", cfg.rollout.top_k, strict=False)
    _check_positive("rollout.max_new_tokens", cfg.rollout.max_new_tokens)
    _check_positive("rollout.max_prompt_tokens", cfg.rollout.max_prompt_tokens)
    _check_positive("rollout.generation_batch_size", cfg.rollout.generation_batch_size, strict=False)


def _check_optim(cfg: Config) -> None:
    """The optimiser section."""
    _check_positive("optim.lr", cfg.optim.lr)
    _check_positive("optim.weight_decay", cfg.optim.weight_decay, strict=False)
    for key in ("beta1", "beta2"):
        v = getattr(cfg.optim, key)
        if not 0.0 <= v < 1.0:
            _fail(f"optim.{key}", f"{v} must be in [0, 1)")
    _check_positive("optim.eps", cfg.optim.eps)
    _check_positive("optim.grad_clip", cfg.optim.grad_clip)
    _check_positive("optim.warmup_steps", cfg.optim.warmup_steps, strict=False)


def _check_trainer(cfg: Config) -> None:
    """The trainer section: budget, batch shapes, the non-finite policy."""
    t = cfg.trainer
    _check_positive("trainer.steps", t.steps)
    _check_positive("trainer.prompts_per_step", t.prompts_per_step)
    _check_positive("trainer.num_mini_batches", t.num_mini_batches)
    _check_positive("trainer.ppo_epochs", t.ppo_epochs)
    _check_positive("trainer.micro_batch_size", t.micro_batch_size, strict=False)
    _check_positive("trainer.num_threads", t.num_threads, strict=False)
    _check_positive("trainer.stop_after", t.stop_after, strict=False)
    _check_positive("trainer.max_nonfinite_skips", t.max_nonfinite_skips, strict=False)
    total = t.prompts_per_step * cfg.rollout.n
    if total % t.num_mini_batches != 0:
        _fail(
            "trainer.num_mini_batches",
            f"{t.num_mini_batches} must divide prompts_per_step x rollout.n = {total}",
        )
    _check_choice("trainer.nonfinite", t.nonfinite, ("skip", "stop"))


def _check_eval(cfg: Config) -> None:
    """The held-out evaluation section."""
    e = cfg.eval
    _check_positive("eval.every", e.every, strict=False)
    _check_positive("eval.n_samples", e.n_samples)
    _check_positive("eval.temperature", e.temperature)
    if not 0.0 < e.top_p <= 1.0:
        _fail("eval.top_p", f"{e.top_p} must be in (0, 1]")
    _check_positive("eval.max_new_tokens", e.max_new_tokens, strict=False)
    _check_positive("eval.batch_size", e.batch_size)
    if not e.ks:
        _fail("eval.ks", "must list at least one k")
    for k in e.ks:
        if k < 1 or k > e.n_samples:
            _fail("eval.ks", f"k={k} must be in [1, eval.n_samples={e.n_samples}]")


def _check_checkpoint(cfg: Config) -> None:
    """The checkpoint section."""
    c = cfg.checkpoint
    _check_positive("checkpoint.every", c.every, strict=False)
    _check_positive("checkpoint.keep_last", c.keep_last)
    _check_choice("checkpoint.best_mode", c.best_mode, ("max", "min"))


def validate(cfg: Config, *, check_method: bool = True) -> Config:
    """Range and consistency checks on a typed config; raises :class:`ConfigError` naming the key."""
    _check_model(cfg)
    _check_task(cfg)
    _check_rollout(cfg)
    _check_optim(cfg)
    _check_trainer(cfg)
    _check_eval(cfg)
    _check_checkpoint(cfg)
    if not isinstance(cfg.method, dict) or not isinstance(cfg.method.get("name"), str):
        _fail("method.name", "a method name is required (method.name=grpo, steer, ...)")
    if check_method:
        build_method_from_config(cfg)
    return cfg


def build_method_from_config(cfg: Config):
    """``steer.core.registry.build_method(method.name, **other method.* keys)``; a registry
    ValueError (unknown method or parameter, bad value) becomes a ConfigError naming ``method``."""
    from steer.core.registry import build_method

    params = {k: v for k, v in cfg.method.items() if k != "name"}
    try:
        return build_method(cfg.method["name"], **params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid config value for 'method' ({cfg.method}): {exc}") from exc


def _structured() -> DictConfig:
    return OmegaConf.structured(Config)


def resolve_config_path(path: str | Path) -> Path:
    """A path as given, or the name of a shipped config (``testbed``, ``extreme.yaml``, ...)."""
    p = Path(path)
    if p.exists():
        return p
    for cand in (CONFIG_DIR / p.name, CONFIG_DIR / f"{p.name}.yaml"):
        if cand.exists():
            return cand
    raise ConfigError(
        f"config file not found: {path} (shipped configs: {shipped_configs()})"
    )


def _load_yaml(path: Path) -> DictConfig:
    """A config file as a mapping; ConfigError (one line: file, line, problem) on a YAML syntax
    error, an unreadable file or a top level that is not a mapping."""
    import yaml

    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path}: YAML syntax error at{where}: {what}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    if not isinstance(loaded, DictConfig):
        raise ConfigError(
            f"config file {path}: the top level is a {type(loaded).__name__.replace('Config', '').lower()}, "
            "not a mapping of sections (model:, task:, trainer:, ...)"
        )
    return loaded


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    check_method: bool = True,
) -> Config:
    """Schema defaults <- YAML file <- dotted ``key=value`` overrides, typed and validated.

    An override that changes ``task.name`` drops the file's ``task.options`` (they belong to the
    file's task); only ``task.options.*`` given as overrides apply to the new task.

    Raises :class:`ConfigError` naming the offending key on an unknown key, a wrong type or a
    value out of range.
    """
    merged = _structured()
    try:
        if path is not None:
            merged = OmegaConf.merge(merged, _load_yaml(resolve_config_path(path)))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        if overrides:
            over = OmegaConf.from_dotlist(list(overrides))
            file_task = merged.task.name
            merged = OmegaConf.merge(merged, over)
            if merged.task.name != file_task:
                # the file's task.options belong to the file's task: a task picked on the command
                # line starts from the options given there only
                given = OmegaConf.select(over, "task.options", default=None)
                merged.task.options = given if given is not None else {}
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        first = str(exc).splitlines()[0]
        raise ConfigError(f"invalid config key or value '{key}': {first}") from exc
    assert isinstance(cfg, Config)
    return validate(cfg, check_method=check_method)


def config_from_dict(data: dict, *, check_method: bool = True) -> Config:
    """A typed, validated config from a plain nested dict (e.g. one stored in a checkpoint)."""
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(_structured(), OmegaConf.create(data)))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"invalid config key or value '{key}': {str(exc).splitlines()[0]}") from exc
    return validate(cfg, check_method=check_method)


def to_dict(cfg: Config) -> dict:
    """A plain nested dict (JSON/YAML-serialisable)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def describe_schema() -> list[tuple[str, Any, str]]:
    """``(dotted key, default, type)`` for every key of the schema (for docs/training.md)."""
    import dataclasses

    out: list[tuple[str, Any, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                out.append((f"{prefix}{f.name}", value, typ))

    walk(Config(), "")
    return out
