#!/usr/bin/env bash
# The learnability gate (`make gate`): can this pipeline teach a small policy ONE scene? It records a few dozen
# perturbed demonstrations of one pick_place scene (noise through every move, some deliberately missed grasps and
# their recovery), trains the pi05_builtin config on them from scratch for a few CPU-minutes, serves the
# checkpoint through `rollout --checkpoint` (planner and actor processes) and scores it on that same scene.
# One scene has nothing to find, so its data carries no location words and the run asks no localisation
# questions (data.locate_prob=0). If this fails, nothing larger will work. Defaults: 80 demonstrations, 3000
# steps, 10 episodes; the environment variables below change them (tests/sim/test_learnability_gate.py runs a
# smaller one).
set -euo pipefail
out=${GATE_OUT:-runs/gate}
demos=${GATE_DEMOS:-80}
steps=${GATE_STEPS:-3000}
episodes=${GATE_EPISODES:-10}
scene=${GATE_SEED:-0}
progress=${GATE_PROGRESS:-}

rm -rf "$out"
mkdir -p "$out"
robot-runtime record --env builtin:pick_place --episodes "$demos" --out "$out/data" --image-size 64 --workers 2 \
    --seed "$scene" --same-scene --action-noise 0.1 --mistakes 0.3 $progress
robot-runtime compute-norm-stats --config pi05_builtin --set data.path="$out/data" --set assets_dir="$out/assets" \
    $progress
robot-runtime train pi05_builtin --exp-name gate --overwrite $progress \
    --set data.path="$out/data" --set assets_dir="$out/assets" --set checkpoint_dir="$out/checkpoints" \
    --set num_train_steps="$steps" --set lr.warmup_steps=100 --set lr.peak_lr=3e-3 --set lr.decay_steps="$steps" \
    --set save_interval="$steps" --set log_interval=50 --set data.locate_prob=0
robot-runtime rollout --env builtin:pick_place --checkpoint "$out/checkpoints/pi05_builtin/gate/$steps" \
    --episodes "$episodes" --seed "$scene" --same-scene --workers 2 --image-size 64 \
    --out "$out/rollout" --quiet
