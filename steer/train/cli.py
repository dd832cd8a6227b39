"""Sub-commands ``steer train`` and ``steer export`` (registered by ``steer/cli.py``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from steer.train.shipped import shipped_configs


def preflight(cfg, *, resume: bool, overwrite: bool, allow_config_change: bool):
    """Every check that needs no model: the output folder, a resume's config, the model's source, the
    task's data (read here, so a bad path fails before any model is loaded). Returns the task."""
    from steer.data.benchmarks import BENCHMARKS
    from steer.errors import UserError
    from steer.preflight import check_model_source
    from steer.train import checkpoint as ckpt
    from steer.train import rundir
    from steer.train.config import to_dict
    from steer.train.tasks import build_task

    out = Path(cfg.logging.out_dir)
    rundir.check_out_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        path, _ = ckpt.find_latest_valid(out / "checkpoints", log=lambda m: None)
        if path is not None:
            rundir.check_resume_config(path, to_dict(cfg), allow=allow_config_change)
    if cfg.model.source == "hf" or cfg.model.name_or_path:
        check_model_source(cfg.model.name_or_path)
    if cfg.task.name == "math" and cfg.task.train_path is None:
        raise UserError("task.train_path is required when task.name=math")
    for key in ("train_path", "heldout_path"):
        val = getattr(cfg.task, key)
        if val and (val.startswith("hf:") or (val in BENCHMARKS and not Path(val).exists())):
            continue  # a hub data set or a shipped benchmark: read below (one line when offline)
        if val and not Path(val).exists():
            raise UserError(f"task.{key} {val}: no such file or folder")
        if val and Path(val).is_file() and Path(val).stat().st_size == 0:
            raise UserError(f"task.{key} {val} is an empty file")
    try:
        task = build_task(cfg.task)
        n_train, n_held = len(task.train_problems()), len(task.heldout_problems())
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"task: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if n_train < cfg.trainer.prompts_per_step:
        raise UserError(
            f"the training set has {n_train} problems, fewer than trainer.prompts_per_step="
            f"{cfg.trainer.prompts_per_step}" + (f" ({cfg.task.train_path})" if cfg.task.train_path else "")
        )
    evals = cfg.eval.at_start or cfg.eval.at_end or cfg.eval.every
    if evals and n_held == 0:
        raise UserError(
            "the held-out set has no problems"
            + (f" ({cfg.task.heldout_path or cfg.task.train_path})" if cfg.task.train_path else "")
            + "; set task.heldout_path, or eval.every=0 eval.at_start=false eval.at_end=false"
        )
    return task


def _resume_command(args: argparse.Namespace) -> str:
    parts = ["steer", "train", "--config", args.config]
    if args.out:
        parts += ["--out", args.out]
    parts += ["--resume", *args.overrides]
    return shlex.join(parts)


def _train(args: argparse.Namespace) -> int:
    from steer.errors import UserError
    from steer.train.checkpoint import CheckpointError
    from steer.train.config import ConfigError, load_config

    overrides = list(args.overrides) + ([f"logging.out_dir={args.out}"] if args.out else [])
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            from steer.train.config import to_yaml

            print(to_yaml(cfg))
            return 0
        task = preflight(
            cfg, resume=args.resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change
        )
    except (ConfigError, UserError) as exc:
        print(f"steer train: {exc}", file=sys.stderr)
        return 2
    from steer.train.trainer import NonFiniteError, Trainer

    trainer = None
    try:
        trainer = Trainer(cfg, task=task)
        last = trainer.fit(
            resume=args.resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change
        )
    except UserError as exc:
        print(f"steer train: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, NonFiniteError) as exc:
        print(f"steer train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from steer.train import checkpoint as ckpt

        out = Path(cfg.logging.out_dir)
        path, _ = ckpt.find_latest_valid(out / "checkpoints", log=lambda m: None)
        where = f"interrupted at step {trainer.step}" if trainer is not None else "interrupted while loading"
        if path is None:
            print(
                f"\nsteer train: {where}; no checkpoint was written yet, nothing to resume", file=sys.stderr
            )
        else:
            step = int(path.name.split("_")[-1])
            print(
                f"\nsteer train: {where}; last checkpoint {path} (step {step}); continue with: "
                f"{_resume_command(args)}",
                file=sys.stderr,
            )
        return 130
    keys = ("step", "reward", "entropy", "heldout/acc")
    print(
        " ".join(
            f"{k}={last[k]:.4g}" if isinstance(last.get(k), float) else f"{k}={last.get(k)}"
            for k in keys
            if k in last
        )
    )
    out = Path(cfg.logging.out_dir)
    print(
        f"outputs in {out}/: metrics.jsonl, config.yaml, checkpoints/ (each loads with from_pretrained and "
        f"`steer eval --model`)"
        + (", tb/ (TensorBoard)" if cfg.logging.tensorboard else "")
        + f"; compare runs with `steer report {out}`"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from steer.preflight import check_writable
    from steer.train.export import export_checkpoint, resolve_checkpoint

    src = resolve_checkpoint(args.checkpoint)  # UserError: one line, exit 2 (steer/cli.py)
    out = args.out or str(src.parent.parent / f"hf_{src.name}")
    check_writable(out, "--out")
    path = export_checkpoint(src, out, log=lambda m: print(m, file=sys.stderr))
    print(f"exported {src} to {path}: load it with from_pretrained, `steer eval --model {path}`, verl or TRL")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="RL-train a policy (GRPO loop, any method of the registry)",
        description="Train with a YAML config and dotted overrides, e.g. "
        "`steer train --config testbed method.name=steer method.lambda_min=0.7 optim.lr=5e-4`.",
    )
    p.add_argument(
        "--config",
        default="testbed",
        help="YAML file, or a shipped config: " + ", ".join(shipped_configs()),
    )
    p.add_argument(
        "--out", default=None, help="output folder (sets logging.out_dir; default: the config's, runs/train)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest valid checkpoint in the output folder"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in the output folder (its metrics, checkpoints, TensorBoard logs)",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="--resume with settings that change the optimisation (e.g. optim.lr); recorded in "
        "config_changes.jsonl",
    )
    p.add_argument("--print-config", action="store_true", help="print the merged, validated config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides (omegaconf syntax)")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "export",
        help="a steer train checkpoint as a Hugging Face model folder (from_pretrained, eval, verl, TRL)",
        description="Write a checkpoint (or a run folder's newest checkpoint) as a folder with config.json, "
        "model.safetensors and the tokenizer. Checkpoints already hold these files unless "
        "checkpoint.hf_weights=false; then the policy is rebuilt from the checkpoint's config.",
    )
    e.add_argument("checkpoint", help="a checkpoint folder (runs/train/checkpoints/best) or a run folder")
    e.add_argument("--out", default=None, help="output folder (default: hf_<checkpoint> beside checkpoints/)")
    e.set_defaults(func=_export)


def main(argv: list[str] | None = None) -> int:
    """``python -m steer.train.cli ...``: the ``steer`` command (every sub-command)."""
    from steer.cli import main as steer_main

    return steer_main(argv)


if __name__ == "__main__":
    sys.exit(main())
