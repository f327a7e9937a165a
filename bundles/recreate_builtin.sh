#!/usr/bin/env bash
# The exact command sequence that produced bundles/builtin; `make bundle` runs it from the repository root.
#
# One dataset of both built-in tasks (the default "slots" layout), every episode perturbed so that the expert
# shows how to recover: noise on every move (σ = 0.1), and in 30% of the stages a first grasp that misses on
# purpose (beside the object or above it), and in half of the moves a detour that first heads over the wrong
# object or container, with the clean expert's labels throughout. Every move's label ends with where it goes
# (location words, `sim.locations`), so the planner finds the target and the actor follows its words. A second
# dataset holds only the reset frame of 20 000 more scenes (`--first-frames 1`): there the hand gives nothing
# away, and the planner's localisation questions ("locate the red cube" → `<x04><y07>`) are asked on first
# frames only (`data.locate_frames=1`), so it has to find things in the cameras, not read them off the hand.
# Training, config pi05_builtin (conv stem, state tokens), the frames decoded once into a memory-mapped cache:
# stage 1 learns localisation first (90% of its rows reset scenes, every first frame a question; no flow loss,
# no augmentation, a constant learning rate),
# then stage 2 runs the joint recipe (subtask CE + flow; 30% reset scenes, 60% of first frames asking) from
# stage 1's weights and tokenizer. A single joint run from scratch with the same mixture answered every
# question with one place after 6000 steps. Evaluation seeds start at 0 (rollouts) and 5000 (planner_eval);
# the demonstrations use seeds 100000+ and the scenes 300000+, so every evaluation episode is held out.
#
# Re-running it resumes: a finished recording is kept, and training continues from its latest checkpoint.
# Set BUNDLE_STEPS, BUNDLE_LOCATE_STEPS, BUNDLE_EPISODES, BUNDLE_SCENES to change the recipe (the README's
# figures use the defaults).
set -euo pipefail
steps=${BUNDLE_STEPS:-12000}
locate_steps=${BUNDLE_LOCATE_STEPS:-5000}
episodes=${BUNDLE_EPISODES:-4000}
scenes=${BUNDLE_SCENES:-20000}
data=data/builtin
scene_data=data/builtin_scenes
runs=checkpoints/pi05_builtin

if [[ ! -f $data/meta/info.json ]]; then
    robot-runtime record --env builtin:all --episodes "$episodes" --out "$data" --image-size 64 --workers 2 \
        --seed 100000 --action-noise 0.1 --mistakes 0.3 --detours 0.5 --locations --overwrite
    rm -f assets/pi05_builtin/default/norm_stats.json
fi
if [[ ! -f $scene_data/meta/info.json ]]; then
    robot-runtime record --env builtin:all --episodes "$scenes" --out "$scene_data" --image-size 64 --workers 2 \
        --seed 300000 --locations --first-frames 1 --overwrite
fi
if [[ ! -f assets/pi05_builtin/default/norm_stats.json ]]; then
    robot-runtime compute-norm-stats --config pi05_builtin
fi

mixture="[[\"$data\", 0.7], [\"$scene_data\", 0.3]]"
locate_mixture="[[\"$data\", 0.1], [\"$scene_data\", 0.9]]"
train() {  # train EXP_NAME STEPS --set ...: resumes a run that has checkpoints, else starts it
    local exp=$1 n=$2 resume=--overwrite
    shift 2
    if compgen -G "$runs/$exp/[0-9]*" > /dev/null; then
        resume=--resume
    fi
    robot-runtime train pi05_builtin --exp-name "$exp" $resume --set num_train_steps="$n" --set lr.decay_steps="$n" \
        --set data.path=none "$@"
}
# Stage 1: where things are. Every first frame asks "locate the …", mostly on the reset scenes; no flow loss.
train locate "$locate_steps" --set data.mixture="$locate_mixture" --set data.locate_prob=1 --set flow_loss_weight=0 \
    --set lr.peak_lr=1e-3 --set lr.decay_lr=1e-3 --set data.augment=false
# Stage 2: the joint recipe from stage 1's weights and tokenizer, still asking on first frames.
train bundle "$steps" --set data.mixture="$mixture" --set init_from="$runs/locate/$locate_steps" \
    --set tokenizer="$runs/locate/tokenizer.model"

step_dir=$runs/bundle/$steps
out=bundles/builtin
rm -rf "$out/params" "$out/assets"
mkdir -p "$out"
cp -r "$step_dir/params" "$step_dir/assets" "$step_dir/model_config.json" "$step_dir/tokenizer.model" \
    "$step_dir/serving.json" "$out/"
du -sh "$out"
