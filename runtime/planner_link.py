"""The runtime's side of the planner stream: keeps every session's subtask current without ever blocking chunks.

One `Link` stream to the planner; when the planner is free, the link sends the latest unplanned observation
of each of the `max_batch` sessions planned least recently (subject to a per-session minimum interval), which
the planner decodes as one batch, and waits for the replies.
A planner that is down, slow or hung costs only subtask freshness: the link times out, reconnects with
exponential backoff, and resumes; sessions keep their last subtask meanwhile. Until the planner has answered
once (it is still loading) the link retries at the shortest interval, so a session's first subtask, which its
first chunk waits for, comes as soon as the planner is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.stats import StatsRecorder
from runtime.sessions import Session, SessionRegistry

log = logging.getLogger(__name__)


class PlannerLink:
    def __init__(
        self,
        channel_factory: Callable[[], grpc.aio.Channel],
        registry: SessionRegistry,
        stats: StatsRecorder,
        *,
        interval_s: float = 0.0,
        reply_timeout_s: float = 60.0,
        stream_lifetime_s: float = 3600.0,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        metadata: tuple[tuple[str, str], ...] = (),
        max_batch: int = 1,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._max_batch = max_batch
        self._channel_factory = channel_factory
        self._registry = registry
        self._stats = stats
        self._interval = interval_s
        self._reply_timeout = reply_timeout_s
        self._lifetime = stream_lifetime_s
        self._backoff = backoff_s
        self._metadata = metadata
        self._wakeup = asyncio.Event()
        self._ever_connected = False
        self.connected = False

    def notify(self) -> None:
        """A session has a new observation."""
        self._wakeup.set()

    async def run(self) -> None:
        delay = self._backoff[0]
        while True:
            channel = self._channel_factory()
            try:
                stub = pb_grpc.PlannerStub(channel)
                call = stub.Link(timeout=self._lifetime, metadata=self._metadata, wait_for_ready=False)
                await self._pump(call)
            except (grpc.aio.AioRpcError, TimeoutError, ConnectionError, asyncio.InvalidStateError) as err:
                if self.connected:
                    log.warning("planner link lost: %s", _describe(err))
                self._stats.count("planner_link_errors")
            except Exception:  # the link must outlive any planner failure; chunks never depend on it
                log.exception("planner link failed")
                self._stats.count("planner_link_errors")
            finally:
                self.connected = False
                await channel.close()
            await asyncio.sleep(delay)
            if self._ever_connected:  # until the planner first answers it is starting up: keep knocking
                delay = min(delay * 2, self._backoff[1])

    async def _pump(self, call) -> None:
        while True:
            sessions = await self._next_sessions()
            unanswered: dict[str, tuple[Session, pb.Observation | None]] = {}
            try:
                for session in sessions:
                    unanswered[session.id] = (session, session.pending_snapshot)
                    snapshot = self._registry.take_snapshot(session)
                    session.last_planned_at = time.monotonic()
                    await asyncio.wait_for(call.write(snapshot), self._reply_timeout)
                await self._read_replies(call, len(sessions), unanswered)
            except BaseException:
                for session, observation in unanswered.values():  # not lost: planned again on the next link
                    if session.pending_snapshot is None:
                        session.pending_snapshot = observation
                    session.last_planned_at = 0.0
                raise

    async def _read_replies(
        self, call, count: int, unanswered: dict[str, tuple[Session, pb.Observation | None]]
    ) -> None:
        for _ in range(count):
            reply = await asyncio.wait_for(call.read(), self._reply_timeout)
            if reply is grpc.aio.EOF:
                raise ConnectionError("planner closed the link")
            if not self.connected:
                log.info("planner link up")
            self.connected = self._ever_connected = True
            unanswered.pop(reply.session_id, None)
            self._stats.observe("planner_decode", reply.decode_ms)
            update = self._registry.apply_subtask(reply)
            if update is not None:
                self._stats.count("subtask_updates")
                target = self._registry.get(update.session_id)
                if target is not None:
                    target.updates.put_nowait(update)

    async def _next_sessions(self) -> list[Session]:
        while True:
            now = time.monotonic()
            ready = [s for s in self._registry.sessions() if s.pending_snapshot is not None]
            due = [s for s in ready if now - s.last_planned_at >= self._interval]
            if due:
                return sorted(due, key=lambda s: s.last_planned_at)[: self._max_batch]
            self._wakeup.clear()
            wait = None
            if ready:
                wait = min(self._interval - (now - s.last_planned_at) for s in ready)
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except TimeoutError:
                pass


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    return type(err).__name__ if not str(err) else str(err)
