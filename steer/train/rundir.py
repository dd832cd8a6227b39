"""The run folder (``logging.out_dir``): never overwritten by accident, resumed only into the same
optimisation.

- :func:`check_out_dir` refuses a folder that already holds a run unless the user resumes it
  (``--resume``) or replaces it (``--overwrite``), and a folder that cannot be written; it runs
  before any model is loaded.
- :func:`config_differences` lists what differs between a checkpoint's config and the current one
  in anything that changes the optimisation (everything except :data:`RESUME_FREE`: the budget,
  logging, checkpointing, evaluation, threads and device). A resume with differences is refused
  (:class:`ResumeConfigError`) unless allowed (``--allow-config-change``); an allowed change is
  appended to ``config_changes.jsonl`` in the run folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from steer.errors import UserError

#: What a run folder holds (removed by ``--overwrite``; nothing else in the folder is touched).
RUN_FILES = ("metrics.jsonl", "config.yaml", "config_changes.jsonl")
RUN_DIRS = ("checkpoints", "tb")
CHANGES_FILE = "config_changes.jsonl"

#: Config keys (dotted prefixes) a resume may change freely: they do not change the optimisation.
RESUME_FREE = (
    "trainer.steps",
    "trainer.stop_after",
    "trainer.num_threads",
    "model.device",
    "warm_start.cache_dir",
    "eval.",
    "checkpoint.",
    "logging.",
)


class RunDirError(UserError):
    """The output folder holds another run, or cannot be written."""


class ResumeConfigError(UserError):
    """A resume whose config changes the optimisation of the checkpointed run."""


def holds_run(out_dir: str | Path) -> list[str]:
    """What of a run ``out_dir`` holds (empty when nothing): a non-empty ``metrics.jsonl``, checkpoints."""
    out = Path(out_dir)
    found = []
    m = out / "metrics.jsonl"
    if m.is_file() and m.stat().st_size > 0:
        found.append("metrics.jsonl")
    ck = out / "checkpoints"
    if ck.is_dir():
        names = sorted(p.name for p in ck.iterdir() if not p.name.startswith("."))
        if names:
            found.append(f"checkpoints ({', '.join(names)})")
    return found


def check_writable(out_dir: str | Path, what: str = "output folder") -> None:
    """RunDirError unless ``out_dir`` is (or can be created as) a writable folder. Creates nothing."""
    from steer.preflight import check_writable as _check

    try:
        _check(out_dir, what)
    except UserError as exc:
        raise RunDirError(str(exc)) from None


def check_out_dir(out_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse (RunDirError) an ``out_dir`` that holds a run unless ``resume`` or ``overwrite``, and
    one that cannot be written. Touches nothing."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    check_writable(out_dir, "logging.out_dir")
    found = holds_run(out_dir)
    if found and not (resume or overwrite):
        raise RunDirError(
            f"{out_dir} already holds a run ({'; '.join(found)}): continue it with --resume, write to "
            "another folder (--out DIR or logging.out_dir=DIR), or replace it with --overwrite"
        )


def clear_run(out_dir: str | Path) -> None:
    """Remove what a run wrote into ``out_dir`` (``--overwrite``); other files are kept."""
    out = Path(out_dir)
    for f in RUN_FILES:
        (out / f).unlink(missing_ok=True)
    for d in RUN_DIRS:
        if (out / d).is_dir():
            shutil.rmtree(out / d)


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        if not d and prefix:
            out[prefix[:-1]] = {}
    else:
        out[prefix[:-1]] = d
    return out


def _free(key: str) -> bool:
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in RESUME_FREE)


def config_differences(old: dict, new: dict) -> dict[str, tuple]:
    """``{key: (checkpoint value, current value)}`` for every dotted key that differs and changes the
    optimisation (keys of :data:`RESUME_FREE` excluded)."""
    a, b = _flatten(old), _flatten(new)
    diffs = {}
    for k in sorted(set(a) | set(b)):
        if _free(k):
            continue
        va, vb = a.get(k, "<unset>"), b.get(k, "<unset>")
        if va != vb:
            diffs[k] = (va, vb)
    return diffs


def describe(diffs: dict[str, tuple]) -> str:
    return ", ".join(f"{k}: {va!r} -> {vb!r}" for k, (va, vb) in diffs.items())


def checkpoint_config(path: str | Path) -> dict | None:
    """The config stored in a checkpoint's ``state.json`` (None when unreadable)."""
    try:
        return json.loads((Path(path) / "state.json").read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def check_resume_config(path: str | Path, new: dict, *, allow: bool = False) -> dict[str, tuple]:
    """The differences between checkpoint ``path``'s config and ``new``; ResumeConfigError when
    there are any and ``allow`` is false. ``method.name`` can never change on resume."""
    old = checkpoint_config(path)
    if old is None:
        return {}
    try:  # keys added to the schema since the checkpoint was written take their defaults
        from steer.train.config import config_from_dict, to_dict

        old = to_dict(config_from_dict(old, check_method=False))
    except ValueError:
        pass
    diffs = config_differences(old, new)
    if "method.name" in diffs:
        raise ResumeConfigError(
            f"--resume: checkpoint {path} was trained with method {diffs['method.name'][0]!r}, this run "
            f"uses {diffs['method.name'][1]!r}; a resume cannot change the method (start a new run)"
        )
    if diffs and not allow:
        raise ResumeConfigError(
            f"--resume: the config differs from checkpoint {path} in what changes the optimisation: "
            f"{describe(diffs)}; resume with the checkpoint's settings, or pass --allow-config-change "
            "to continue with the new ones (the change is recorded in config_changes.jsonl)"
        )
    return diffs


def record_changes(out_dir: str | Path, step: int, checkpoint: str | Path, diffs: dict[str, tuple]) -> None:
    """Append an allowed resume-time config change to ``out_dir/config_changes.jsonl``."""
    rec = {
        "step": step,
        "checkpoint": str(checkpoint),
        "changes": {k: {"checkpoint": va, "now": vb} for k, (va, vb) in diffs.items()},
    }
    with open(Path(out_dir) / CHANGES_FILE, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")
