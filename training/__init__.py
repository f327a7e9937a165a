"""Training the network on local LeRobot data (see `training/README.md`): named configs (`config`), the
LeRobot reader and dataset mixtures (`lerobot`, `data`, `mixture`), rows and batches (`samples`, `loader`),
losses, the train loop (`loop.train`), checkpoints, norm stats, metrics and tracking. It stays off the wire.

Importing the package loads none of its submodules: each public name imports its own on first use
(`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from training.checkpoints import Checkpoints
    from training.config import ConfigError, DataConfig, TrainConfig, config_names, describe, get_config, set_field
    from training.lerobot import DatasetError, LeRobotDataset
    from training.loop import RunResult, train
    from training.losses import LossConfig
    from training.metrics import Progress
    from training.mixture import DatasetMixture
    from training.norm_stats import compute_norm_stats
    from training.samples import SampleMaker, TrainBatch
    from training.state import TrainState
    from training.tracking import Tracker

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "training.checkpoints": ("Checkpoints",),
    "training.config": (
        "ConfigError",
        "DataConfig",
        "TrainConfig",
        "config_names",
        "describe",
        "get_config",
        "set_field",
    ),
    "training.lerobot": ("DatasetError", "LeRobotDataset"),
    "training.loop": ("RunResult", "train"),
    "training.losses": ("LossConfig",),
    "training.metrics": ("Progress",),
    "training.mixture": ("DatasetMixture",),
    "training.norm_stats": ("compute_norm_stats",),
    "training.samples": ("SampleMaker", "TrainBatch"),
    "training.state": ("TrainState",),
    "training.tracking": ("Tracker",),
}
__all__ = [
    "Checkpoints",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "DatasetMixture",
    "LeRobotDataset",
    "LossConfig",
    "Progress",
    "RunResult",
    "SampleMaker",
    "Tracker",
    "TrainBatch",
    "TrainConfig",
    "TrainState",
    "compute_norm_stats",
    "config_names",
    "describe",
    "get_config",
    "set_field",
    "train",
]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
