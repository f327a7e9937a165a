#!/usr/bin/env bash
# The exact command sequence that produced bundles/builtin; `make bundle` runs it from the repository root.
#
# One dataset of both built-in tasks (the default "slots" layout), every episode perturbed so that the expert
# shows how to recover: noise on every move (σ = 0.1), and in 30% of the stages a first grasp that misses on
# purpose (beside the object or above it), and in half of the moves a detour that first heads over the wrong
# object or container, with the clean expert's labels throughout. Every move's label ends with where it goes
# (location words, `sim.locations`), so the planner finds the target and the actor follows its words. Then
# one run of the pi05_builtin config (the joint recipe: subtask CE + flow; conv stem, state tokens) from
# scratch, with the frames decoded once into a memory-mapped cache. Evaluation seeds start at 0 (rollouts) and 5000 (planner_eval); the demonstrations use
# seeds 100000+, so every evaluation episode is held out.
#
# Re-running it resumes: a finished recording is kept, and training continues from its latest checkpoint.
# Set BUNDLE_STEPS, BUNDLE_EPISODES to change the recipe (the bundle's figures in the README use the defaults).
set -euo pipefail
steps=${BUNDLE_STEPS:-12000}
episodes=${BUNDLE_EPISODES:-4000}
data=data/builtin
runs=checkpoints/pi05_builtin

if [[ ! -f $data/meta/info.json ]]; then
    robot-runtime record --env builtin:all --episodes "$episodes" --out "$data" --image-size 64 --workers 2 \
        --seed 100000 --action-noise 0.1 --mistakes 0.3 --detours 0.5 --locations --overwrite
    rm -f assets/pi05_builtin/default/norm_stats.json
fi
if [[ ! -f assets/pi05_builtin/default/norm_stats.json ]]; then
    robot-runtime compute-norm-stats --config pi05_builtin
fi

resume=--overwrite
if compgen -G "$runs/bundle/[0-9]*" > /dev/null; then
    resume=--resume
fi
robot-runtime train pi05_builtin --exp-name bundle $resume --set num_train_steps="$steps" \
    --set lr.decay_steps="$steps"

step_dir=$runs/bundle/$steps
out=bundles/builtin
rm -rf "$out/params" "$out/assets"
mkdir -p "$out"
cp -r "$step_dir/params" "$step_dir/assets" "$step_dir/model_config.json" "$step_dir/tokenizer.model" \
    "$step_dir/serving.json" "$out/"
du -sh "$out"
