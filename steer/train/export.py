"""``steer export``: a ``steer train`` checkpoint as a Hugging Face model folder (``config.json``,
``model.safetensors``, the tokenizer) that ``from_pretrained``, ``steer eval``, verl and TRL load
as it is.

Checkpoints written with ``checkpoint.hf_weights=true`` (the default) already are such folders: the
export copies their Hugging Face files. Otherwise the policy is rebuilt from the checkpoint's own
config (the same base model or cached testbed warm-start) and its ``model.pt`` weights are loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from steer.errors import UserError

#: steer's own files in a checkpoint folder (not part of the exported model)
STEER_FILES = (
    "model.pt",
    "optimizer.pt",
    "rng.pt",
    "method.pt",
    "state.json",
    "config.yaml",
    "manifest.json",
)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its newest valid step checkpoint). UserError if none."""
    from steer.train import checkpoint as ckpt

    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{path}: no such folder")
    if (p / "manifest.json").is_file():
        ckpt.verify_checkpoint(p)
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    found, problems = ckpt.find_latest_valid(root, log=lambda m: None)
    if found is None:
        raise UserError(
            f"{path}: neither a checkpoint nor a run folder with one"
            + (f" ({'; '.join(problems)})" if problems else "")
        )
    return found


def export_checkpoint(path: str | Path, out: str | Path, *, log=lambda m: None) -> Path:
    """Write checkpoint (or run folder) ``path`` as a Hugging Face model folder ``out``; returns it."""
    from steer.train import checkpoint as ckpt

    src = resolve_checkpoint(path)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"export folder {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if (src / "config.json").is_file():
        for f in src.iterdir():
            if f.is_file() and f.name not in STEER_FILES:
                shutil.copy2(f, out / f.name)
        log(f"copied the Hugging Face files of {src} to {out}")
        return out
    from steer.train.config import config_from_dict
    from steer.train.trainer import load_model_and_tokenizer

    loaded = ckpt.load_checkpoint(src)
    cfg = config_from_dict(loaded.state["config"], check_method=False)
    cfg.model.device = "cpu"
    model, tok = load_model_and_tokenizer(cfg, log=log)
    model.load_state_dict(loaded.model_state)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    log(f"rebuilt {cfg.model.name_or_path or 'the testbed policy'} with the weights of {src} into {out}")
    return out
