#!/usr/bin/env bash
# Any of the runs on a Ray cluster of several nodes (same code, same switch).
#
# 1. On every node: install steer[verl] (the verl.plugins entry point then loads steer in every
#    Ray worker; nothing else to ship) and put the data at the same $DATA_DIR.
# 2. Head node:    ray start --head --port=6379 --num-gpus=8
#    Other nodes:  ray start --address=HEAD_IP:6379 --num-gpus=8
# 3. Head node:    NNODES=2 bash examples/verl/run_multinode.sh [run script] [hydra overrides...]
#    e.g.          NNODES=2 bash examples/verl/run_multinode.sh run_qwen2.5_14b_steer.sh
#
# The driver attaches to the running cluster (RAY_ADDRESS=auto). STEER's mini-batch scope is
# exact across nodes: the max|Omega| of each mini-batch is all-reduced (MAX) over every
# data-parallel rank before its update (docs/verl.md).
set -euo pipefail
here="$(dirname "$0")"
script="${1:-run_qwen2.5_math_7b_steer.sh}"
[ $# -gt 0 ] && shift
export RAY_ADDRESS="${RAY_ADDRESS:-auto}"
: "${NNODES:=2}"
export NNODES
exec bash "$here/$script" "$@"
