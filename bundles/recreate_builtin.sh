#!/usr/bin/env bash
# The exact command sequence that produced bundles/builtin; `make bundle` runs it from the repository root.
# About 1 h 50 min on 2 CPU cores. Evaluation seeds start at 0 (rollouts) and 5000 (planner_eval); the
# demonstrations use seeds 100000+ (clean), 300000+ and 700000+ (with action noise), so every evaluation
# episode is held out.
#
# Four stages of the pi05_builtin config (the joint recipe: subtask CE + flow, FAST off):
#   1. images and task only, clean demonstrations, 5000 steps;
#   2. the discretized state joins the prompts (discrete_state_input), clean demonstrations, 1500 steps;
#   3. demonstrations recorded with action noise (DART: the expert shows how to recover), 3000 steps;
#   4. 800 further noisy demonstrations of new scenes, 3000 steps at a lower learning rate.
# Each stage starts from the previous one's weights and keeps stage 1's tokenizer.
set -euo pipefail
runs=checkpoints/pi05_builtin
tokenizer=$runs/stage1/tokenizer.model

robot-runtime record --env builtin:all --episodes 600 --out data/builtin --image-size 64 --workers 2 \
    --seed 100000 --overwrite
robot-runtime record --env builtin:all --episodes 400 --out data/builtin_dart --image-size 64 --workers 2 \
    --seed 300000 --action-noise 0.1 --overwrite
robot-runtime record --env builtin:all --episodes 800 --out data/builtin_dart2 --image-size 64 --workers 2 \
    --seed 700000 --action-noise 0.1 --overwrite
robot-runtime compute-norm-stats --config pi05_builtin
robot-runtime compute-norm-stats --config pi05_builtin --set data.path=data/builtin_dart --set data.asset_id=dart

robot-runtime train pi05_builtin --exp-name stage1 --overwrite --set num_train_steps=5000 \
    --set model.discrete_state_input=false --set model.max_token_len=40 --set max_text_len=48
robot-runtime train pi05_builtin --exp-name stage2 --overwrite --set init_from=$runs/stage1/5000 \
    --set tokenizer=$tokenizer --set num_train_steps=1500 --set lr.warmup_steps=100 --set lr.peak_lr=5e-4 \
    --set lr.decay_steps=4000 --set save_interval=500
robot-runtime train pi05_builtin --exp-name stage3 --overwrite --set init_from=$runs/stage2/1500 \
    --set tokenizer=$tokenizer --set data.path=data/builtin_dart --set data.asset_id=dart \
    --set num_train_steps=3000 --set lr.warmup_steps=100 --set lr.peak_lr=5e-4 --set lr.decay_steps=3000 \
    --set save_interval=500
robot-runtime train pi05_builtin --exp-name stage4 --overwrite --set init_from=$runs/stage3/3000 \
    --set tokenizer=$tokenizer --set data.path=data/builtin_dart2 --set data.asset_id=dart \
    --set num_train_steps=3000 --set lr.warmup_steps=100 --set lr.peak_lr=3e-4 --set lr.decay_steps=3000 \
    --set save_interval=500

step_dir=$runs/stage4/3000
out=bundles/builtin
rm -rf "$out/params" "$out/assets"
mkdir -p "$out"
cp -r "$step_dir/params" "$step_dir/assets" "$step_dir/model_config.json" "$step_dir/tokenizer.model" "$out/"
du -sh "$out"
