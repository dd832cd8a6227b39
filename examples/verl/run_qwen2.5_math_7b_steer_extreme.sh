#!/usr/bin/env bash
# The paper's extreme setting (section 5.2): clip_ratio_low 0.99, clip_ratio_high 5, where GRPO's
# entropy explodes and STEER keeps it bounded. Same recipe otherwise.
source "$(dirname "$0")/common.sh"
: "${MODEL:=Qwen/Qwen2.5-Math-7B}"
CLIP_LOW=${CLIP_LOW_EXTREME:-0.99}
CLIP_HIGH=${CLIP_HIGH_EXTREME:-5}
EXPERIMENT=${EXPERIMENT_EXTREME:-${LOSS_MODE}_extreme}
CKPT_DIR=$PWD/checkpoints/$PROJECT/$EXPERIMENT
run_steer "$@"
