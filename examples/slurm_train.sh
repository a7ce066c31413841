#!/bin/bash
# One locomotion run over several GPU nodes under SLURM: one process per GPU, started by srun.
#
#   sbatch examples/slurm_train.sh                       # 2 nodes x 4 GPUs = 8 processes
#   sbatch --nodes 4 examples/slurm_train.sh --run.seed 3   # extra arguments go to `locomotion train`
#
# JAX reads SLURM's variables in every task (jax.distributed.initialize(): the coordinator is
# the first node, process i is SLURM_PROCID, and each task drives the GPU numbered
# SLURM_LOCALID), so every task must see all GPUs of its node: ask for GPUs per node, not per
# task. The run directory must be on a filesystem every node sees (process 0 writes it; --resume
# reads it on every process). num_envs is the global batch: keep it a multiple of the GPU count.
#SBATCH --job-name=locomotion
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

TASK=${TASK:-quadruped_joystick}
ENVS_PER_GPU=${ENVS_PER_GPU:-8192}
RUN_DIR=${RUN_DIR:-$PWD/runs/$TASK/slurm-$SLURM_JOB_ID}
NUM_ENVS=$((ENVS_PER_GPU * SLURM_NTASKS))

# --kill-on-bad-exit: a task that fails stops the others (they would also stop on their own at
# their next collective, with one line each).
srun --kill-on-bad-exit=1 locomotion train "$TASK" --preset gpu --no-progress \
    --ppo.num-envs "$NUM_ENVS" --run-dir "$RUN_DIR" "$@"
# To continue a run that was stopped: RUN_DIR=... and, instead of the line above,
#   srun --kill-on-bad-exit=1 locomotion train --resume "$RUN_DIR" --no-progress
