"""Normalization statistics of a config's datasets, as openpi's `compute_norm_stats`: over every frame's state
and every frame's action chunk (padded tail actions count, as LeRobot repeats them), of every dataset of a
mixture (unweighted) and of the validation episodes too. Only the parquet columns are read, never the videos.
"""

from __future__ import annotations

import pathlib

import numpy as np

from policy.normalize import NormStats, RunningStats, load_norm_stats, save_norm_stats
from training.config import ConfigError, TrainConfig
from training.data import assets_dir, open_dataset
from training.metrics import Progress

ROWS_PER_UPDATE = 4096


def compute_norm_stats(config: TrainConfig, *, progress: bool = True) -> tuple[pathlib.Path, dict[str, NormStats]]:
    """Computes and writes `norm_stats.json` for `config`; returns its path and the stats."""
    dataset = open_dataset(config, "all")
    state, actions = RunningStats(), RunningStats()
    bar = Progress(len(dataset), label="frames", enabled=progress)
    try:
        for start in range(0, len(dataset), ROWS_PER_UPDATE):
            rows = np.arange(start, min(start + ROWS_PER_UPDATE, len(dataset)))
            state.update(dataset.states(rows))
            actions.update(dataset.action_chunks(rows)[0])
            bar.update(int(rows[-1]) + 1)
    finally:
        bar.close()
        dataset.close()
    stats = {"state": state.get_statistics(), "actions": actions.get_statistics()}
    return save_norm_stats(assets_dir(config), stats), stats


def read_norm_stats(config: TrainConfig) -> dict[str, NormStats]:
    path = assets_dir(config) / "norm_stats.json"
    if not path.is_file():
        raise ConfigError(
            f"no norm stats at {path}; run `robot-runtime compute-norm-stats --config {config.name}` first"
        )
    return load_norm_stats(path)
