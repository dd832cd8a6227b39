"""Atomic, verifiable checkpoints.

Layout: ``<root>/step_00000040/`` holds ``model.pt``, ``optimizer.pt``, ``rng.pt`` (python,
numpy, torch RNG states), ``method.pt`` (the method's controllers and generator),
``state.json`` (step, metrics-file offset, best metric, ...), ``config.yaml``, the trainer's
Hugging Face files (``config.json``, ``model.safetensors``, the tokenizer: the folder loads with
``from_pretrained`` as it is; ``checkpoint.hf_weights=false`` leaves them out) and, written
last, ``manifest.json`` with the size and sha256 of every other file. A checkpoint is
written into a temporary sibling directory, every file and the directory are fsync'ed, and the
directory is renamed into place with ``os.replace``: a reader sees either the whole checkpoint
or none of it. On load, a directory whose manifest is missing or whose files do not match it is
reported as corrupt; :func:`find_latest_valid` falls back to the newest good one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MANIFEST = "manifest.json"
_STEP_RE = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial or corrupt."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def rng_state() -> dict:
    """Every random state the trainer draws from: python, numpy, torch CPU (and CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    root: str | Path,
    name: str,
    *,
    model_state: dict,
    optimizer_state: dict,
    rng: dict,
    state: dict,
    config_yaml: str,
    method_state: dict | None = None,
    extra_writer=None,
) -> Path:
    """Write ``root/name`` atomically (tmp dir + fsync + os.replace) and return its path.

    ``extra_writer(folder)``, when given, writes more files into the checkpoint before its manifest
    (the trainer's Hugging Face files: ``config.json``, weights, tokenizer); every one of them is
    fsync'ed and listed in the manifest like the others.

    An existing ``root/name`` is replaced (used for ``best``): the old one is moved aside first
    and removed only once the new one is in place.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = {
        "model.pt": _torch_bytes(model_state),
        "optimizer.pt": _torch_bytes(optimizer_state),
        "rng.pt": _torch_bytes(rng),
        "method.pt": _torch_bytes(method_state or {}),
        "state.json": json.dumps(state, indent=1, sort_keys=True, default=_json_default).encode(),
        "config.yaml": config_yaml.encode(),
    }
    manifest = {"files": {}, "step": state.get("step")}
    for fname, data in files.items():
        manifest["files"][fname] = {"sha256": _write_bytes(tmp / fname, data), "size": len(data)}
    if extra_writer is not None:
        extra_writer(tmp)
        for fpath in sorted(tmp.rglob("*")):
            rel = fpath.relative_to(tmp).as_posix()
            if not fpath.is_file() or rel in manifest["files"]:
                continue
            data = fpath.read_bytes()
            with open(fpath, "rb+") as f:
                os.fsync(f.fileno())
            manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    _write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    _fsync_dir(tmp)
    old = None
    if final.exists():
        old = root / f".old-{name}-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def verify_checkpoint(path: str | Path) -> dict:
    """The manifest of ``path`` after checking every file's size and sha256; CheckpointError if
    the manifest is missing/unreadable or any file is missing or differs."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {path} is partial: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
        entries = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: unreadable {MANIFEST} ({exc})") from exc
    for fname, meta in entries.items():
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointError(f"checkpoint {path} is partial: {fname} is missing")
        data = fpath.read_bytes()
        if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {fname} does not match its sha256 in {MANIFEST}"
            )
    return manifest


@dataclass
class LoadedCheckpoint:
    path: Path
    model_state: dict
    optimizer_state: dict
    rng: dict
    state: dict
    config_yaml: str
    method_state: dict


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Verify then load one checkpoint directory."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        return LoadedCheckpoint(
            path=path,
            model_state=torch.load(path / "model.pt", map_location="cpu", weights_only=True),
            optimizer_state=torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
            rng=torch.load(path / "rng.pt", map_location="cpu", weights_only=False),
            state=json.loads((path / "state.json").read_text()),
            config_yaml=(path / "config.yaml").read_text(),
            method_state=torch.load(path / "method.pt", map_location="cpu", weights_only=False),
        )
    except Exception as exc:  # a file that hashes right but does not load is still corrupt
        raise CheckpointError(f"checkpoint {path} could not be loaded: {exc}") from exc


def list_step_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_*`` directory under root, oldest first (valid or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def find_latest_valid(root: str | Path, *, log=print) -> tuple[Path | None, list[str]]:
    """The newest checkpoint under root that passes :func:`verify_checkpoint`, and the problems
    found with any newer ones (each reported through ``log``)."""
    problems = []
    for _, path in reversed(list_step_checkpoints(root)):
        try:
            verify_checkpoint(path)
            return path, problems
        except CheckpointError as exc:
            problems.append(str(exc))
            log(f"warning: {exc}; falling back to an older checkpoint")
    return None, problems


def cleanup(root: str | Path, keep_last: int) -> None:
    """Remove leftover temporary directories and all but the ``keep_last`` newest step checkpoints."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith((".tmp-", ".old-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    steps = list_step_checkpoints(root)
    for _, path in steps[: max(0, len(steps) - keep_last)]:
        shutil.rmtree(path, ignore_errors=True)
