"""Supervised warm-start of the tiny policy on uniformly drawn countdown solutions.

Each training example is a train-split problem with one of its canonical solutions drawn
uniformly (:attr:`steer.testbed.countdown.Problem.solutions`), so the policy learns to spread its
probability over several correct paths instead of one. The loss is the mean cross-entropy over
response tokens only (the assistant's answer and its closing ``<eos>``); AdamW with linear warm-up
and cosine decay, gradient clipping.

The result is cached on disk under ``cache_dir/warmstart-<hash>``, where the hash covers the whole
:class:`WarmStartConfig` (model preset and overrides, task config, steps, batch, lr, seed, ...) and
a code version. It is written atomically (into a temporary directory, then renamed) with a
``MANIFEST.json`` of file sizes and SHA-256 sums written last; a directory whose manifest is
missing or does not match is treated as corrupt and rebuilt. A second call with the same config
returns the path at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .countdown import CountdownConfig, CountdownTask, Problem
from .model import build_model, count_parameters, save_policy
from .tokenizer import build_tokenizer

__all__ = [
    "WARMSTART_VERSION",
    "WarmStartConfig",
    "cache_key",
    "default_cache_dir",
    "is_valid_cache",
    "train_warm_start",
    "warm_start",
]

# bump when the training code changes in a way that changes the weights
WARMSTART_VERSION = 2
MANIFEST = "MANIFEST.json"
META = "warmstart.json"


@dataclass
class WarmStartConfig:
    """Everything that determines the warm-started weights (all of it enters the cache key)."""

    task: CountdownConfig = field(default_factory=CountdownConfig)
    preset: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    train_problems: int = 300
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2
    #: the supervised data: ``"countdown"`` (``task``), or a reasoning-gym dataset name (e.g.
    #: ``chain_sum``) whose gold answers are the targets (``source_config``: its generator
    #: settings; default the testbed preset), for RL on that dataset from a policy that can
    #: answer some of its problems
    source: str = "countdown"
    source_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.task, dict):
            self.task = CountdownConfig(**self.task)
        self.betas = tuple(self.betas)
        self.validate()

    def validate(self) -> None:
        self.task.validate()
        for name in ("train_problems", "steps", "batch_size", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"WarmStartConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"WarmStartConfig.lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"WarmStartConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"WarmStartConfig.warmup_steps must be >= 0, got {self.warmup_steps}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        if self.source == "countdown" and not self.source_config:
            del d["source"], d["source_config"]  # the countdown keys (and caches) of earlier versions
        return d


def cache_key(config: WarmStartConfig) -> str:
    """SHA-256 (hex, 16 chars) of the full config plus the code version."""
    payload = json.dumps({"version": WARMSTART_VERSION, **config.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$STEER_CACHE_DIR/warmstart`` or ``~/.cache/steer/warmstart``."""
    root = os.environ.get("STEER_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "steer"
    return base / "warmstart"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(directory: Path) -> None:
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = str(p.relative_to(directory))
            files[rel] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": files}, indent=1, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)


def is_valid_cache(directory: str | Path, key: str | None = None) -> bool:
    """True if ``directory`` holds a complete warm-start: manifest present, every listed file with
    its size and SHA-256, the metadata's key equal to ``key`` (if given), model and tokenizer
    files present."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
        for rel, info in files.items():
            p = directory / rel
            if not p.is_file() or p.stat().st_size != info["size"] or _sha256(p) != info["sha256"]:
                return False
        for needed in (META, "config.json", "tokenizer.json"):
            if needed not in files:
                return False
        if not any(name.endswith(".safetensors") or name.endswith(".bin") for name in files):
            return False
        if key is not None and json.loads((directory / META).read_text()).get("key") != key:
            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _lr_at(step: int, config: WarmStartConfig) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _encode(tokenizer, problems: list[Problem]) -> tuple[list[list[int]], list[list[list[int]]]]:
    prompts, responses = [], []
    eos = tokenizer.eos_token_id
    for p in problems:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": p.prompt}], add_generation_prompt=True, tokenize=False
        )
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        responses.append([tokenizer(s, add_special_tokens=False)["input_ids"] + [eos] for s in p.solutions])
    return prompts, responses


def train_warm_start(config: WarmStartConfig, progress: bool = True):
    """Train a fresh policy per ``config``; returns ``(model, tokenizer, info)`` (no caching)."""
    from tqdm.auto import tqdm

    config.validate()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        tokenizer = build_tokenizer()
        model = build_model(tokenizer, config.preset, seed=config.seed, **config.model_overrides)
        model.train()
        if config.source == "countdown":
            problems = CountdownTask(config.task).problems("train", config.train_problems)
        else:
            from .rg_tasks import ReasoningGymTask

            rg = ReasoningGymTask(config.source, config=dict(config.source_config) or None)
            problems = rg.problems("train", config.train_problems)
        prompts, responses = _encode(tokenizer, problems)
        pad = tokenizer.pad_token_id
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=config.betas,
        )
        rng = random.Random(f"warmstart:{config.seed}")
        losses: list[float] = []
        bar = tqdm(range(config.steps), desc="warm-start", disable=not progress, dynamic_ncols=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            for step in bar:
                idx = [rng.randrange(len(problems)) for _ in range(config.batch_size)]
                seqs, labels = [], []
                for i in idx:
                    resp = rng.choice(responses[i])  # uniform over canonical solutions
                    seqs.append(prompts[i] + resp)
                    labels.append([-100] * len(prompts[i]) + resp)
                width = max(len(s) for s in seqs)
                input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                attn = torch.zeros((len(seqs), width), dtype=torch.long)
                lab = torch.full((len(seqs), width), -100, dtype=torch.long)
                for r, (s, lbl) in enumerate(zip(seqs, labels)):
                    input_ids[r, : len(s)] = torch.tensor(s)
                    attn[r, : len(s)] = 1
                    lab[r, : len(s)] = torch.tensor(lbl)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, config)
                logits = model(input_ids=input_ids, attention_mask=attn).logits[:, :-1]
                target = lab[:, 1:]
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"warm-start: non-finite loss at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                losses.append(loss.item())
                if step % 20 == 0 or step == config.steps - 1:
                    bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        model.eval()
    finally:
        torch.set_num_threads(old_threads)
    info = {
        "train_seconds": time.perf_counter() - t0,
        "train_cpu_seconds": time.process_time() - c0,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "parameters": count_parameters(model),
        "train_problems": len(problems),
    }
    return model, tokenizer, info


def warm_start(
    config: WarmStartConfig | dict | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Path of the warm-started policy for ``config`` (``save_pretrained`` layout: load it with
    :func:`steer.testbed.load_policy`). Trains and caches it on the first call; later calls with
    the same config return the cached path at once. A corrupt or partial cache is rebuilt."""
    if config is None:
        config = WarmStartConfig()
    elif isinstance(config, dict):
        config = WarmStartConfig(**config)
    config.validate()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(config)
    final = cache_dir / f"warmstart-{key}"
    if final.exists() and not force and is_valid_cache(final, key):
        return final
    model, tokenizer, info = train_warm_start(config, progress=progress)
    tmp = cache_dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        save_policy(model, tokenizer, tmp)
        meta = {"key": key, "version": WARMSTART_VERSION, "config": config.to_dict(), **info}
        (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
        _write_manifest(tmp)
        if final.exists():
            if is_valid_cache(final, key) and not force:  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            trash = cache_dir / f".trash-{key}-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
