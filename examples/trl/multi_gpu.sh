#!/usr/bin/env bash
# STEER on several GPUs with accelerate. CONFIG: examples/trl/zero2.yaml (default), zero3.yaml or fsdp2.yaml;
# NUM_PROCESSES: GPUs on this node (default 8). vLLM runs colocated on every GPU.
# Usage: NUM_PROCESSES=8 examples/trl/multi_gpu.sh [CONFIG] [MODEL] [extra SteerGRPOConfig flags...]
set -euo pipefail
CONFIG=${1:-examples/trl/zero2.yaml}
MODEL=${2:-Qwen/Qwen2.5-Math-7B}
shift 2 || shift $# || true
accelerate launch --config_file "$CONFIG" --num_processes "${NUM_PROCESSES:-8}" \
  examples/trl/train_steer.py \
  --model_name_or_path "$MODEL" \
  --train_file ../shared/data/DAPO-Math-17k.parquet \
  --output_dir runs/trl-steer-multi \
  --steer_method steer \
  --loss_type dapo --epsilon 0.2 --epsilon_high 0.28 --beta 0.0 \
  --num_generations 8 --per_device_train_batch_size 8 --gradient_accumulation_steps 8 \
  --max_completion_length 3072 --temperature 1.0 \
  --learning_rate 1e-6 --lr_scheduler_type constant --max_grad_norm 1.0 \
  --bf16 true --gradient_checkpointing true \
  --use_vllm true --vllm_mode colocate --vllm_gpu_memory_utilization 0.3 \
  --logging_steps 1 --save_steps 10 --report_to none \
  "$@"
