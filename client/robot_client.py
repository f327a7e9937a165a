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
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import pathlib
import queue
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Self

import grpc
import numpy as np
from google.protobuf.message import Message

from client.action_queue import RtcPrefix
from protos.grpc_server import auth_metadata, channel_options
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.wire import WireError, numpy_to_image, numpy_to_tensor, tensor_to_numpy

log = logging.getLogger(__name__)

IMAGE_ENCODINGS = ("raw", "jpeg", "png")
SESSION_LIFETIME_S = 24 * 3600.0
CLOSE_GRACE_S = 2.0
RECENT_SAMPLES = 2048
KEPT_CHUNKS = 64
SUBTASK_HISTORY = 10_000
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED})


class RuntimeClientError(Exception):
    """A failed session or call: `code` is the gRPC status, `details` the server's (or client's) message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> RuntimeClientError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")


@dataclasses.dataclass(frozen=True)
class RuntimeInfo:
    """The runtime's interface as the server's `RuntimeMetadata` describes it (the session's own id and resume
    token stay inside the client)."""

    action_dims: int
    action_horizon: int
    state_dims: int
    cameras: tuple[str, ...]
    num_denoise_steps: int
    version: str
    model_config_json: str = dataclasses.field(repr=False)

    @classmethod
    def from_proto(cls, message: pb.RuntimeMetadata) -> RuntimeInfo:
        return cls(
            action_dims=message.action_dims,
            action_horizon=message.action_horizon,
            state_dims=message.state_dims,
            cameras=tuple(message.cameras),
            num_denoise_steps=message.num_denoise_steps,
            version=message.version,
            model_config_json=message.model_config_json,
        )

    def interface(self) -> tuple:
        """What the robot's code depends on; it must not change across a reconnect."""
        return (self.action_dims, self.action_horizon, self.state_dims, self.cameras)


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
class SubtaskEvent:
    """A planner update as received; `observation_step` is the observation it was decoded from."""

    text: str
    version: int
    observation_step: int
    decode_ms: float
    prefill_ms: float
    received_at: float


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float


@dataclasses.dataclass(frozen=True)
class ClientStats:
    """Percentiles cover the most recent `RECENT_SAMPLES` chunks; counts cover the whole client lifetime."""

    chunks: int
    round_trip: LatencySummary
    server_total: LatencySummary
    server_queue: LatencySummary
    server_prefill: LatencySummary
    server_denoise: LatencySummary
    reconnects: int
    superseded: int
    subtask_updates: int


class _Latencies:
    def __init__(self) -> None:
        self.count = 0
        self.recent: collections.deque[float] = collections.deque(maxlen=RECENT_SAMPLES)

    def add(self, value_ms: float) -> None:
        self.count += 1
        self.recent.append(value_ms)

    def summary(self) -> LatencySummary:
        if not self.recent:
            return LatencySummary(self.count, math.nan, math.nan)
        p50, p99 = np.percentile(np.fromiter(self.recent, float), (50, 99))
        return LatencySummary(self.count, float(p50), float(p99))


@dataclasses.dataclass(frozen=True)
class _Pending:
    observation: pb.Observation
    sent_at: float


@dataclasses.dataclass(frozen=True)
class _StreamEnd:
    """How one session stream ended: `error` None means the server closed it without being asked."""

    error: RuntimeClientError | None
    opened: bool
    fatal: bool = False


