"""Where a run's numbers go: `metrics.jsonl` always, TensorBoard event files by default, Weights & Biases opt-in.

    tensorboard --logdir checkpoints/CONFIG/EXP/tensorboard
    robot-runtime train CONFIG --exp-name EXP --set wandb_project=my-project [--set wandb_mode=offline]

Tags are `train/<term>` and `val/<term>` (a record's `val_` keys). A resumed run drops what the killed run
logged after its last checkpoint, in all three: the JSONL is truncated, TensorBoard purges the later events
(`purge_step`), and W&B resumes the same run id (kept in `wandb_run_id` in the run directory).
"""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import Mapping
from typing import Any

from policy.errors import UserFacingError
from training.metrics import VAL_PREFIX, MetricsLog

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_run_id"
WANDB_MODES = ("online", "offline", "disabled")


def tag(key: str) -> str:
    """The TensorBoard / W&B name of a record key: `val_flow_mse` → `val/flow_mse`, `loss` → `train/loss`."""
    if key.startswith(VAL_PREFIX):
        return "val/" + key[len(VAL_PREFIX) :]
    return "train/" + key


class Tracker:
    """Fans every logged record out to the run's metrics file and the experiment trackers it was asked for."""

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        start_step: int,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        wandb_mode: str | None = None,
        run_name: str | None = None,
        run_config: Mapping[str, Any] | None = None,
    ):
        self.metrics = MetricsLog(directory / METRICS_FILE)
        self.metrics.truncate(start_step)
        self._tensorboard = None
        self._wandb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(str(directory / TENSORBOARD_DIR), purge_step=start_step or None)
        if wandb_project:
            self._wandb = _start_wandb(directory, wandb_project, wandb_mode, run_name, run_config)

    def log(self, record: Mapping[str, float]) -> None:
        """`record` holds "step" and scalars."""
        self.metrics.append(record)
        step = int(record["step"])
        scalars = {tag(k): float(v) for k, v in record.items() if k != "step"}
        if self._tensorboard is not None:
            for name, value in scalars.items():
                self._tensorboard.add_scalar(name, value, step)
            self._tensorboard.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def records(self) -> list[dict]:
        return self.metrics.records()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _start_wandb(
    directory: pathlib.Path,
    project: str,
    mode: str | None,
    run_name: str | None,
    run_config: Mapping[str, Any] | None,
):
    if mode is not None and mode not in WANDB_MODES:
        raise UserFacingError(f"wandb_mode must be one of {WANDB_MODES} or none (W&B's own default), got {mode!r}")
    try:
        import wandb
    except ImportError as err:
        raise UserFacingError(
            "wandb_project is set but Weights & Biases is not installed: pip install 'robot-runtime[wandb]' "
            "(or leave wandb_project unset; metrics.jsonl and TensorBoard need nothing)"
        ) from err
    id_file = directory / WANDB_ID_FILE
    if not id_file.is_file():
        id_file.write_text(secrets.token_hex(8))
    return wandb.init(
        project=project,
        name=run_name,
        id=id_file.read_text().strip(),
        resume="allow",
        dir=str(directory),
        config=dict(run_config or {}),
        mode=mode,
    )
