"""Losses on the held-out episodes of `data.val_fraction`, measured at every checkpoint.

The same frames every time (evenly spaced over the validation rows, without augmentation) and the same flow
noise (a fixed key), so successive figures differ only by the weights. Reported under `val_` keys: `loss`,
each loss term of the run (`flow_mse`, `subtask_ce`, `fast_ce`) and, when the run trains the planner,
`planner_exact_match` (the share of frames whose greedy subtask equals the label; see
`training.losses.subtask_exact_match`). EMA weights are measured when the run keeps them, as they are served.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from training import distributed
from training.lerobot import LeRobotDataset
from training.losses import LossConfig, compute_losses, subtask_exact_match
from training.metrics import VAL_PREFIX
from training.mixture import DatasetMixture
from training.samples import SampleMaker, TrainBatch, collate
from training.state import TrainState

VAL_SALT = 0x5A11D  # keeps the validation noise and sampling apart from any training step's


def validation_rows(size: int, count: int) -> np.ndarray:
    """`count` rows spread evenly over `size` (each at most once when there are enough)."""
    return np.linspace(0, size - 1, count).round().astype(np.int64)


class Validator:
    """Measures a train state on fixed batches of held-out frames."""

    def __init__(
        self,
        dataset: LeRobotDataset | DatasetMixture,
        make_sample: SampleMaker,
        batch_size: int,
        batches: int,
        graphdef: nnx.GraphDef,
        loss_cfg: LossConfig,
        seed: int,
        batch_sharding: jax.sharding.Sharding,
    ):
        rows = validation_rows(len(dataset), batch_size * max(1, batches))
        samples = [
            make_sample(dataset.frame(int(row)), np.random.default_rng([seed, VAL_SALT, i]))
            for i, row in enumerate(rows)
        ]
        share = distributed.local_rows(batch_size)
        self._batches = [
            distributed.from_local(collate(samples[i : i + batch_size][share]), batch_sharding)
            for i in range(0, len(samples), batch_size)
        ]
        rng = jax.random.key(seed ^ VAL_SALT)
        with_planner = loss_cfg.subtask_weight > 0

        def measure(state: TrainState, batch: TrainBatch) -> dict[str, jax.Array]:
            model = nnx.merge(graphdef, state.params())
            total, terms = compute_losses(model, rng, batch, loss_cfg)
            out = {"loss": total, **terms}
            if with_planner:
                out["exact"], out["labelled"] = subtask_exact_match(model, batch)
            return out

        self._measure = jax.jit(measure)

    def __call__(self, state: TrainState) -> dict[str, float]:
        per_batch = jax.device_get([self._measure(state, batch) for batch in self._batches])
        out = {
            VAL_PREFIX + key: float(np.mean([m[key] for m in per_batch]))
            for key in per_batch[0]
            if key not in ("exact", "labelled")
        }
        if "exact" in per_batch[0]:
            labelled = sum(int(m["labelled"]) for m in per_batch)
            exact = sum(int(m["exact"]) for m in per_batch)
            out[VAL_PREFIX + "planner_exact_match"] = exact / labelled if labelled else float("nan")
        return out
