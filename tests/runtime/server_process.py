"""Test harness: a real `robot-runtime serve` process, and a Session stream driven step by step."""

from __future__ import annotations

import contextlib
import pathlib
import queue
import time

import grpc
import numpy as np
import pytest

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.wire import numpy_to_image, numpy_to_tensor
from runtime.launch import serve_process

TASK = "put the red cube in the bowl"


@contextlib.contextmanager
def run_server(checkpoint: pathlib.Path, workdir: pathlib.Path, *extra: str, timeout_s: float = 240.0):
    """A ready `robot-runtime serve --port 0` (log in workdir/serve.log), stopped with SIGTERM afterwards."""
    with serve_process(checkpoint, workdir / "serve.log", *extra, timeout_s=timeout_s) as server:
        yield server


class Stream:
    """A Session stream driven step by step from the test."""

    def __init__(
        self, channel: grpc.Channel, task: str = TASK, session_id: str = "", metadata=(), resume_token: str = ""
    ):
        self._outbox: queue.Queue = queue.Queue()
        opening = pb.SessionOpen(session_id=session_id, task=task, resume_token=resume_token)
        self._events = pb_grpc.RobotRuntimeStub(channel).Session(
            self._requests(opening), timeout=300, metadata=metadata
        )
        self.metadata = next(self._events).metadata
        self.step = 0
        self.subtasks: list[pb.SubtaskUpdate] = []

    def _requests(self, opening: pb.SessionOpen):
        yield pb.SessionRequest(open=opening)
        while (message := self._outbox.get()) is not None:
            yield message

    def send(self, observation: pb.Observation) -> None:
        self._outbox.put(pb.SessionRequest(observation=observation))

    def chunk(self, observation: pb.Observation | None = None) -> pb.ActionChunk:
        self.step += 1
        self.send(observation or good_observation(self.step))
        for event in self._events:
            if event.WhichOneof("kind") == "chunk":
                return event.chunk
            self.subtasks.append(event.subtask)
        raise AssertionError("stream ended without a chunk")

    def error(self, observation: pb.Observation) -> grpc.RpcError:
        self.send(observation)
        with pytest.raises(grpc.RpcError) as info:
            for _ in self._events:
                pass
        return info.value

    def close(self) -> None:
        """Drops the stream, as a lost connection looks to the server: the session stays its owner's for a while."""
        self._events.cancel()
        self._outbox.put(None)

    def finish(self) -> None:
        """Closes the session (SessionClose), half-closes and reads the stream to its end."""
        self._outbox.put(pb.SessionRequest(close=pb.SessionClose()))
        self._outbox.put(None)
        for _ in self._events:
            pass


def good_observation(step: int, encoding: str = "raw") -> pb.Observation:
    rng = np.random.default_rng(step)
    frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return pb.Observation(
        step=step,
        images={"agentview": numpy_to_image(frame, encoding), "wrist": numpy_to_image(frame[::-1], encoding)},
        state=numpy_to_tensor(rng.uniform(-1, 1, 8).astype(np.float32)),
    )


def runtime_stats(channel) -> pb.Stats:
    return pb_grpc.RobotRuntimeStub(channel).GetStats(pb.StatsRequest(), timeout=10)


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
