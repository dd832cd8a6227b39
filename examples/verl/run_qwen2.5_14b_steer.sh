#!/usr/bin/env bash
# STEER on Qwen2.5-14B (paper Table 5): the same recipe; a 14B policy needs a smaller per-GPU token
# budget and parameter offload on 8 x 80 GB (these two settings are ours, not the paper's), or
# two nodes (NNODES=2 with run_multinode.sh).
source "$(dirname "$0")/common.sh"
: "${MODEL:=Qwen/Qwen2.5-14B}"
MICRO_TOKENS=${MICRO_TOKENS_14B:-8192}
EXPERIMENT=${EXPERIMENT_14B:-${LOSS_MODE}_14b}
CKPT_DIR=$PWD/checkpoints/$PROJECT/$EXPERIMENT
run_steer actor_rollout_ref.actor.fsdp_config.param_offload=true \
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=true "$@"
