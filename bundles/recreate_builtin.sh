#!/usr/bin/env bash
# The exact command sequence that produced bundles/builtin; `make bundle` runs it from the repository root.
#
# Two datasets of both built-in tasks (the default "slots" layout):
# - 4000 demonstrations, every episode perturbed so that the expert shows how to recover: noise on every move
#   (σ = 0.1), in 30% of the stages a first grasp that misses on purpose (beside the object or above it), and in
#   half of the moves a detour that first heads over the wrong object or container, with the clean expert's
#   labels throughout. Every move's label ends with where it goes (location words, `sim.locations`).
# - 20 000 reset scenes, one frame each, with every thing's place (`--first-frames 1 --locations`): the
#   localisation questions ("locate the red cube") at the pose where the hand gives nothing away.
# Then three runs of the pi05_builtin config (conv stem with FiLM, state tokens), the frames decoded once into
# a memory-mapped cache:
# - stage 1 (`locate`): localisation alone, 90% reset scenes, no flow loss;
# - stage 2 (`bundle`), started from it: the joint recipe (subtask CE + flow; 60% of the text rows are
#   localisation questions, asked on first frames) on 70% demonstrations and 30% reset scenes;
# - stage 3 (`polish`): stage 2 continued for 8000 steps from a quarter of its peak learning rate, since its
#   losses were still falling.
# Norm stats are the demonstrations'. Evaluation seeds start at 0 (rollouts) and 5000 (planner_eval,
# binding_eval); the datasets use seeds 100000+ and 300000+, so every evaluation episode is held out.
#
# Re-running it resumes: a finished recording is kept, and each stage continues from its latest checkpoint.
# Set BUNDLE_STEPS, BUNDLE_LOCATE_STEPS, BUNDLE_POLISH_STEPS, BUNDLE_EPISODES, BUNDLE_SCENES to change the
# recipe (the bundle's figures in the README use the defaults).
set -euo pipefail
steps=${BUNDLE_STEPS:-12000}
locate_steps=${BUNDLE_LOCATE_STEPS:-5000}
polish_steps=${BUNDLE_POLISH_STEPS:-8000}
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
    robot-runtime compute-norm-stats --config pi05_builtin --set data.path="$data"
fi

train() {  # exp-name, steps, overrides...: a run of pi05_builtin, resumed from its latest checkpoint if any
    local exp=$1 n=$2 resume=--overwrite
    shift 2
    if compgen -G "$runs/$exp/[0-9]*" > /dev/null; then
        resume=--resume
    fi
    robot-runtime train pi05_builtin --exp-name "$exp" $resume --set num_train_steps="$n" \
        --set lr.decay_steps="$n" --set data.path=none "$@"
}
train locate "$locate_steps" --set data.mixture="[[\"$data\", 0.1], [\"$scene_data\", 0.9]]" \
    --set data.locate_prob=1 --set flow_loss_weight=0 --set lr.peak_lr=1e-3 --set lr.decay_lr=1e-3 \
    --set data.augment=false
mixture="[[\"$data\", 0.7], [\"$scene_data\", 0.3]]"
train bundle "$steps" --set data.mixture="$mixture" --set init_from="$runs/locate/$locate_steps"
train polish "$polish_steps" --set data.mixture="$mixture" --set init_from="$runs/bundle/$steps" \
    --set lr.peak_lr=5e-4 --set lr.warmup_steps=100 --set save_interval=2000

step_dir=$runs/polish/$polish_steps
out=bundles/builtin
rm -rf "$out/params" "$out/assets"
mkdir -p "$out"
cp -r "$step_dir/params" "$step_dir/assets" "$step_dir/model_config.json" "$step_dir/tokenizer.model" \
    "$step_dir/serving.json" "$out/"
du -sh "$out"
