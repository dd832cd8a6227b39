"""Checks that need no model: run by every command before its heavy work, so that a user error
(a missing path, a model that cannot be found offline, a read-only output folder) ends in one line
(``steer.errors.UserError``) before anything is loaded or computed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from steer.errors import UserError

__all__ = ["check_exists", "check_model_source", "check_writable", "is_steer_checkpoint"]


def is_steer_checkpoint(path: str | Path) -> bool:
    """A checkpoint folder written by ``steer train`` (``manifest.json`` and ``model.pt``)."""
    p = Path(path)
    return (p / "manifest.json").is_file() and (p / "model.pt").is_file()


def check_exists(path: str | Path | None, what: str, *, kind: str = "any") -> None:
    """UserError unless ``path`` exists (``kind``: "file", "dir" or "any")."""
    if path is None:
        return
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(
            f"{what} {path}: no such {'folder' if kind == 'dir' else 'file' if kind == 'file' else 'file or folder'}"
        )
    if kind == "file" and not p.is_file():
        raise UserError(f"{what} {path} is not a file")
    if kind == "dir" and not p.is_dir():
        raise UserError(f"{what} {path} is not a folder")


def check_writable(path: str | Path, what: str = "output folder") -> None:
    """UserError unless ``path`` is, or can be created as, a writable folder. Creates nothing."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {path} exists and is not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {path}: {probe} is not a folder")
    try:  # a real write: os.access says yes to root on read-only places such as /sys
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({probe}: {exc.strerror or exc})") from None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".")) or name.count("/") > 1 or Path(name).exists()


def check_model_source(name: str | None, *, what: str = "model.name_or_path") -> None:
    """UserError for a model that cannot be loaded without a download: a missing local folder, a
    folder that is not a model, or a hub name that is neither in the Hugging Face cache nor
    reachable (offline; checked in at most 3 s instead of the hub client's retries)."""
    if not name:
        return
    from steer.models import check_available, is_named

    if is_named(name):  # a local path of the same name wins (is_named checks)
        check_available(name)  # ModelNotAvailable (a UserError) names what to install
        return
    p = Path(name).expanduser()
    if _looks_like_path(name):
        if not p.exists():
            raise UserError(f"{what} {name}: no such folder")
        if not p.is_dir():
            raise UserError(f"{what} {name} is a file; expected a folder written by save_pretrained")
        if not (p / "config.json").is_file():
            hint = ""
            if is_steer_checkpoint(p):
                hint = f" (a steer checkpoint without the Hugging Face files; run `steer export {name}`)"
            elif (p / "checkpoints").is_dir():
                hint = (
                    f" (a steer run folder: give one of its checkpoints, e.g. {p / 'checkpoints' / 'best'})"
                )
            raise UserError(f"{what} {name} has no config.json: not a model folder{hint}")
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except Exception:  # an invalid repo id: the hub's own loader reports it
        return
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise UserError(f"{what} {name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        raise UserError(
            f"{what} {name} is not in the Hugging Face cache and huggingface.co cannot be reached "
            "(offline?): download it where there is a network, or pass a local folder"
        ) from None
