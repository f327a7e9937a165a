"""A synchronous robot client for the runtime's `Session` stream.

Sim rollout workers and robot control loops are plain synchronous loops, so the client is too: a background
thread owns the stream (reads every event, reopens the session when the connection drops) and the caller's
thread only sends observations and waits on a condition for their chunks.

The session stream itself carries a long deadline (`SESSION_LIFETIME_S`, after which the client reopens it
like any dropped stream) because a short one would cut a live robot session; what the caller waits for is
bounded instead: `connect()` and every `infer()`/`wait()` time out after `timeout_s`, unary calls carry it as
their deadline, and keepalive pings notice a dead peer.

Reconnecting reopens the session with its session_id (the one asked for, or the one the server assigned) and
the server's resume token, so the server resumes it: step count, task, subtask and subtask version carry over,
and the newest unanswered observation is sent again, so a blocked `infer()` completes across a reconnect.
After the server forgot the session (it restarted, or the grace period after a drop passed) the same id opens a
fresh session. Another client cannot open a session that is in use: it has no token.

`RobotClient` is the API; its parts sit beside it: `session_stream` (the connection and its thread),
`chunk_book` (observations and their chunks) and `stats` (latencies).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from collections.abc import Mapping
from typing import Self

import grpc
import numpy as np

from client.action_queue import RtcPrefix
from client.chunk_book import Chunk, ChunkBook, ServerTimings
from client.session_stream import RuntimeClientError, RuntimeInfo, SessionStream
from client.stats import ChunkLatencies, ClientStats, LatencySummary
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import WireError, numpy_to_image, numpy_to_tensor, tensor_to_numpy

__all__ = [
    "Chunk",
    "ClientStats",
    "LatencySummary",
    "RobotClient",
    "RuntimeClientError",
    "RuntimeInfo",
    "ServerTimings",
    "SubtaskEvent",
]

IMAGE_ENCODINGS = ("raw", "jpeg", "png")
SUBTASK_HISTORY = 10_000


@dataclasses.dataclass(frozen=True)
class SubtaskEvent:
    """A planner update as received; `observation_step` is the observation it was decoded from."""

    text: str
    version: int
    observation_step: int
    decode_ms: float
    prefill_ms: float
    received_at: float


def _checked_frame(camera: str, frame: np.ndarray) -> np.ndarray:
    """Rejects frames the encoder would silently cast (float images) or misread."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"images[{camera!r}]: expected uint8 [H, W, 3] RGB, got {frame.dtype} {list(frame.shape)}")
    return frame


def _rtc_message(rtc: RtcPrefix) -> pb.RealTimeChunking:
    return pb.RealTimeChunking(
        queued_actions=numpy_to_tensor(np.asarray(rtc.queued_actions, np.float32)),
        inference_delay=int(rtc.inference_delay),
        execution_horizon=int(rtc.execution_horizon),
    )


