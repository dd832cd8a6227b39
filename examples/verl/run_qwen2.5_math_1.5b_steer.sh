#!/usr/bin/env bash
# STEER on Qwen2.5-Math-1.5B (paper Table 5): the same recipe; the 1.5B model fits a rollout TP of 1.
source "$(dirname "$0")/common.sh"
: "${MODEL:=Qwen/Qwen2.5-Math-1.5B}"
ROLLOUT_TP=${ROLLOUT_TP_1_5B:-1}
EXPERIMENT=${EXPERIMENT_1_5B:-${LOSS_MODE}_1.5b}
CKPT_DIR=$PWD/checkpoints/$PROJECT/$EXPERIMENT
run_steer "$@"
