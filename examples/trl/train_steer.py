"""Train a real model with STEER (or any method of steer's registry) in TRL on DAPO-Math-17k.

Single GPU (see single_gpu.sh)::

    python examples/trl/train_steer.py --model_name_or_path Qwen/Qwen2.5-Math-1.5B \
        --output_dir runs/trl-steer --steer_method steer --epsilon_high 0.28 --bf16 true

Several GPUs with accelerate (ZeRO-2, ZeRO-3 or FSDP2; see multi_gpu.sh)::

    accelerate launch --config_file examples/trl/zero2.yaml examples/trl/train_steer.py ...

Every ``SteerGRPOConfig`` field is a command-line flag (TRL's GRPOConfig fields plus
``--steer_method``, ``--steer_method_kwargs '{"lambda_min": 0.8}'``, ``--steer_log_metrics``).
The reward is the project's math reward (``steer.integrations.trl.math_reward``): the verifier
pool scores each completion against ``reward_model.ground_truth`` with the scorer of its
``data_source`` (DAPO: +1 / -1 on the last ``Answer:`` line).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import HfArgumentParser

from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer, math_reward


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(
        default="Qwen/Qwen2.5-Math-1.5B",
        metadata={
            "help": "Hub name or local directory of the policy, or a steer named model "
            "(smollm2-135m-instruct; docs/models.md)."
        },
    )
    train_file: str = field(
        default="../shared/data/DAPO-Math-17k.parquet",
        metadata={
            "help": "Parquet file in verl's schema (prompt as chat messages, reward_model.ground_truth)."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N problems."})


def load_problems(path: str, limit: int | None) -> Dataset:
    ds = Dataset.from_parquet(path)
    missing = {"prompt", "reward_model"} - set(ds.column_names)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} are missing (got {ds.column_names})")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((ScriptArguments, SteerGRPOConfig))
    script, args = parser.parse_args_into_dataclasses(args=argv)
    train = load_problems(script.train_file, script.max_train_samples)
    trainer = SteerGRPOTrainer(
        model=script.model_name_or_path, reward_funcs=math_reward, args=args, train_dataset=train
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
