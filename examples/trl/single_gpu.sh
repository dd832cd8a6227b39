#!/usr/bin/env bash
# STEER on one GPU: the paper's GRPO recipe scaled to one device (vLLM colocated with training).
# Usage: examples/trl/single_gpu.sh [MODEL] [extra SteerGRPOConfig flags...]
set -euo pipefail
MODEL=${1:-Qwen/Qwen2.5-Math-1.5B}
shift || true
python examples/trl/train_steer.py \
  --model_name_or_path "$MODEL" \
  --train_file ../shared/data/DAPO-Math-17k.parquet \
  --output_dir runs/trl-steer-1gpu \
  --steer_method steer \
  --loss_type dapo --epsilon 0.2 --epsilon_high 0.28 --beta 0.0 \
  --num_generations 8 --per_device_train_batch_size 8 --gradient_accumulation_steps 8 \
  --max_completion_length 3072 --temperature 1.0 \
  --learning_rate 1e-6 --lr_scheduler_type constant --max_grad_norm 1.0 \
  --bf16 true --gradient_checkpointing true \
  --use_vllm true --vllm_mode colocate \
  --logging_steps 1 --save_steps 10 --report_to none \
  "$@"