class RobotClient:
    """One robot session with the runtime. Use as a context manager, or `connect()` … `close()`.

    `infer()` sends an observation and blocks for its chunk; `send()` + `poll_chunk()`/`latest_chunk()`/`wait()`
    are the non-blocking parts of the same thing for loops that keep acting while the chunk is computed.
    """

    def __init__(
        self,
        address: str,
        task: str,
        *,
        session_id: str = "",
        token: str | None = None,
        tls_ca: str | os.PathLike | None = None,
        image_encoding: str = "raw",
        timeout_s: float = 30.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.2, 5.0),
        max_reconnects: int = 5,
    ):
        if image_encoding not in IMAGE_ENCODINGS:
            raise ValueError(f"image_encoding must be one of {IMAGE_ENCODINGS}, got {image_encoding!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(f"backoff must be (initial, maximum) seconds with 0 < initial <= maximum, got {backoff}")
        if max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0, got {max_reconnects}")
        self.image_encoding = image_encoding
        self.timeout_s = timeout_s
        self._cond = threading.Condition()  # one lock for the stream's state, the chunks and the subtasks
        self._book = ChunkBook()
        self._latencies = ChunkLatencies()
        self._subtask: tuple[str, int] = ("", 0)
        self._subtask_updates: collections.deque[SubtaskEvent] = collections.deque(maxlen=SUBTASK_HISTORY)
        self._subtask_count = 0
        self._stream = SessionStream(
            address,
            task,
            self._cond,
            session_id=session_id,
            token=token,
            tls_ca=tls_ca,
            reconnect=reconnect,
            backoff=backoff,
            max_reconnects=max_reconnects,
            resend=self._book.newest_pending,
            on_chunk=self._on_chunk,
            on_subtask=self._on_subtask,
            on_failure=self._book.clear_pending,
        )

    # The connection settings live on the stream, which reads them as it (re)connects.

    @property
    def address(self) -> str:
        return self._stream.address

    @address.setter
    def address(self, value: str) -> None:
        self._stream.address = value

    @property
    def reconnect(self) -> bool:
        return self._stream.reconnect

    @reconnect.setter
    def reconnect(self, value: bool) -> None:
        self._stream.reconnect = value

    @property
    def backoff(self) -> tuple[float, float]:
        return self._stream.backoff

    @backoff.setter
    def backoff(self, value: tuple[float, float]) -> None:
        self._stream.backoff = value

    @property
    def max_reconnects(self) -> int:
        return self._stream.max_reconnects

    @max_reconnects.setter
    def max_reconnects(self, value: int) -> None:
        self._stream.max_reconnects = value

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def connect(self) -> RuntimeInfo:
        """Opens the session (retrying like a reconnect) → the runtime's metadata; raises after `timeout_s`."""
        return self._stream.open(self.timeout_s)

    def close(self) -> None:
        """Ends the session: says so (SessionClose, which frees the id at once) and half-closes, so the server
        answers what is pending; cancels after a short grace."""
        self._stream.close()

    # -- observations and chunks -------------------------------------------------------------------------------

    def send(
        self,
        images: Mapping[str, np.ndarray],
        state: np.ndarray | None = None,
        *,
        task: str | None = None,
        rtc: RtcPrefix | None = None,
    ) -> int:
        """Sends an observation without waiting → its step (the key of its chunk)."""
        observation = self._observation(images, state, task, rtc)
        with self._cond:
            self._stream.raise_unless_running()
            step = self._book.add(observation)
            if task:
                self._stream.task = task
            self._stream.send(observation)
        return step

    def wait(self, step: int, timeout_s: float | None = None) -> Chunk:
        """Blocks for the chunk of `step`, or a newer one if the server replaced that observation."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        stream, book = self._stream, self._book
        with self._cond:
            self._cond.wait_for(
                lambda: book.answer(step) is not None or stream.error is not None or stream.stopped, timeout_s
            )
            chunk = book.answer(step)
            if chunk is not None:
                book.mark_read(chunk.observation_step)
                return chunk
            if stream.error is not None:
                raise stream.error
            if stream.stopped:
                raise RuntimeClientError(grpc.StatusCode.CANCELLED, "the client was closed")
            state = "connected" if stream.connected else "reconnecting"
            raise RuntimeClientError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no chunk for observation step {step} within {timeout_s:g} s from {self.address} "
                f"({state}, {stream.reconnects} reconnects so far)",
            )

    def infer(
        self,
        images: Mapping[str, np.ndarray],
        state: np.ndarray | None = None,
        *,
        task: str | None = None,
        rtc: RtcPrefix | None = None,
    ) -> Chunk:
        """Sends an observation and blocks for its chunk (at most `timeout_s`)."""
        return self.wait(self.send(images, state, task=task, rtc=rtc))

    def poll_chunk(self) -> Chunk | None:
        """The oldest chunk not yet returned by poll_chunk/wait/infer, or None."""
        with self._cond:
            return self._book.pop_unread()

    def latest_chunk(self) -> Chunk | None:
        """The chunk answering the newest observation so far (read or not)."""
        with self._cond:
            return self._book.latest

    def _observation(
        self,
        images: Mapping[str, np.ndarray],
        state: np.ndarray | None,
        task: str | None,
        rtc: RtcPrefix | None,
    ) -> pb.Observation:
        return pb.Observation(
            timestamp=time.time(),
            images={
                name: numpy_to_image(_checked_frame(name, frame), self.image_encoding) for name, frame in images.items()
            },
            state=numpy_to_tensor(np.asarray(state, np.float32)) if state is not None else None,
            task=task or "",
            rtc=_rtc_message(rtc) if rtc is not None else None,
        )

    # -- what the client has seen ------------------------------------------------------------------------------

    @property
    def metadata(self) -> RuntimeInfo | None:
        return self._stream.metadata

    @property
    def connected(self) -> bool:
        return self._stream.connected

    @property
    def session_id(self) -> str:
        """The requested id, or the one the server assigned (known once an event names it)."""
        return self._stream.session_id

    @property
    def reconnects(self) -> int:
        return self._stream.reconnects

    @property
    def subtask(self) -> tuple[str, int]:
        """(text, version) of the latest subtask; ("", 0) before the planner's first answer."""
        with self._cond:
            return self._subtask

    @property
    def subtask_updates(self) -> list[SubtaskEvent]:
        with self._cond:
            return list(self._subtask_updates)

    def stats(self) -> ClientStats:
        with self._cond:
            return self._latencies.stats(
                reconnects=self._stream.reconnects,
                superseded=self._book.superseded,
                subtask_updates=self._subtask_count,
            )

    def get_metadata(self) -> RuntimeInfo:
        """Unary GetMetadata (no session needed)."""
        return RuntimeInfo.from_proto(self._stream.unary("GetMetadata", pb.MetadataRequest(), self.timeout_s))

    def server_stats(self) -> pb.Stats:
        """The runtime's own histograms and counters (all sessions)."""
        return self._stream.unary("GetStats", pb.StatsRequest(), self.timeout_s)

    # -- events, on the stream's thread ------------------------------------------------------------------------

    def _on_chunk(self, message: pb.ActionChunk) -> None:
        try:
            actions = tensor_to_numpy(message.actions, "chunk.actions").astype(np.float32, copy=False)
        except WireError as err:
            raise RuntimeClientError(grpc.StatusCode.INTERNAL, f"the server sent an unreadable chunk: {err}") from None
        if actions.ndim != 2:
            raise RuntimeClientError(
                grpc.StatusCode.INTERNAL, f"chunk.actions: expected [H, D], got {list(actions.shape)}"
            )
        arrived = time.perf_counter()
        with self._cond:
            chunk = self._book.receive(message, actions, arrived)
            self._latencies.add(chunk)
            if message.subtask and message.subtask_version > self._subtask[1]:
                self._subtask = (message.subtask, message.subtask_version)
            self._cond.notify_all()

    def _on_subtask(self, message: pb.SubtaskUpdate) -> None:
        event = SubtaskEvent(
            text=message.text,
            version=message.version,
            observation_step=message.observation_step,
            decode_ms=message.decode_ms,
            prefill_ms=message.prefill_ms,
            received_at=time.monotonic(),
        )
        with self._cond:
            self._subtask_updates.append(event)
            self._subtask_count += 1
            self._subtask = (event.text, event.version)
            self._cond.notify_all()
