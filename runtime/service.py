"""The robot-facing gRPC service: a thin adapter between a Session stream and the registry, batcher and link.

A stream starts with `open`; the server answers with the runtime metadata, then with one chunk per observation
(unless a newer observation of the session replaces it while queued) and with every subtask update of the
session. Invalid input ends that stream with INVALID_ARGUMENT naming the field; other sessions are untouched.
Encoded frames are decoded on a worker thread, so a large one cannot stall other robots' streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import grpc
import numpy as np

from actor.engine import InvalidRequest
from policy.inputs import InputError
from protos.grpc_server import RateLimitedLog
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.stats import StatsRecorder
from protos.wire import WireError, needs_decoding, numpy_to_tensor
from runtime.batcher import ChunkBatcher, Dropped
from runtime.chunks import ChunkMaker
from runtime.sessions import Session as RuntimeSession  # in the servicer, `Session` is the RPC method
from runtime.sessions import SessionInUse, SessionRegistry

log = logging.getLogger(__name__)
_unreadable = RateLimitedLog(log)
OPEN_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class _StreamError:
    code: grpc.StatusCode
    message: str


class RobotRuntimeService(pb_grpc.RobotRuntimeServicer):
    def __init__(
        self,
        registry: SessionRegistry,
        batcher: ChunkBatcher,
        stats: StatsRecorder,
        metadata: pb.RuntimeMetadata,
        *,
        on_observation: Callable[[], None] = lambda: None,
        wait_for_subtask_ms: float = 0.0,
    ):
        self._registry = registry
        self._batcher = batcher
        self._chunks = ChunkMaker(batcher, stats, wait_for_subtask_ms=wait_for_subtask_ms)
        self._stats = stats
        self._metadata = metadata
        self._on_observation = on_observation

    async def GetMetadata(self, request, context) -> pb.RuntimeMetadata:
        return self._metadata

    async def GetStats(self, request, context) -> pb.Stats:
        stats = self._stats.to_proto()
        stats.counters["sessions_open"] = len(self._registry)
        return stats

    async def Session(self, request_iterator, context: grpc.aio.ServicerContext):
        requests = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(anext(requests), OPEN_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "open: the first message must open the session")
        if first.WhichOneof("kind") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "open: the first message must open the session")
        try:
            session = self._registry.open(first.open.session_id, first.open.task, first.open.resume_token)
        except (WireError, InputError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except SessionInUse as err:
            self._stats.count("sessions_refused")
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
        self._stats.count("sessions_opened")
        outbox: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(self._read(session, requests, outbox))
        forwarder = asyncio.create_task(self._forward_updates(session, outbox))
        released = False

        def release(_=None) -> None:
            """Runs when the call ends, however it ends: a cancelled call may leave this generator suspended
            until garbage collection, and the session must not stay registered until then."""
            nonlocal released
            if released:
                return
            released = True
            reader.cancel()
            forwarder.cancel()
            if not session.taken_over.is_set():
                self._batcher.forget(session.id)
            self._registry.close(session)
            self._stats.count("sessions_closed")

        context.add_done_callback(release)
        metadata = pb.RuntimeMetadata()
        metadata.CopyFrom(self._metadata)
        metadata.session_id = session.id
        metadata.resume_token = session.resume_token
        try:
            yield pb.SessionEvent(metadata=metadata)
            while True:
                event = await outbox.get()
                if event is None:  # the request stream ended: answers are all sent
                    return
                if isinstance(event, _StreamError):
                    self._stats.count("errors")
                    await context.abort(event.code, event.message)
                yield event
        finally:
            release()
            await asyncio.gather(reader, forwarder, return_exceptions=True)

    async def _read(self, session: RuntimeSession, requests, outbox: asyncio.Queue) -> None:
        pending: set[asyncio.Task] = set()
        try:
            async for message in requests:
                kind = message.WhichOneof("kind")
                if kind == "close":
                    session.finished = True
                    break
                if kind != "observation":
                    raise WireError("open", "the session is already open; send observations")
                request = await self._accept(session, message.observation)
                self._stats.count("observations")
                self._on_observation()
                version = session.subtask_version
                task = asyncio.create_task(self._chunk(session, message.observation.step, request, version, outbox))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending, return_exceptions=True)
            outbox.put_nowait(None)
        except (WireError, InputError) as err:
            outbox.put_nowait(_StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(err)))
        except asyncio.CancelledError:
            raise
        except (grpc.aio.AioRpcError, grpc.aio.AbortError):  # the call is over (dropped, or already refused)
            outbox.put_nowait(None)
        except Exception as err:  # noqa: BLE001 - an undecodable frame or any other surprise ends this stream only
            _unreadable.warning("session %s: unreadable request (%s)", session.id, type(err).__name__)
            outbox.put_nowait(_StreamError(grpc.StatusCode.INVALID_ARGUMENT, "observation: the message cannot be read"))
        finally:
            for task in pending:
                task.cancel()

    async def _accept(self, session: RuntimeSession, obs: pb.Observation):
        images = None
        if any(needs_decoding(image) for image in obs.images.values()):
            images = await asyncio.to_thread(self._registry.decode_images, obs)
        return self._registry.accept(session, obs, images)

    async def _chunk(self, session: RuntimeSession, step: int, request, version: int, outbox: asyncio.Queue) -> None:
        try:
            chunk = await self._chunks.make(session, request, version)
        except Dropped:
            return
        except InvalidRequest as err:
            outbox.put_nowait(_StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"observation.{err}"))
            return
        except Exception as err:
            log.exception("actor failed for session %s", session.id)
            outbox.put_nowait(_StreamError(grpc.StatusCode.INTERNAL, f"the actor failed: {type(err).__name__}"))
            return
        outbox.put_nowait(
            pb.SessionEvent(
                chunk=pb.ActionChunk(
                    session_id=session.id,
                    observation_step=step,
                    actions=numpy_to_tensor(np.asarray(chunk.actions, np.float32)),
                    subtask=chunk.subtask,
                    subtask_version=chunk.subtask_version,
                    timings=pb.Timings(
                        queue_ms=chunk.queue_ms,
                        prefill_ms=chunk.timings.prefill_ms,
                        denoise_ms=chunk.timings.denoise_ms,
                        total_ms=chunk.total_ms,
                    ),
                )
            )
        )

    async def _forward_updates(self, session: RuntimeSession, outbox: asyncio.Queue) -> None:
        taken_over = asyncio.create_task(session.taken_over.wait())
        update = None
        try:
            while True:
                update = asyncio.create_task(session.updates.get())
                done, _ = await asyncio.wait({update, taken_over}, return_when=asyncio.FIRST_COMPLETED)
                if taken_over in done:
                    message = f"session {session.id!r} was reopened by another stream"
                    outbox.put_nowait(_StreamError(grpc.StatusCode.ABORTED, message))
                    return
                outbox.put_nowait(pb.SessionEvent(subtask=update.result()))
        finally:
            for task in (taken_over, update):
                if task is not None:
                    task.cancel()
