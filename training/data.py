"""A training config's datasets and assets: where they are, opened as the config describes.

`data.path` names one dataset; `data.mixture` several with weights (`training.mixture`). With
`data.val_fraction` > 0 each dataset holds out that share of its episodes, drawn from the run's seed: the
`train` split never reads them and the `val` split reads nothing else. Norm stats cover both (`all`), as
openpi's do, so changing the split does not change the normalization.
"""

from __future__ import annotations

import pathlib
from typing import Literal, overload

import numpy as np

from training.config import ConfigError, TrainConfig
from training.lerobot import LeRobotDataset
from training.mixture import DatasetMixture

Split = Literal["train", "val", "all"]


def dataset_parts(config: TrainConfig) -> tuple[tuple[str, float], ...]:
    """(path, weight) of every dataset the config trains on."""
    data = config.data
    if data.mixture:
        if data.path:
            raise ConfigError("set data.path or data.mixture, not both")
        if data.episodes is not None:
            raise ConfigError("data.episodes selects episodes of one dataset; it cannot be used with data.mixture")
        for item in data.mixture:
            if len(item) != 2 or not isinstance(item[0], str) or not isinstance(item[1], int | float):
                raise ConfigError(f'data.mixture expects [["path", weight], ...], got item {item!r}')
        return tuple((str(path), float(weight)) for path, weight in data.mixture)
    if not data.path:
        raise ConfigError(
            f"config {config.name} has no dataset: set it with --set data.path=/path/to/lerobot/dataset "
            '(or several with --set data.mixture=\'[["/data/a", 0.7], ["/data/b", 0.3]]\')'
        )
    return ((data.path, 1.0),)


def held_out_episodes(episodes: list[int], fraction: float, seed: int) -> list[int]:
    """The episodes a `fraction` validation split holds out: at least one, never all."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return []
    if len(episodes) < 2:
        raise ConfigError(f"a validation split needs at least 2 episodes, the dataset has {len(episodes)}")
    count = min(len(episodes) - 1, max(1, round(fraction * len(episodes))))
    chosen = np.random.default_rng([seed, len(episodes)]).choice(len(episodes), count, replace=False)
    return sorted(episodes[i] for i in chosen)


@overload
def open_dataset(config: TrainConfig, split: Literal["train", "all"] = "train") -> LeRobotDataset | DatasetMixture: ...
@overload
def open_dataset(config: TrainConfig, split: Split) -> LeRobotDataset | DatasetMixture | None: ...
def open_dataset(config: TrainConfig, split: Split = "train") -> LeRobotDataset | DatasetMixture | None:
    """The frames of `split`; None for `val` when the config holds out nothing."""
    data = config.data
    if split == "val" and data.val_fraction == 0.0:
        return None
    parts, weights = [], []
    scenes = split != "all"  # norm stats ("all") read no text
    try:
        for path, weight in dataset_parts(config):
            dataset = _open(config, path, data.episodes, scenes)
            if split != "all" and data.val_fraction > 0:
                ids = [e.index for e in dataset.episodes]
                val = set(held_out_episodes(ids, data.val_fraction, config.seed))
                keep = sorted(val) if split == "val" else [e for e in ids if e not in val]
                dataset.close()
                dataset = _open(config, path, keep, scenes)
            parts.append(dataset)
            weights.append(weight)
    except BaseException:
        for part in parts:
            part.close()
        raise
    if len(parts) == 1:
        return parts[0]
    return DatasetMixture(parts, weights)


def _open(config: TrainConfig, path: str, episodes, scenes: bool) -> LeRobotDataset:
    data = config.data
    return LeRobotDataset(
        path,
        config.model.action_horizon,
        state_key=data.state_key,
        action_key=data.action_key,
        subtask_key=data.subtask_key,
        task_key=data.task_key,
        scene_key=data.scene_key if scenes and data.locate_prob > 0 else None,
        cameras=[dataset_key for dataset_key, _ in data.cameras],
        episodes=episodes,
    )


def assets_dir(config: TrainConfig) -> pathlib.Path:
    """`<assets_dir>/<config name>/<asset_id>`: where compute-norm-stats writes and training reads."""
    return pathlib.Path(config.assets_dir).expanduser().resolve() / config.name / config.data.asset_id
