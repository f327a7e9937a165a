"""Batches in an order fixed by (seed, step), prefetched on a few threads.

Step s reads positions s·B … s·B+B-1 of an endless sequence of epochs, each epoch its own permutation of the
dataset's rows drawn from (seed, epoch) (a mixture draws each batch by weight from (seed, step) instead; see
training.mixture); augmentation draws from (seed, step, row in batch). So the batch of a
step never depends on what ran before it, and a run resumed at step s reads exactly the batches an
uninterrupted run reads from s on. Video decoding and resizing release the GIL, so threads overlap them.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterator

import numpy as np

from training.lerobot import Frame, LeRobotDataset
from training.mixture import DatasetMixture
from training.samples import TrainBatch, collate


def batch_rows(step: int, batch_size: int, num_rows: int, seed: int) -> np.ndarray:
    """Dataset rows of the batch at `step`."""
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(positions, num_rows)
    rows = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(num_rows)
        rows[epochs == epoch] = order[offsets[epochs == epoch]]
    return rows


class BatchLoader:
    def __init__(
        self,
        dataset: LeRobotDataset | DatasetMixture,
        make_sample: Callable[[Frame, np.random.Generator], dict],
        batch_size: int,
        *,
        seed: int = 0,
        num_workers: int = 2,
        prefetch: int = 2,
        share: slice = slice(None),
    ):
        """share: the part of every global batch this process reads (training.distributed.local_rows)."""
        self.dataset = dataset
        self.make_sample = make_sample
        self.batch_size = batch_size
        self.seed = seed
        self.prefetch = max(1, prefetch)
        self.share = share
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="batches")

    def batch(self, step: int) -> TrainBatch:
        if isinstance(self.dataset, DatasetMixture):
            rows = self.dataset.sample_rows(np.random.default_rng([self.seed, step]), self.batch_size)
        else:
            rows = batch_rows(step, self.batch_size, len(self.dataset), self.seed)
        jobs = [(step, i, int(row)) for i, row in enumerate(rows)][self.share]
        samples = self._pool.map(self._sample, jobs)
        return collate(list(samples))

    def _sample(self, job: tuple[int, int, int]) -> dict:
        step, index, row = job
        rng = np.random.default_rng([self.seed, step, index])
        return self.make_sample(self.dataset.frame(row), rng)

    def iterate(self, start_step: int, end_step: int) -> Iterator[tuple[int, TrainBatch]]:
        """(step, batch) for start_step ≤ step < end_step, `prefetch` batches ahead."""
        pending: collections.deque = collections.deque()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefetch") as ahead:
            next_step = start_step
            while next_step < end_step or pending:
                while next_step < end_step and len(pending) < self.prefetch:
                    pending.append((next_step, ahead.submit(self.batch, next_step)))
                    next_step += 1
                step, future = pending.popleft()
                yield step, future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
