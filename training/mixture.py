"""Several LeRobot datasets trained on as one, each drawn with its own weight (co-training).

Rows are the parts' rows one after another; `sample_rows` draws a batch by first picking each slot's part by
weight, then a row of that part uniformly, so a part's share of the batches is its weight whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.lerobot import DatasetError, Frame, LeRobotDataset


class DatasetMixture:
    """The parts of a `data.mixture`, addressed by row 0..len-1 (part by part), with sampling weights."""

    def __init__(self, parts: Sequence[LeRobotDataset], weights: Sequence[float]):
        if not parts or len(parts) != len(weights):
            raise DatasetError(f"a mixture needs one weight per dataset, got {len(parts)} and {len(weights)}")
        if any(not np.isfinite(w) or w <= 0 for w in weights):
            raise DatasetError(f"mixture weights must be positive numbers, got {list(weights)}")
        for part in parts[1:]:
            for name in ("state_dim", "action_dim"):
                if getattr(part, name) != getattr(parts[0], name):
                    raise DatasetError(
                        f"{part.root} has {name} {getattr(part, name)} but {parts[0].root} has "
                        f"{getattr(parts[0], name)}; the datasets of a mixture must agree"
                    )
        self.parts = list(parts)
        self.weights = np.asarray(weights, np.float64) / float(np.sum(weights))
        self._sizes = np.array([len(p) for p in parts], np.int64)
        self._offsets = np.r_[0, np.cumsum(self._sizes)[:-1]]

    def __len__(self) -> int:
        return int(self._sizes.sum())

    @property
    def state_dim(self) -> int:
        return self.parts[0].state_dim

    @property
    def action_dim(self) -> int:
        return self.parts[0].action_dim

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(part index, row within the part) of each row."""
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows outside the mixture's {len(self)} frames")
        part = np.searchsorted(self._offsets, rows, side="right") - 1
        return part, rows - self._offsets[part]

    def sample_rows(self, rng: np.random.Generator, count: int) -> np.ndarray:
        part = rng.choice(len(self.parts), size=count, p=self.weights)
        return self._offsets[part] + (rng.random(count) * self._sizes[part]).astype(np.int64)

    def texts(self) -> list[str]:
        return sorted({text for part in self.parts for text in part.texts()})

    def frame(self, row: int, *, with_images: bool = True) -> Frame:
        part, local = self.locate(np.array([row]))
        return self.parts[int(part[0])].frame(int(local[0]), with_images=with_images)

    def _gather(self, rows: np.ndarray, read) -> list[Any]:
        """What `read` gives for each row (an array, or a tuple of arrays when `read` returns a tuple)."""
        part, local = self.locate(rows)
        pieces: list[Any] = [None] * len(rows)
        for p in np.unique(part):
            where = np.flatnonzero(part == p)
            values = read(self.parts[int(p)], local[where])
            for i, value in zip(where, zip(*values, strict=True) if isinstance(values, tuple) else values, strict=True):
                pieces[i] = value
        return pieces

    def action_chunks(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pieces = self._gather(rows, lambda part, local: part.action_chunks(local))
        return np.stack([p[0] for p in pieces]), np.stack([p[1] for p in pieces])

    def states(self, rows: np.ndarray) -> np.ndarray:
        return np.stack(self._gather(rows, lambda part, local: part.states(local)))

    def use_frame_cache(self, *, progress: bool = True) -> None:
        for part in self.parts:
            part.use_frame_cache(progress=progress)

    def close(self) -> None:
        for part in self.parts:
            part.close()
