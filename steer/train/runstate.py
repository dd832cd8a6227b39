"""The trainer's run folder and checkpoints: opening a run (fresh, replaced or resumed), the
trainer's state as a checkpoint holds it, and the checkpoints written after a step.

:func:`open_run` is the run-folder half of ``Trainer.fit``: the folder checks of
:mod:`steer.train.rundir`, and with ``resume`` the newest valid checkpoint of
:mod:`steer.train.checkpoint` restored (its config compared with the current one, the metrics file
checked against the offset the checkpoint was written after). :func:`save_state` and
:func:`load_state` are ``Trainer.save`` and ``Trainer.load``; :func:`checkpoint_after_step` writes
the ``best`` and the periodic checkpoints of a finished step.
"""

from __future__ import annotations

import math
from pathlib import Path

from steer.train import checkpoint as ckpt
from steer.train import rundir
from steer.train.config import to_dict, to_yaml

__all__ = ["checkpoint_after_step", "load_state", "open_run", "save_state"]


def open_run(trainer, *, resume: bool, overwrite: bool, allow_config_change: bool) -> int | None:
    """Check (and with ``overwrite`` clear) the run folder, create it, and with ``resume`` restore
    the newest valid checkpoint into ``trainer``. Returns the metrics-file offset to truncate to,
    or None when nothing was restored."""
    out_dir = trainer.out_dir
    rundir.check_out_dir(out_dir, resume=resume, overwrite=overwrite)
    if overwrite:
        rundir.clear_run(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        return None
    path, problems = ckpt.find_latest_valid(trainer.ckpt_dir, log=trainer.log)
    if path is None and problems:
        raise ckpt.CheckpointError(
            f"--resume: no valid checkpoint in {trainer.ckpt_dir}; problems found: " + "; ".join(problems)
        )
    if path is not None:
        return _resume_from(trainer, path, allow_config_change=allow_config_change)
    if rundir.holds_run(out_dir):
        raise rundir.RunDirError(
            f"--resume: {out_dir} holds metrics but no checkpoint to resume from; "
            "replace it with --overwrite or write to another folder"
        )
    trainer.log(f"--resume: no checkpoint in {trainer.ckpt_dir}; starting from step 0")
    return None


def _resume_from(trainer, path: Path, *, allow_config_change: bool) -> int:
    """Restore checkpoint ``path`` into ``trainer`` after comparing its config with the current
    one; an allowed change is recorded in the run folder."""
    diffs = rundir.check_resume_config(path, to_dict(trainer.cfg), allow=allow_config_change)
    offset = trainer.load(path)
    metrics_path = trainer.metrics_path
    size = metrics_path.stat().st_size if metrics_path.is_file() else 0
    if offset > size:
        raise ckpt.CheckpointError(
            f"--resume: {metrics_path} has {size} bytes but checkpoint {path} was written "
            f"after {offset}: the metrics file was replaced or cut since; not resuming"
        )
    if diffs:
        rundir.record_changes(trainer.out_dir, trainer.step, path, diffs)
        trainer.log(
            f"warning: resuming with a changed config ({rundir.describe(diffs)}); recorded in "
            f"{trainer.out_dir / rundir.CHANGES_FILE}"
        )
    trainer.log(f"resumed from {path} (step {trainer.step})")
    return offset


def _state(trainer, metrics_offset: int) -> dict:
    return {
        "step": trainer.step,
        "method_name": trainer.method.name,
        "metrics_offset": metrics_offset,
        "best_value": trainer.best_value,
        "nonfinite_skips": trainer.nonfinite_skips,
        "consecutive_skips": trainer.consecutive_skips,
        "last_heldout": {k: v for k, v in trainer.last_heldout.items() if not k.startswith("time/")},
        "config": to_dict(trainer.cfg),
    }


def save_state(trainer, name: str, metrics_offset: int) -> Path:
    """Checkpoint ``name`` of ``trainer`` (weights, optimiser, RNG streams, counters, config, the
    method's state; the policy in Hugging Face form too with ``checkpoint.hf_weights``)."""
    return ckpt.save_checkpoint(
        trainer.ckpt_dir,
        name,
        model_state={k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        optimizer_state=trainer.optimizer.state_dict(),
        rng=ckpt.rng_state(),
        state=_state(trainer, metrics_offset),
        config_yaml=to_yaml(trainer.cfg),
        method_state=trainer.method.state_dict(),
        extra_writer=(lambda folder: _write_hf(trainer, folder))
        if trainer.cfg.checkpoint.hf_weights
        else None,
    )


def _write_hf(trainer, folder: Path) -> None:
    """The policy and its tokenizer in Hugging Face form (``save_pretrained``) into ``folder``."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every checkpoint
    try:
        trainer.model.save_pretrained(str(folder), safe_serialization=True)
        trainer.tokenizer.save_pretrained(str(folder))
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_state(trainer, path: str | Path) -> int:
    """Restore ``trainer`` from one checkpoint directory; returns the metrics-file offset to
    truncate to."""
    loaded = ckpt.load_checkpoint(path)
    trainer.model.load_state_dict(loaded.model_state)
    trainer.optimizer.load_state_dict(loaded.optimizer_state)
    ckpt.set_rng_state(loaded.rng)
    st = loaded.state
    trainer.step = int(st["step"])
    name = trainer.method.name
    if st.get("method_name", name) != name:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was written by method {st.get('method_name')!r}, this run uses {name!r}"
        )
    trainer.method.load_state_dict(loaded.method_state)
    trainer.best_value = st.get("best_value")
    trainer.nonfinite_skips = int(st.get("nonfinite_skips", 0))
    trainer.consecutive_skips = int(st.get("consecutive_skips", 0))
    trainer.last_heldout = dict(st.get("last_heldout") or {})
    return int(st["metrics_offset"])


def _better(trainer, value: float) -> bool:
    best = trainer.best_value
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    if trainer.cfg.checkpoint.best_mode == "max":
        return value > best
    return value < best


def checkpoint_after_step(trainer, rec: dict, offset: int) -> None:
    """After step ``trainer.step`` (its record ``rec`` written, the metrics file ``offset`` bytes
    long): the ``best`` checkpoint when ``checkpoint.best_metric`` improved, and the step's own
    checkpoint every ``checkpoint.every`` steps and at the last step (older ones cleaned up)."""
    c = trainer.cfg.checkpoint
    key = c.best_metric
    if c.save_best and key in rec and _better(trainer, float(rec[key])):
        trainer.best_value = float(rec[key])
        trainer.save("best", offset)
    is_last = trainer.step == trainer.cfg.trainer.steps
    if (c.every and trainer.step % c.every == 0) or is_last:
        trainer.save(ckpt.step_dir_name(trainer.step), offset)
        ckpt.cleanup(trainer.ckpt_dir, c.keep_last)
