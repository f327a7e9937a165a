"""The same seed, data and installed versions give the same training losses, bit for bit; another seed does
not. (The overfit test's thresholds rest on this: what varies between its runs is the lock, not chance.)"""

from __future__ import annotations

import json
import pathlib

from app.cli import main

CONFIG = "pi05_subtask_hybrid_tiny"
STEPS = 12
LOSSES = ("loss", "subtask_ce", "fast_ce", "flow_mse", "grad_norm")


def _run(dataset: pathlib.Path, root: pathlib.Path, name: str, seed: int) -> list[dict]:
    overrides = [
        f"data.path={dataset}",
        f"assets_dir={root / 'assets'}",
        f"checkpoint_dir={root / 'ckpt'}",
        f"num_train_steps={STEPS}",
        "log_interval=1",
        f"save_interval={STEPS}",
        f"seed={seed}",
    ]
    sets = [arg for o in overrides for arg in ("--set", o)]
    if not (root / "assets").exists():
        assert main(["compute-norm-stats", "--config", CONFIG, *sets, "--no-progress"]) == 0
    assert main(["train", CONFIG, "--exp-name", name, *sets, "--no-progress"]) == 0
    lines = (root / "ckpt" / CONFIG / name / "metrics.jsonl").read_text().splitlines()
    return [{key: json.loads(line)[key] for key in ("step", *LOSSES)} for line in lines]


def test_same_seed_same_losses_other_seed_other_losses(recorded_dataset, tmp_path):
    first = _run(recorded_dataset, tmp_path, "first", seed=7)
    again = _run(recorded_dataset, tmp_path, "again", seed=7)
    other = _run(recorded_dataset, tmp_path, "other", seed=8)
    assert len(first) == STEPS
    assert first == again
    assert [r["loss"] for r in first] != [r["loss"] for r in other]
