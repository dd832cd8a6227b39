"""The tiny causal language model of the testbed: a real Qwen2 architecture built from a config.

A few hundred thousand to a few million parameters, saved and loaded with
``save_pretrained`` / ``from_pretrained`` through the same code path a real model uses
(:func:`load_policy` calls ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained``, so a hub name or any local checkpoint works the same way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Qwen2Config

__all__ = ["PRESETS", "build_model", "count_parameters", "load_policy", "save_policy"]

#: the sizes a preset sets, in the column order of the table below; all presets tie the input and
#: output embeddings
_PRESET_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)
PRESETS: dict[str, dict[str, Any]] = {
    name: dict(zip(_PRESET_FIELDS, sizes))
    for name, sizes in {
        # name: (hidden, layers, heads, kv heads, MLP width)
        "micro": (64, 2, 4, 4, 192),  # 124k parameters: unit tests
        "tiny": (128, 4, 4, 4, 384),  # 888k parameters: the demo default
        "small": (256, 4, 8, 8, 768),  # 3.5M parameters: a slower, stronger variant
    }.items()
}


def build_model(tokenizer, preset: str = "tiny", seed: int | None = 0, **overrides: Any) -> PreTrainedModel:
    """A freshly initialised ``Qwen2ForCausalLM`` sized by ``preset`` (``micro``, ``tiny``,
    ``small``), any ``Qwen2Config`` field overridable by keyword. The vocabulary and special token
    ids come from ``tokenizer``. ``seed`` (if not None) makes the initial weights reproducible."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
    fields = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        use_cache=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    fields.update(PRESETS[preset])
    fields.update(overrides)
    valid = _config_fields()
    unknown = sorted(k for k in overrides if k not in valid)
    if unknown:
        raise ValueError(f"unknown Qwen2Config field(s) {unknown}; valid fields: {sorted(valid)}")
    try:
        config = Qwen2Config(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid model override {overrides}: {e}") from e
    if seed is not None:
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    finally:
        if seed is not None:
            torch.random.set_rng_state(state)
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    return model


def _config_fields() -> set[str]:
    """Names Qwen2Config knows (its own defaults plus its constructor's parameters)."""
    import inspect

    names = set(Qwen2Config().to_dict())
    names |= {p for p in inspect.signature(Qwen2Config.__init__).parameters if p not in ("self", "kwargs")}
    return names


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def save_policy(model: PreTrainedModel, tokenizer, path: str | Path) -> Path:
    """``save_pretrained`` of both model and tokenizer into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def load_policy(path_or_name: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None):
    """Load ``(model, tokenizer)`` with ``AutoModelForCausalLM`` / ``AutoTokenizer`` exactly as for
    a real model (local directory, hub name or a named model of :mod:`steer.models`; nothing is
    downloaded for a local path)."""
    from steer.models import resolve

    src = resolve(str(path_or_name))
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    if device is not None:
        model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
