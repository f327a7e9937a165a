#!/usr/bin/env bash
# The exact command sequence that produced bundles/builtin (run by `make bundle` from the repository root).
# Held-out evaluation seeds start at 0; the demonstrations use seeds from 100000 on.
set -euo pipefail
run=${RUN:-bundle}
steps=${STEPS:-6000}

robot-runtime record --env builtin:all --episodes 600 --out data/builtin --image-size 64 --workers 2 \
    --seed 100000 --overwrite
robot-runtime compute-norm-stats --config pi05_builtin
robot-runtime train pi05_builtin --exp-name "$run" --overwrite --set num_train_steps="$steps"

step_dir=checkpoints/pi05_builtin/$run/$steps
out=bundles/builtin
rm -rf "$out/params" "$out/assets"
mkdir -p "$out"
cp -r "$step_dir/params" "$step_dir/assets" "$step_dir/model_config.json" "$step_dir/tokenizer.model" "$out/"
du -sh "$out"
