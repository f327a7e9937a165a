"""Dynamic batching of actor requests across sessions, with latest-observation-wins per session.

Sessions submit requests from the event loop; one worker collects up to `max_batch` of them (waiting at most
`max_wait_ms` after the first, and not at all once every open session has a request queued, so a lone robot
never waits), runs the engine in a thread so the loop stays free, and resolves each request's future. A
session that submits again while its previous request is still queued replaces it: the stale one resolves as
`Dropped` and is counted.

Counters in the stats: `batches` run, `batches_of_<n>` of each size n, `batched_chunks` in them (over `batches`,
the mean batch size), and `actor_busy_us`, the time a batch was in flight (executor hand-off included): busy time
over wall time is the share of the actor that the sessions use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from actor.engine import ChunkRequest, ChunkResult, InvalidRequest
from protos.stats import StatsRecorder


class Dropped(Exception):
    """The request was superseded by a newer observation of the same session before it ran."""


class Actor(Protocol):
    """What a batch runs on: the runtime's `ActorHost`, or any engine with `ChunkEngine.run`'s contract."""

    def run(self, requests: Sequence[ChunkRequest]) -> list[ChunkResult]: ...


@dataclasses.dataclass
class _Pending:
    session_id: str
    request: ChunkRequest
    future: asyncio.Future
    enqueued: float


@dataclasses.dataclass(frozen=True)
class BatchedResult:
    result: ChunkResult
    queue_ms: float


class ChunkBatcher:
    def __init__(
        self,
        actor: Actor,
        stats: StatsRecorder,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 2.0,
        executor: concurrent.futures.Executor | None = None,
        open_sessions: Callable[[], int] | None = None,
    ):
        self._actor = actor
        self._stats = stats
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1e3
        self._open_sessions = open_sessions
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="actor")
        self._queue: dict[str, _Pending] = {}
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="chunk-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        for pending in self._queue.values():
            pending.future.cancel()
        self._queue.clear()

    def submit(self, session_id: str, request: ChunkRequest) -> asyncio.Future:
        """→ a future of `BatchedResult`; raises `Dropped` if a newer request of the session replaces it."""
        stale = self._queue.pop(session_id, None)
        if stale is not None and not stale.future.done():
            stale.future.set_exception(Dropped(f"observation superseded in session {session_id}"))
            self._stats.count("dropped")
        future = asyncio.get_running_loop().create_future()
        self._queue[session_id] = _Pending(session_id, request, future, time.perf_counter())
        self._wakeup.set()
        return future

    def forget(self, session_id: str) -> None:
        """A closed session's queued request is discarded."""
        pending = self._queue.pop(session_id, None)
        if pending is not None:
            pending.future.cancel()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                continue
            deadline = min(p.enqueued for p in self._queue.values()) + self._max_wait
            while not self._batch_full() and (delay := deadline - time.perf_counter()) > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), delay)
                    self._wakeup.clear()
                except TimeoutError:
                    break
            batch = [self._queue.pop(sid) for sid in list(self._queue)[: self._max_batch]]
            if self._queue:
                self._wakeup.set()
            await self._run(loop, batch)

    def _batch_full(self) -> bool:
        queued = len(self._queue)
        return queued >= self._max_batch or (self._open_sessions is not None and queued >= self._open_sessions())

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        """Runs a batch; a request the engine rejects fails alone and the rest run again without it."""
        while batch:
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._actor.run, [p.request for p in batch])
            except InvalidRequest as err:
                self._stats.count("errors")
                rejected = batch.pop(err.index)
                if not rejected.future.done():
                    rejected.future.set_exception(err)
                continue
            except Exception as err:  # the worker must survive: every caller of this batch sees the error
                self._stats.count("errors")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(err)
                return
            self._stats.count("batches")
            self._stats.count(f"batches_of_{len(batch)}")
            self._stats.count("batched_chunks", len(batch))
            self._stats.count("actor_busy_us", round((time.perf_counter() - started) * 1e6))
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(BatchedResult(result, (started - pending.enqueued) * 1e3))
            return
