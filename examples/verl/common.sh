#!/usr/bin/env bash
# Shared settings of the STEER verl runs (sourced by the run_*.sh scripts; docs/verl.md).
#
# The paper's recipe (section 5.1, appendix E.2, the authors' public script for verl 0.4.1, here
# for verl 0.9.x): GRPO on DAPO-Math-17k, 512 prompts x 8 rollouts per step, mini-batch 32
# prompts (16 updates per step), lr 1e-6 without warm-up, clip 0.2 / 0.28, dual clip 10, no KL,
# no entropy bonus, prompts 1024 / responses 3072 tokens, rollout temperature 1.0 / top-p 1.0,
# a checkpoint every 10 steps, AIME24 avg@32 validation (temperature 1.0, top-p 0.7; the
# aime24.parquet file repeats each problem 32 times, so val n=1 gives avg@32), at most 150 steps.
#
# Override anything with environment variables, or append Hydra overrides to the command line.
set -euo pipefail

: "${DATA_DIR:=$HOME/data}"                         # DAPO-Math-17k.parquet, aime24.parquet (verl schema)
: "${TRAIN_FILE:=$DATA_DIR/DAPO-Math-17k.parquet}"
: "${VAL_FILE:=$DATA_DIR/aime24.parquet}"
: "${NNODES:=1}"
: "${GPUS_PER_NODE:=8}"
: "${LOSS_MODE:=steer}"                             # vanilla = the GRPO baseline of the same recipe
: "${LAMBDA_MIN:=0.7}"                              # the paper's setting (released code: 0.8)
: "${STEER_SCOPE:=minibatch}"                       # Eq. 10; microbatch = the released code
: "${CLIP_LOW:=0.2}"
: "${CLIP_HIGH:=0.28}"
: "${CLIP_C:=10}"
: "${TRAIN_BATCH:=512}"
: "${MINI_BATCH:=32}"
: "${ROLLOUT_N:=8}"
: "${MAX_PROMPT:=1024}"
: "${MAX_RESPONSE:=3072}"
: "${LR:=1e-6}"
: "${TOTAL_STEPS:=150}"
: "${ROLLOUT_TP:=4}"
: "${MICRO_TOKENS:=16384}"                          # per-GPU token budget of a micro-batch (dynamic bsz)
: "${PROJECT:=steer_verl}"
: "${EXPERIMENT:=${LOSS_MODE}}"
: "${CKPT_DIR:=$PWD/checkpoints/$PROJECT/$EXPERIMENT}"

REWARD_FILE="$(python3 -c 'import steer.integrations.verl.reward as r; print(r.__file__)')"

steer_args() {
  local args=(
    algorithm.adv_estimator=grpo
    algorithm.use_kl_in_reward=false
    data.train_files="$TRAIN_FILE"
    data.val_files="$VAL_FILE"
    data.prompt_key=prompt
    data.train_batch_size="$TRAIN_BATCH"
    data.max_prompt_length="$MAX_PROMPT"
    data.max_response_length="$MAX_RESPONSE"
    data.truncation=left
    data.filter_overlong_prompts=true
    actor_rollout_ref.model.path="$MODEL"
    actor_rollout_ref.model.use_remove_padding=true
    actor_rollout_ref.model.enable_gradient_checkpointing=true
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.optim.lr="$LR"
    actor_rollout_ref.actor.optim.lr_warmup_steps=0
    actor_rollout_ref.actor.ppo_mini_batch_size="$MINI_BATCH"
    actor_rollout_ref.actor.use_dynamic_bsz=true
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MICRO_TOKENS"
    actor_rollout_ref.actor.clip_ratio_low="$CLIP_LOW"
    actor_rollout_ref.actor.clip_ratio_high="$CLIP_HIGH"
    actor_rollout_ref.actor.clip_ratio_c="$CLIP_C"
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.use_kl_loss=false
    actor_rollout_ref.actor.entropy_coeff=0
    # the switch: steer's loss mode, the entropy it reads, steer's config class for its parameters
    actor_rollout_ref.actor.policy_loss.loss_mode="$LOSS_MODE"
    actor_rollout_ref.actor.calculate_entropy=true
    actor_rollout_ref.actor.entropy_from_logits_with_chunking=true
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
    actor_rollout_ref.rollout.n="$ROLLOUT_N"
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.top_p=1.0
    actor_rollout_ref.rollout.gpu_memory_utilization=0.7
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$MICRO_TOKENS"
    actor_rollout_ref.rollout.val_kwargs.n=1
    actor_rollout_ref.rollout.val_kwargs.do_sample=true
    actor_rollout_ref.rollout.val_kwargs.temperature=1.0
    actor_rollout_ref.rollout.val_kwargs.top_p=0.7
    reward.custom_reward_function.path="$REWARD_FILE"
    reward.custom_reward_function.name=compute_score
    trainer.logger='[console,tensorboard]'
    trainer.project_name="$PROJECT"
    trainer.experiment_name="$EXPERIMENT"
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$GPUS_PER_NODE"
    trainer.save_freq=10
    trainer.test_freq=10
    trainer.val_before_train=true
    trainer.total_training_steps="$TOTAL_STEPS"
    trainer.default_local_dir="$CKPT_DIR"
  )
  case "$LOSS_MODE" in
    vanilla) ;;
    *)
      args+=(
        actor_rollout_ref.actor.policy_loss._target_=steer.integrations.verl.SteerPolicyLossConfig
        +actor_rollout_ref.actor.policy_loss.lambda_min="$LAMBDA_MIN"
        +actor_rollout_ref.actor.policy_loss.scope="$STEER_SCOPE"
      )
      ;;
  esac
  printf '%s\n' "${args[@]}"
}

run_steer() {
  local args
  # a steer named model (docs/models.md, e.g. MODEL=smollm2-135m-instruct) -> its converted
  # folder; a hub name or a local folder comes back unchanged
  MODEL="$(python3 -m steer.models path "$MODEL")"
  mapfile -t args < <(steer_args)
  exec python3 -m verl.trainer.main_ppo "${args[@]}" "$@"
}
