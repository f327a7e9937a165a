"""The robot client's bookkeeping of observations and chunks, keyed by observation step.

The server may answer a newer observation instead of a queued older one, so a chunk answers its own step and
every older one still waiting; `wait()`, `poll_chunk()` and `latest_chunk()` each read a different view of it.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time

import numpy as np

from protos.robot_runtime.v1 import runtime_pb2 as pb

KEPT_CHUNKS = 64


@dataclasses.dataclass(frozen=True)
class ServerTimings:
    queue_ms: float
    prefill_ms: float
    denoise_ms: float
    total_ms: float


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """Actions [H, action_dims] float32 in robot units answering the observation of `observation_step`."""

    observation_step: int
    actions: np.ndarray
    subtask: str
    subtask_version: int
    timings: ServerTimings
    round_trip_ms: float
    received_at: float


@dataclasses.dataclass(frozen=True)
class _Pending:
    observation: pb.Observation
    sent_at: float


class ChunkBook:
    """Observations awaiting their chunk (pending), the last `KEPT_CHUNKS` chunks by step, the chunks not read
    yet (unread) and the chunk of the newest observation (latest).

    Not locked: the client calls it under its own lock, the one its waiters wait on."""

    def __init__(self) -> None:
        self._next_step = 0
        self._pending: dict[int, _Pending] = {}
        self._by_step: collections.OrderedDict[int, Chunk] = collections.OrderedDict()
        self._unread: collections.deque[Chunk] = collections.deque(maxlen=KEPT_CHUNKS)
        self.latest: Chunk | None = None
        self.superseded = 0

    def add(self, observation: pb.Observation) -> int:
        """Numbers an observation about to be sent and awaits its chunk → its step."""
        step = self._next_step
        self._next_step += 1
        observation.step = step
        self._pending[step] = _Pending(observation, time.perf_counter())
        return step

    def newest_pending(self) -> pb.Observation | None:
        """Only the newest unanswered observation is worth sending again; older ones count as superseded."""
        if not self._pending:
            return None
        newest = max(self._pending)
        self.superseded += len(self._pending) - 1
        self._pending = {newest: self._pending[newest]}
        return self._pending[newest].observation

    def clear_pending(self) -> None:
        """The session failed: nothing pending is sent again when it is reopened."""
        self._pending.clear()

    def receive(self, message: pb.ActionChunk, actions: np.ndarray, arrived: float) -> Chunk:
        """Files a chunk (`arrived`: its perf_counter time); older observations still pending are superseded."""
        step = message.observation_step
        pending = self._pending.pop(step, None)
        older = [s for s in self._pending if s < step]
        for s in older:
            del self._pending[s]
        self.superseded += len(older)
        t = message.timings
        chunk = Chunk(
            observation_step=step,
            actions=actions,
            subtask=message.subtask,
            subtask_version=message.subtask_version,
            timings=ServerTimings(t.queue_ms, t.prefill_ms, t.denoise_ms, t.total_ms),
            round_trip_ms=(arrived - pending.sent_at) * 1e3 if pending is not None else math.nan,
            received_at=time.monotonic(),
        )
        self._by_step[step] = chunk
        while len(self._by_step) > KEPT_CHUNKS:
            self._by_step.popitem(last=False)
        self._unread.append(chunk)
        if self.latest is None or step >= self.latest.observation_step:
            self.latest = chunk
        return chunk

    def answer(self, step: int) -> Chunk | None:
        """The chunk of `step`, or the latest one if it answers a newer observation."""
        chunk = self._by_step.get(step)
        if chunk is None and self.latest is not None and self.latest.observation_step >= step:
            return self.latest
        return chunk

    def mark_read(self, step: int) -> None:
        while self._unread and self._unread[0].observation_step <= step:
            self._unread.popleft()

    def pop_unread(self) -> Chunk | None:
        return self._unread.popleft() if self._unread else None
