"""Training checkpoints in openpi's layout, each step directory also a ready model directory for serving:

    <run>/<step>/params/                         orbax PyTree {"params": ...} (EMA weights when EMA is on)
    <run>/<step>/train_state/                    orbax PyTree: step, optimizer state (+ raw weights under EMA)
    <run>/<step>/assets/<asset_id>/norm_stats.json
    <run>/<step>/model_config.json, tokenizer.model

so `robot-runtime serve --checkpoint <run>/<step>` loads it as it stands; its model_config.json always says
whether the run normalized with quantiles (`quantile_norm`), so serving never falls back on openpi's rule.
Step N holds the state after N updates; a run resumed from it continues with step N's batch. Saving is
synchronous: once `save` returns the step is complete on disk, and a process killed in the middle leaves only
an orbax temporary directory that the next manager ignores.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Mapping

import jax
import numpy as np

from policy.checkpoint import flatten, load_params
from policy.config import ModelConfig
from policy.model_dir import CONFIG_FILE, SERVING_FILE, TOKENIZER_FILE, ServingDefaults
from policy.normalize import NormStats, save_norm_stats
from training import distributed
from training.state import TrainState, split

PARAMS_ITEM = "params"
TRAIN_STATE_ITEM = "train_state"


class Checkpoints:
    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        max_to_keep: int | None = 1,
        keep_period: int | None = None,
    ):
        import orbax.checkpoint as ocp

        self.directory = pathlib.Path(directory).resolve()
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={PARAMS_ITEM: ocp.PyTreeCheckpointHandler(), TRAIN_STATE_ITEM: ocp.PyTreeCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                keep_period=keep_period,
                create=True,
                enable_async_checkpointing=False,
            ),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def step_dir(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    def save(
        self,
        step: int,
        state: TrainState,
        *,
        model_config: ModelConfig,
        tokenizer_path: pathlib.Path,
        norm_stats: Mapping[str, NormStats],
        asset_id: str,
        serving: ServingDefaults | None = None,
    ) -> pathlib.Path:
        ocp = self._ocp
        params = distributed.to_host(state.params(use_ema=True))
        train_state = {
            "step": np.asarray(distributed.to_host(state.step)),
            "opt_state": distributed.to_host(state.opt_state),
        }
        if state.ema is not None:
            train_state["trainable"] = distributed.to_host(state.trainable)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    PARAMS_ITEM: ocp.args.PyTreeSave({"params": params}),
                    TRAIN_STATE_ITEM: ocp.args.PyTreeSave(train_state),
                }
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        out = self.step_dir(step)
        if not distributed.is_primary():
            distributed.barrier(f"checkpoint-{step}")
            return out
        trained = model_config.replace(quantile_norm=model_config.use_quantiles)
        (out / CONFIG_FILE).write_text(json.dumps(trained.to_dict(), indent=2))
        shutil.copyfile(tokenizer_path, out / TOKENIZER_FILE)
        save_norm_stats(out / "assets" / asset_id, norm_stats)
        if serving is not None:
            serving.write(out / SERVING_FILE)
        distributed.barrier(f"checkpoint-{step}")
        return out

    def restore(self, step: int, like: TrainState) -> TrainState:
        """The state saved at `step`, shaped and placed like `like` (a freshly initialized state)."""
        ocp = self._ocp
        target = {"step": like.step, "opt_state": like.opt_state}
        if like.ema is not None:
            target["trainable"] = like.trainable
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    TRAIN_STATE_ITEM: ocp.args.PyTreeRestore(
                        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)
                    )
                }
            ),
        )[TRAIN_STATE_ITEM]
        params = load_params(self.step_dir(step) / PARAMS_ITEM)
        trainable_paths = set(flatten(like.trainable))
        live, frozen = split(params, trainable_paths)
        frozen = _place_like(frozen, like.frozen)
        live = _place_like(live, like.trainable)
        if like.ema is not None:
            trainable, ema = restored["trainable"], live
        else:
            trainable, ema = live, None
        return TrainState(
            step=restored["step"], trainable=trainable, frozen=frozen, opt_state=restored["opt_state"], ema=ema
        )

    def close(self) -> None:
        self._manager.close()


def _place_like(saved, like):
    """Saved numpy arrays with the dtype and sharding of the matching arrays of `like`."""
    return jax.tree.map(lambda value, ref: jax.device_put(np.asarray(value, ref.dtype), ref.sharding), saved, like)


def resolve_params_dir(path: str | pathlib.Path) -> pathlib.Path:
    """A params directory from a params dir, a step dir (`<step>/params`) or a run dir (its latest step)."""
    path = pathlib.Path(path).expanduser().resolve()
    if (path / "_METADATA").exists() or (path / "manifest.ocdbt").exists():
        return path
    if (path / PARAMS_ITEM).is_dir():
        return path / PARAMS_ITEM
    children = list(path.iterdir()) if path.is_dir() else []
    steps = [int(p.name) for p in children if p.name.isdigit() and (p / PARAMS_ITEM).is_dir()]
    if steps:
        return path / str(max(steps)) / PARAMS_ITEM
    raise FileNotFoundError(f"no checkpoint params at {path} (expected a params dir, <step>/params or a run dir)")
