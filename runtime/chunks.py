"""An accepted observation → its action chunk: shared by the gRPC Session stream and the openpi bridge.

It waits (optionally) for a session's first subtask, submits to the batcher, records the latency stats, and
says which subtask and version the chunk was conditioned on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from actor.engine import ChunkRequest, ChunkTimings
from protos.stats import StatsRecorder
from runtime.batcher import ChunkBatcher
from runtime.sessions import Session


@dataclasses.dataclass(frozen=True)
class ServedChunk:
    """The engine's chunk for one observation, with the subtask it was conditioned on and its timings: what
    the gRPC stream sends as an `ActionChunk` and the openpi bridge as its `infer` answer."""

    actions: object  # float32 [H, action_dims], robot units
    subtask: str  # "" while the actor still runs on the plain task
    subtask_version: int
    queue_ms: float
    timings: ChunkTimings

    @property
    def total_ms(self) -> float:
        return self.queue_ms + self.timings.total_ms


class ChunkMaker:
    def __init__(self, batcher: ChunkBatcher, stats: StatsRecorder, *, wait_for_subtask_ms: float = 0.0):
        self._batcher = batcher
        self._stats = stats
        self._wait_for_subtask = wait_for_subtask_ms / 1e3

    async def make(self, session: Session, request: ChunkRequest, version: int) -> ServedChunk:
        """Raises `Dropped` if a newer observation replaced this one, `InvalidRequest` if the engine refused it."""
        if self._wait_for_subtask and version == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.first_subtask.wait(), self._wait_for_subtask)
            request = dataclasses.replace(request, subtask=session.actor_subtask())
            version = session.subtask_version
        done = await self._batcher.submit(session.id, request)
        timings = done.result.timings
        self._stats.observe("queue", done.queue_ms)
        self._stats.observe("prefill", timings.prefill_ms)
        self._stats.observe("denoise", timings.denoise_ms)
        self._stats.observe("total", done.queue_ms + timings.total_ms)
        self._stats.count("chunks")
        on_task = request.subtask == session.task and version == 0
        return ServedChunk(done.result.actions, "" if on_task else request.subtask, version, done.queue_ms, timings)