def _request_stream(requests: queue.SimpleQueue) -> Iterator[pb.SessionRequest]:
    while (request := requests.get()) is not None:
        yield request


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
        self.address = address
        self.image_encoding = image_encoding
        self.timeout_s = timeout_s
        self.reconnect = reconnect
        self.backoff = backoff
        self.max_reconnects = max_reconnects
        self._tls_ca = pathlib.Path(tls_ca) if tls_ca is not None else None
        self._call_metadata = auth_metadata(token)
        self._session_id = session_id
        self._resume_token = ""
        self._task = task

        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.RobotRuntimeStub | None = None
        self._thread: threading.Thread | None = None
        self._call = None
        self._requests: queue.SimpleQueue | None = None
        self._connected = False
        self._opened_this_run = False
        self._error: RuntimeClientError | None = None
        self._metadata: RuntimeInfo | None = None

        self._next_step = 0
        self._pending: dict[int, _Pending] = {}
        self._by_step: collections.OrderedDict[int, Chunk] = collections.OrderedDict()
        self._unread: collections.deque[Chunk] = collections.deque(maxlen=KEPT_CHUNKS)
        self._latest: Chunk | None = None
        self._subtask: tuple[str, int] = ("", 0)
        self._subtask_updates: collections.deque[SubtaskEvent] = collections.deque(maxlen=SUBTASK_HISTORY)

        self._round_trip = _Latencies()
        self._server = {name: _Latencies() for name in ("total", "queue", "prefill", "denoise")}
        self._reconnects = 0
        self._superseded = 0
        self._subtask_count = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def connect(self) -> RuntimeInfo:
        """Opens the session (retrying like a reconnect) → the runtime's metadata; raises after `timeout_s`."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            connected = self._cond.wait_for(lambda: self._connected or self._error is not None, self.timeout_s)
            error, metadata = self._error, self._metadata
        if error is not None:
            raise error
        if not connected:
            self.close()
            raise RuntimeClientError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no session with the runtime at {self.address} within {self.timeout_s:g} s",
            )
        assert metadata is not None  # _on_metadata sets it before _connected
        return metadata

    def close(self) -> None:
        """Ends the session: says so (SessionClose, which frees the id at once) and half-closes, so the server
        answers what is pending; cancels after a short grace."""
        with self._cond:
            self._stop.set()
            requests, call, thread = self._requests, self._call, self._thread
            self._cond.notify_all()
        if requests is not None:
            requests.put(pb.SessionRequest(close=pb.SessionClose()))
            requests.put(None)
        if thread is not None:
            thread.join(CLOSE_GRACE_S)
            if thread.is_alive() and call is not None:
                call.cancel()
                thread.join(CLOSE_GRACE_S)
        with self._cond:
            self._thread = None
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None

    def _start(self) -> None:
        if self._channel is None:
            self._channel = self._open_channel()
            self._stub = pb_grpc.RobotRuntimeStub(self._channel)
        self._stop.clear()
        self._error = None
        self._connected = False
        self._opened_this_run = False
        self._thread = threading.Thread(target=self._run, name=f"robot-client-{self.address}", daemon=True)
        self._thread.start()

    def _open_channel(self) -> grpc.Channel:
        """Channel reconnect backoff follows ours, so a server that is back is found by the next attempt."""
        initial_ms, maximum_ms = (int(seconds * 1000) for seconds in self.backoff)
        options = [
            *channel_options(),
            ("grpc.initial_reconnect_backoff_ms", initial_ms),
            ("grpc.min_reconnect_backoff_ms", initial_ms),
            ("grpc.max_reconnect_backoff_ms", maximum_ms),
        ]
        if self._tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(self._tls_ca.read_bytes())
            return grpc.secure_channel(self.address, credentials, options=options)
        return grpc.insecure_channel(self.address, options=options)

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
            self._raise_unless_running()
            step = self._next_step
            self._next_step += 1
            observation.step = step
            if task:
                self._task = task
            self._pending[step] = _Pending(observation, time.perf_counter())
            if self._requests is not None:
                self._requests.put(pb.SessionRequest(observation=observation))
        return step

    def wait(self, step: int, timeout_s: float | None = None) -> Chunk:
        """Blocks for the chunk of `step`, or a newer one if the server replaced that observation."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        with self._cond:
            self._cond.wait_for(
                lambda: self._answer(step) is not None or self._error is not None or self._stop.is_set(), timeout_s
            )
            chunk = self._answer(step)
            if chunk is not None:
                self._mark_read(chunk.observation_step)
                return chunk
            if self._error is not None:
                raise self._error
            if self._stop.is_set():
                raise RuntimeClientError(grpc.StatusCode.CANCELLED, "the client was closed")
            state = "connected" if self._connected else "reconnecting"
            raise RuntimeClientError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no chunk for observation step {step} within {timeout_s:g} s from {self.address} "
                f"({state}, {self._reconnects} reconnects so far)",
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
            return self._unread.popleft() if self._unread else None

    def latest_chunk(self) -> Chunk | None:
        """The chunk answering the newest observation so far (read or not)."""
        with self._cond:
            return self._latest

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

    def _raise_unless_running(self) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None or self._stop.is_set():
            raise RuntimeClientError(
                grpc.StatusCode.FAILED_PRECONDITION, "the session is not open; call connect() first"
            )

    def _answer(self, step: int) -> Chunk | None:
        chunk = self._by_step.get(step)
        if chunk is None and self._latest is not None and self._latest.observation_step >= step:
            return self._latest
        return chunk

    def _mark_read(self, step: int) -> None:
        while self._unread and self._unread[0].observation_step <= step:
            self._unread.popleft()

    # -- what the client has seen ------------------------------------------------------------------------------

    @property
    def metadata(self) -> RuntimeInfo | None:
        return self._metadata

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def session_id(self) -> str:
        """The requested id, or the one the server assigned (known once an event names it)."""
        return self._session_id

    @property
    def reconnects(self) -> int:
        return self._reconnects

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
            return ClientStats(
                chunks=self._server["total"].count,
                round_trip=self._round_trip.summary(),
                server_total=self._server["total"].summary(),
                server_queue=self._server["queue"].summary(),
                server_prefill=self._server["prefill"].summary(),
                server_denoise=self._server["denoise"].summary(),
                reconnects=self._reconnects,
                superseded=self._superseded,
                subtask_updates=self._subtask_count,
            )

    def get_metadata(self) -> RuntimeInfo:
        """Unary GetMetadata (no session needed)."""
        return RuntimeInfo.from_proto(self._unary("GetMetadata", pb.MetadataRequest()))

    def server_stats(self) -> pb.Stats:
        """The runtime's own histograms and counters (all sessions)."""
        return self._unary("GetStats", pb.StatsRequest())

    def _unary(self, method: str, request: Message) -> Message:
        with self._cond:
            if self._channel is None:
                self._channel = self._open_channel()
                self._stub = pb_grpc.RobotRuntimeStub(self._channel)
            stub = self._stub
        try:
            return getattr(stub, method)(request, timeout=self.timeout_s, metadata=self._call_metadata)
        except grpc.RpcError as err:
            raise RuntimeClientError.from_rpc(err) from None

    # -- the background thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            end = self._stream_once()
            if self._stop.is_set():
                return
            failures = 0 if end.opened else failures
            if self._retryable(end) and failures < self.max_reconnects:
                failures += 1
                delay = min(self.backoff[1], self.backoff[0] * 2 ** (failures - 1)) * random.uniform(0.75, 1.0)
                reason = end.error or "the server ended the stream"
                log.warning(
                    "session stream to %s lost (%s); reopening in %.2f s (%d/%d)",
                    self.address,
                    reason,
                    delay,
                    failures,
                    self.max_reconnects,
                )
                self._stop.wait(delay)
                continue
            self._fail(self._final_error(end, failures))
            return

    def _stream_once(self) -> _StreamEnd:
        requests: queue.SimpleQueue = queue.SimpleQueue()
        with self._cond:
            if self._stop.is_set():
                return _StreamEnd(None, opened=False)
            opening = pb.SessionOpen(session_id=self._session_id, task=self._task, resume_token=self._resume_token)
            requests.put(pb.SessionRequest(open=opening))
            resend = self._newest_pending()
            if resend is not None:
                requests.put(pb.SessionRequest(observation=resend))
            assert self._stub is not None  # _start() made it; close() drops it only after setting _stop
            call = self._stub.Session(
                _request_stream(requests),
                timeout=SESSION_LIFETIME_S,
                metadata=self._call_metadata,
                wait_for_ready=False,
            )
            self._requests, self._call = requests, call
        opened = False
        try:
            for event in call:
                opened = self._on_event(event) or opened
            return _StreamEnd(None, opened)
        except grpc.RpcError as err:
            return _StreamEnd(RuntimeClientError.from_rpc(err), opened)
        except RuntimeClientError as err:
            call.cancel()
            return _StreamEnd(err, opened, fatal=True)
        finally:
            requests.put(None)
            with self._cond:
                self._requests, self._call, self._connected = None, None, False
                self._cond.notify_all()

    def _newest_pending(self) -> pb.Observation | None:
        """Only the newest unanswered observation is worth sending again; older ones count as superseded."""
        if not self._pending:
            return None
        newest = max(self._pending)
        self._superseded += len(self._pending) - 1
        self._pending = {newest: self._pending[newest]}
        return self._pending[newest].observation

    def _retryable(self, end: _StreamEnd) -> bool:
        if not self.reconnect or end.fatal:
            return False
        if end.error is None or end.error.code in _RETRYABLE:
            return True
        # The server may not have noticed the old stream's loss yet and still holds our session_id.
        return end.error.code == grpc.StatusCode.ALREADY_EXISTS and self._opened_this_run

    def _final_error(self, end: _StreamEnd, failures: int) -> RuntimeClientError:
        error = end.error or RuntimeClientError(grpc.StatusCode.UNAVAILABLE, "the server ended the session stream")
        if self._retryable(end):
            return RuntimeClientError(error.code, f"gave up after {failures} reconnect attempts: {error.details}")
        return error

    def _fail(self, error: RuntimeClientError) -> None:
        with self._cond:
            self._error = error
            self._pending.clear()
            self._cond.notify_all()

    def _on_event(self, event: pb.SessionEvent) -> bool:
        """Records one server event → whether it opened the session."""
        kind = event.WhichOneof("kind")
        if kind == "metadata":
            self._on_metadata(event.metadata)
            return True
        if kind == "chunk":
            self._on_chunk(event.chunk)
        elif kind == "subtask":
            self._on_subtask(event.subtask)
        return False

    def _on_metadata(self, message: pb.RuntimeMetadata) -> None:
        metadata = RuntimeInfo.from_proto(message)
        with self._cond:
            previous = self._metadata
            if previous is not None and previous.interface() != metadata.interface():
                raise RuntimeClientError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the runtime at {self.address} changed (action_dims, horizon, state_dims, cameras) from "
                    f"{previous.interface()} to {metadata.interface()}",
                )
            if self._opened_this_run:
                self._reconnects += 1
            self._opened_this_run = True
            self._metadata = metadata
            if message.session_id:
                self._session_id, self._resume_token = message.session_id, message.resume_token
            self._connected = True
            self._cond.notify_all()

    def _on_chunk(self, message: pb.ActionChunk) -> None:
        try:
            actions = tensor_to_numpy(message.actions, "chunk.actions").astype(np.float32, copy=False)
        except WireError as err:
            raise RuntimeClientError(grpc.StatusCode.INTERNAL, f"the server sent an unreadable chunk: {err}") from None
        if actions.ndim != 2:
            raise RuntimeClientError(
                grpc.StatusCode.INTERNAL, f"chunk.actions: expected [H, D], got {list(actions.shape)}"
            )
        now = time.perf_counter()
        step = message.observation_step
        t = message.timings
        with self._cond:
            pending = self._pending.pop(step, None)
            older = [s for s in self._pending if s < step]
            for s in older:
                del self._pending[s]
            self._superseded += len(older)
            chunk = Chunk(
                observation_step=step,
                actions=actions,
                subtask=message.subtask,
                subtask_version=message.subtask_version,
                timings=ServerTimings(t.queue_ms, t.prefill_ms, t.denoise_ms, t.total_ms),
                round_trip_ms=(now - pending.sent_at) * 1e3 if pending is not None else math.nan,
                received_at=time.monotonic(),
            )
            self._record(chunk)
            if message.session_id:
                self._session_id = message.session_id
            if message.subtask and message.subtask_version > self._subtask[1]:
                self._subtask = (message.subtask, message.subtask_version)
            self._cond.notify_all()

    def _record(self, chunk: Chunk) -> None:
        if not math.isnan(chunk.round_trip_ms):
            self._round_trip.add(chunk.round_trip_ms)
        for name in self._server:
            self._server[name].add(getattr(chunk.timings, f"{name}_ms"))
        self._by_step[chunk.observation_step] = chunk
        while len(self._by_step) > KEPT_CHUNKS:
            self._by_step.popitem(last=False)
        self._unread.append(chunk)
        if self._latest is None or chunk.observation_step >= self._latest.observation_step:
            self._latest = chunk

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
            if message.session_id:
                self._session_id = message.session_id
            self._cond.notify_all()
