"""A training config's dataset and assets: where they are, opened as the config describes."""

from __future__ import annotations

import pathlib

from training.config import ConfigError, TrainConfig
from training.lerobot import LeRobotDataset


def open_dataset(config: TrainConfig) -> LeRobotDataset:
    data = config.data
    if not data.path:
        raise ConfigError(f"config {config.name} has no dataset: set it with --set data.path=/path/to/lerobot/dataset")
    return LeRobotDataset(
        data.path,
        config.model.action_horizon,
        state_key=data.state_key,
        action_key=data.action_key,
        subtask_key=data.subtask_key,
        task_key=data.task_key,
        cameras=[dataset_key for dataset_key, _ in data.cameras],
        episodes=data.episodes,
    )


def assets_dir(config: TrainConfig) -> pathlib.Path:
    """`<assets_dir>/<config name>/<asset_id>`: where compute-norm-stats writes and training reads."""
    return pathlib.Path(config.assets_dir).expanduser().resolve() / config.name / config.data.asset_id
