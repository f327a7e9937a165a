"""The robot client's connection: the channel and the `Session` stream, owned by a background thread that
reads every event and reopens the stream, with backoff, when it drops.

It shares the client's lock (a `threading.Condition`), so that what an event changes (the client's chunks, or
the connection state here) and the waiters it wakes stay consistent.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import queue
import random
import threading
from collections.abc import Callable, Iterator

import grpc
from google.protobuf.message import Message

from protos.grpc_server import auth_metadata, channel_options
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc

log = logging.getLogger("client.robot_client")  # the logger users configure for the whole client

SESSION_LIFETIME_S = 24 * 3600.0
CLOSE_GRACE_S = 2.0
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
class _StreamEnd:
    """How one session stream ended: `error` None means the server closed it without being asked."""

    error: RuntimeClientError | None
    opened: bool
    fatal: bool = False


def _request_stream(requests: queue.SimpleQueue) -> Iterator[pb.SessionRequest]:
    while (request := requests.get()) is not None:
        yield request


class SessionStream:
    """One session's stream and its connection state. The client's callbacks run on the stream's thread:
    `resend` (under the lock) names the observation to send again when the stream opens, `on_chunk` and
    `on_subtask` take their events (raising `RuntimeClientError` ends the session), `on_failure` (under the lock)
    runs when the session is given up."""

    def __init__(
        self,
        address: str,
        task: str,
        cond: threading.Condition,
        *,
        session_id: str,
        token: str | None,
        tls_ca: str | os.PathLike | None,
        reconnect: bool,
        backoff: tuple[float, float],
        max_reconnects: int,
        resend: Callable[[], pb.Observation | None],
        on_chunk: Callable[[pb.ActionChunk], None],
        on_subtask: Callable[[pb.SubtaskUpdate], None],
        on_failure: Callable[[], None],
    ):
        self.address = address
        self.task = task
        self.reconnect = reconnect
        self.backoff = backoff
        self.max_reconnects = max_reconnects
        self.session_id = session_id
        self._resume_token = ""
        self._tls_ca = pathlib.Path(tls_ca) if tls_ca is not None else None
        self._call_metadata = auth_metadata(token)
        self._resend, self._on_chunk, self._on_subtask, self._on_failure = resend, on_chunk, on_subtask, on_failure

        self._cond = cond
        self._stop = threading.Event()
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.RobotRuntimeStub | None = None
        self._thread: threading.Thread | None = None
        self._call = None
        self._requests: queue.SimpleQueue | None = None
        self.connected = False
        self._opened_this_run = False
        self.error: RuntimeClientError | None = None
        self.metadata: RuntimeInfo | None = None
        self.reconnects = 0

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def open(self, timeout_s: float) -> RuntimeInfo:
        """Opens the session (retrying like a reconnect) → the runtime's metadata; raises after `timeout_s`."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            connected = self._cond.wait_for(lambda: self.connected or self.error is not None, timeout_s)
            error, metadata = self.error, self.metadata
        if error is not None:
            raise error
        if not connected:
            self.close()
            raise RuntimeClientError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no session with the runtime at {self.address} within {timeout_s:g} s",
            )
        assert metadata is not None  # _on_metadata sets it before connected
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

    def raise_unless_running(self) -> None:
        """Under the lock: the session failed, or was never opened or closed since."""
        if self.error is not None:
            raise self.error
        if self._thread is None or self._stop.is_set():
            raise RuntimeClientError(
                grpc.StatusCode.FAILED_PRECONDITION, "the session is not open; call connect() first"
            )

    def send(self, observation: pb.Observation) -> None:
        """Under the lock: onto the open stream; while it reopens, `resend` hands the newest one over instead."""
        if self._requests is not None:
            self._requests.put(pb.SessionRequest(observation=observation))

    def unary(self, method: str, request: Message, timeout_s: float) -> Message:
        """A unary call on the session's channel (opened for it if need be; no session needed)."""
        with self._cond:
            if self._channel is None:
                self._channel = self._open_channel()
                self._stub = pb_grpc.RobotRuntimeStub(self._channel)
            stub = self._stub
        try:
            return getattr(stub, method)(request, timeout=timeout_s, metadata=self._call_metadata)
        except grpc.RpcError as err:
            raise RuntimeClientError.from_rpc(err) from None

    def _start(self) -> None:
        if self._channel is None:
            self._channel = self._open_channel()
            self._stub = pb_grpc.RobotRuntimeStub(self._channel)
        self._stop.clear()
        self.error = None
        self.connected = False
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
            opening = pb.SessionOpen(session_id=self.session_id, task=self.task, resume_token=self._resume_token)
            requests.put(pb.SessionRequest(open=opening))
            resend = self._resend()
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
                self._requests, self._call, self.connected = None, None, False
                self._cond.notify_all()

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
            self.error = error
            self._on_failure()
            self._cond.notify_all()

    def _on_event(self, event: pb.SessionEvent) -> bool:
        """Hands one server event on → whether it opened the session."""
        kind = event.WhichOneof("kind")
        if kind == "metadata":
            self._on_metadata(event.metadata)
            return True
        if kind == "chunk":
            self._on_chunk(event.chunk)
            self._adopt_session_id(event.chunk.session_id)
        elif kind == "subtask":
            self._on_subtask(event.subtask)
            self._adopt_session_id(event.subtask.session_id)
        return False

    def _adopt_session_id(self, session_id: str) -> None:
        """The id the server assigned, when the client asked for none; reopening uses it."""
        if session_id:
            with self._cond:
                self.session_id = session_id

    def _on_metadata(self, message: pb.RuntimeMetadata) -> None:
        metadata = RuntimeInfo.from_proto(message)
        with self._cond:
            previous = self.metadata
            if previous is not None and previous.interface() != metadata.interface():
                raise RuntimeClientError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the runtime at {self.address} changed (action_dims, horizon, state_dims, cameras) from "
                    f"{previous.interface()} to {metadata.interface()}",
                )
            if self._opened_this_run:
                self.reconnects += 1
            self._opened_this_run = True
            self.metadata = metadata
            if message.session_id:
                self.session_id, self._resume_token = message.session_id, message.resume_token
            self.connected = True
            self._cond.notify_all()
