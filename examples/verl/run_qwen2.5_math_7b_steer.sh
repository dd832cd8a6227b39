#!/usr/bin/env bash
# STEER on Qwen2.5-Math-7B / DAPO-Math-17k: the paper's main run (Table 1), one node of 8 GPUs.
#   bash examples/verl/run_qwen2.5_math_7b_steer.sh                     # STEER, lambda_min 0.7
#   LOSS_MODE=vanilla bash examples/verl/run_qwen2.5_math_7b_steer.sh   # the GRPO baseline
#   LOSS_MODE=steer_reference bash ...                                  # the released code's estimator
source "$(dirname "$0")/common.sh"
: "${MODEL:=Qwen/Qwen2.5-Math-7B}"
run_steer "$@"
