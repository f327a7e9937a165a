"""The robot client against a real `robot-runtime serve` and a scripted in-process fake, and the action queue.

The real server proves the wire path (encodings, validation, concurrent sessions); the fake makes the
situations the real one cannot produce on demand: a dropped stream, subtask text, a silent server.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
from grpc_serving import serving

from client.action_queue import ActionQueue, RtcPrefix
from client.robot_client import RobotClient, RuntimeClientError
from protos.grpc_server import auth_metadata
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.wire import numpy_to_tensor

TASK = "put the red cube in the bowl"
IMAGE_SIDE = 32


def _images(cameras, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8) for name in cameras}


def _state(dims: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=dims).astype(np.float32)


# -- against the real server -----------------------------------------------------------------------------------


def test_connect_reports_the_runtime_metadata(runtime_server):
    with RobotClient(runtime_server.address, TASK) as client:
        metadata = client.metadata
        assert client.connected
        assert metadata.cameras == ("agentview", "wrist")
        assert metadata.action_dims > 0 and metadata.action_horizon > 0 and metadata.state_dims > 0
        assert metadata.num_denoise_steps > 0 and metadata.version == "robot_runtime.v1"
        assert json.loads(metadata.model_config_json)
        assert client.get_metadata() == metadata


def test_infer_returns_a_chunk_per_observation_with_increasing_steps(runtime_server):
    with RobotClient(runtime_server.address, TASK, session_id="client-raw") as client:
        meta = client.metadata
        chunks = [client.infer(_images(meta.cameras, i), _state(meta.state_dims, i)) for i in range(3)]
        assert [c.observation_step for c in chunks] == [0, 1, 2]
        for chunk in chunks:
            assert chunk.actions.dtype == np.float32
            assert chunk.actions.shape == (meta.action_horizon, meta.action_dims)
            assert np.all(np.isfinite(chunk.actions))
            assert chunk.timings.total_ms > 0 and chunk.round_trip_ms >= chunk.timings.total_ms
        assert client.poll_chunk() is None
        assert client.latest_chunk() is chunks[-1]
        assert client.session_id == "client-raw"

        step = client.send(_images(meta.cameras), _state(meta.state_dims))
        assert client.wait(step).observation_step == step == 3
        stats = client.stats()
        assert stats.chunks == 4 and stats.round_trip.count == 4 and stats.reconnects == 0
        assert 0 < stats.round_trip.p50_ms <= stats.round_trip.p99_ms


@pytest.mark.parametrize("encoding", ["jpeg", "png"])
def test_encoded_images_work(runtime_server, encoding):
    with RobotClient(runtime_server.address, TASK, image_encoding=encoding) as client:
        meta = client.metadata
        chunk = client.infer(_images(meta.cameras), _state(meta.state_dims))
        assert chunk.actions.shape == (meta.action_horizon, meta.action_dims)


def test_an_invalid_observation_raises_invalid_argument_naming_the_field(runtime_server):
    with RobotClient(runtime_server.address, TASK) as client:
        meta = client.metadata
        with pytest.raises(RuntimeClientError) as caught:
            client.infer(_images(meta.cameras), np.zeros(meta.state_dims + 3, np.float32))
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "observation.state" in caught.value.details
        assert client.reconnects == 0
        with pytest.raises(RuntimeClientError):
            client.send(_images(meta.cameras), _state(meta.state_dims))


def test_two_clients_at_once_each_get_their_own_chunks(runtime_server):
    results: dict[str, list] = {}

    def robot(name: str) -> None:
        with RobotClient(runtime_server.address, f"task of {name}", session_id=name) as client:
            meta = client.metadata
            results[name] = [client.infer(_images(meta.cameras, i), _state(meta.state_dims, i)) for i in range(3)]
            results[name + ".session"] = client.session_id

    threads = [threading.Thread(target=robot, args=(name,)) for name in ("two-clients-a", "two-clients-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name in ("two-clients-a", "two-clients-b"):  # ids no other test of the shared runtime holds
        assert [c.observation_step for c in results[name]] == [0, 1, 2]
        assert results[name + ".session"] == name


def test_closing_frees_the_session_id(runtime_server):
    for _ in range(2):
        with RobotClient(runtime_server.address, TASK, session_id="client-reused") as client:
            meta = client.metadata
            assert client.infer(_images(meta.cameras), _state(meta.state_dims)).observation_step == 0


# -- against an in-process fake --------------------------------------------------------------------------------

FAKE_METADATA = pb.RuntimeMetadata(action_dims=7, action_horizon=4, state_dims=8, cameras=["agentview", "wrist"])


class FakeRuntime(pb_grpc.RobotRuntimeServicer):
    """Answers step s with a chunk full of s; scripted drops, silences and subtask updates."""

    def __init__(self, *, drop_at=(), silent_at=(), subtasks=None, token=None, metadata=(FAKE_METADATA,)):
        self.drop_at = set(drop_at)
        self.silent_at = set(silent_at)
        self.subtasks = dict(subtasks or {})
        self.expected_auth = auth_metadata(token)
        self.metadata = list(metadata)
        self.calls = 0
        self.opens: list[pb.SessionOpen] = []
        self.observations: list[pb.Observation] = []

    def Session(self, request_iterator, context):
        self.calls += 1
        if self.expected_auth and self.expected_auth[0] not in tuple(context.invocation_metadata()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        self.opens.append(next(request_iterator).open)
        yield pb.SessionEvent(metadata=self.metadata[min(len(self.opens), len(self.metadata)) - 1])
        version = 0
        for request in request_iterator:
            if request.WhichOneof("kind") == "close":
                return
            observation = request.observation
            self.observations.append(observation)
            if observation.step in self.drop_at:
                self.drop_at.discard(observation.step)
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost (scripted)")
            if observation.step in self.silent_at:
                continue
            if observation.step in self.subtasks:
                version += 1
                text = self.subtasks[observation.step]
                yield pb.SessionEvent(
                    subtask=pb.SubtaskUpdate(text=text, version=version, observation_step=observation.step)
                )
            yield pb.SessionEvent(chunk=self._chunk(observation.step, version))

    def _chunk(self, step: int, version: int) -> pb.ActionChunk:
        actions = np.full((FAKE_METADATA.action_horizon, FAKE_METADATA.action_dims), step, np.float32)
        text = next((t for s, t in sorted(self.subtasks.items()) if s <= step), "") if version else ""
        return pb.ActionChunk(
            observation_step=step,
            actions=numpy_to_tensor(actions),
            subtask=text,
            subtask_version=version,
            timings=pb.Timings(total_ms=1.0),
        )


def _fake_client(address: str, **options) -> RobotClient:
    return RobotClient(address, TASK, **{"session_id": "fake-1", "timeout_s": 5.0, "backoff": (0.05, 0.2), **options})


def _fake_images() -> dict[str, np.ndarray]:
    return _images(FAKE_METADATA.cameras)


def test_reconnects_after_the_stream_drops_and_resends_the_pending_observation():
    fake = FakeRuntime(drop_at={1})
    with serving(fake) as address, _fake_client(address) as client:
        assert client.infer(_fake_images()).observation_step == 0
        chunk = client.infer(_fake_images(), task="a new task")
        assert chunk.observation_step == 1 and np.all(chunk.actions == 1.0)
        assert client.infer(_fake_images()).observation_step == 2
        assert client.reconnects == client.stats().reconnects == 1
    assert [(o.session_id, o.task) for o in fake.opens] == [("fake-1", TASK), ("fake-1", "a new task")]
    assert [o.step for o in fake.observations] == [0, 1, 1, 2]


def test_reconnects_when_the_server_goes_away_and_comes_back_on_the_same_port():
    first = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_RobotRuntimeServicer_to_server(FakeRuntime(), first)
    port = first.add_insecure_port("127.0.0.1:0")
    first.start()
    with _fake_client(f"127.0.0.1:{port}") as client:
        assert client.infer(_fake_images()).observation_step == 0
        first.stop(grace=None).wait()
        second = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_RobotRuntimeServicer_to_server(FakeRuntime(), second)
        assert second.add_insecure_port(f"127.0.0.1:{port}") == port
        second.start()
        try:
            assert client.infer(_fake_images()).observation_step == 1
            assert client.reconnects == 1
        finally:
            second.stop(grace=None)


def test_subtask_updates_are_recorded_with_their_observation_step():
    fake = FakeRuntime(subtasks={1: "pick up the red cube", 3: "place it in the bowl"})
    with serving(fake) as address, _fake_client(address) as client:
        assert client.subtask == ("", 0)
        chunks = [client.infer(_fake_images()) for _ in range(4)]
        assert client.subtask == ("place it in the bowl", 2)
        updates = client.subtask_updates
        assert [(u.text, u.version, u.observation_step) for u in updates] == [
            ("pick up the red cube", 1, 1),
            ("place it in the bowl", 2, 3),
        ]
        assert [c.subtask_version for c in chunks] == [0, 1, 1, 2]
        assert client.stats().subtask_updates == 2


def test_rtc_input_from_the_action_queue_goes_on_the_wire():
    fake = FakeRuntime()
    queue = ActionQueue("rtc", inference_delay=2)
    with serving(fake) as address, _fake_client(address) as client:
        for key in range(2):
            rtc = queue.request(key)
            queue.receive(key, client.infer(_fake_images(), rtc=rtc).actions)
            queue.pop()
    first, second = fake.observations
    assert not first.HasField("rtc")
    assert second.rtc.inference_delay == 2
    assert list(second.rtc.queued_actions.shape) == [FAKE_METADATA.action_horizon - 1, FAKE_METADATA.action_dims]
    assert second.rtc.queued_actions.dtype == "float32"


def test_a_missing_chunk_times_out_with_a_clear_error():
    fake = FakeRuntime(silent_at={0})
    with serving(fake) as address, _fake_client(address, timeout_s=0.3) as client:
        with pytest.raises(RuntimeClientError) as caught:
            client.infer(_fake_images())
        assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no chunk for observation step 0 within 0.3 s" in caught.value.details
        assert client.infer(_fake_images()).observation_step == 1


def test_async_use_polls_chunks_in_order():
    with serving(FakeRuntime()) as address, _fake_client(address) as client:
        steps = [client.send(_fake_images()) for _ in range(3)]
        assert client.wait(steps[-1]).observation_step == 2
        assert client.poll_chunk() is None
        step = client.send(_fake_images())
        client.wait(step)
        assert client.latest_chunk().observation_step == step


def test_unauthenticated_is_raised_without_retrying():
    fake = FakeRuntime(token="secret")
    with serving(fake) as address:
        with pytest.raises(RuntimeClientError) as caught, _fake_client(address, token="wrong"):
            pass
        assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED and "bearer token" in caught.value.details
        assert fake.calls == 1
        with _fake_client(address, token="secret") as client:
            assert client.infer(_fake_images()).observation_step == 0


def test_a_changed_runtime_interface_on_reconnect_is_an_error():
    changed = pb.RuntimeMetadata(action_dims=6, action_horizon=4, state_dims=8, cameras=["agentview", "wrist"])
    fake = FakeRuntime(drop_at={0}, metadata=(FAKE_METADATA, changed))
    with serving(fake) as address, _fake_client(address) as client:
        with pytest.raises(RuntimeClientError) as caught:
            client.infer(_fake_images())
        assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION and "changed" in caught.value.details


def test_no_server_gives_up_after_the_allowed_attempts():
    with serving(FakeRuntime()) as address:
        pass
    client = _fake_client(address, max_reconnects=2)
    with pytest.raises(RuntimeClientError) as caught:
        client.connect()
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE and "gave up after 2" in caught.value.details
    client.close()


def test_frames_that_are_not_uint8_rgb_are_rejected_before_sending():
    with serving(FakeRuntime()) as address, _fake_client(address) as client, pytest.raises(ValueError, match="wrist"):
        client.send({"agentview": np.zeros((8, 8, 3), np.uint8), "wrist": np.zeros((8, 8, 3), np.float32)})


# -- ActionQueue ---------------------------------------------------------------------------------------------


def _chunk(horizon: int = 6, dims: int = 2, start: float = 0.0) -> np.ndarray:
    return start + np.arange(horizon, dtype=np.float32)[:, None].repeat(dims, axis=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_replace_skips_the_actions_that_are_already_in_the_past():
    queue = ActionQueue("replace")
    assert queue.needs_chunk() and queue.pop() is None
    assert queue.request(0) is None
    assert not queue.needs_chunk() and queue.pop() is None
    applied = queue.receive(0, _chunk())
    assert (applied.skipped, applied.queued) == (1, 5)
    queue.request(1)
    assert [queue.pop()[0] for _ in range(2)] == [1.0, 2.0]
    applied = queue.receive(1, _chunk(start=100.0))
    assert (applied.skipped, applied.queued) == (2, 4)
    np.testing.assert_array_equal(queue.queued[:, 0], [102.0, 103.0, 104.0, 105.0])
    stats = queue.stats()
    assert (stats.chunks, stats.actions_skipped, stats.starved_steps, stats.actions_popped) == (2, 3, 2, 2)


def test_a_chunk_older_than_its_whole_horizon_leaves_the_queue_empty():
    queue = ActionQueue("replace")
    queue.request(0)
    for _ in range(8):
        queue.pop()
    assert queue.receive(0, _chunk(horizon=6)).queued == 0
    assert queue.needs_chunk()


def test_stale_and_unknown_chunks():
    queue = ActionQueue("replace")
    queue.request(0)
    queue.request(1)
    queue.receive(1, _chunk(start=10.0))
    assert queue.receive(0, _chunk()).stale
    assert queue.queued[0, 0] == 10.0 and queue.stats().stale_chunks == 1
    with pytest.raises(ValueError, match="no request with key 5"):
        queue.receive(5, _chunk())
    with pytest.raises(ValueError, match="must be new"):
        queue.request(1)
    with pytest.raises(ValueError, match="mode"):
        ActionQueue("blend")


def test_needs_chunk_below_the_refill_level_and_every_replan_steps():
    low = ActionQueue("replace", refill_below=3)
    low.request(0)
    low.receive(0, _chunk(horizon=5))
    popped = 0
    while not low.needs_chunk():
        low.pop()
        popped += 1
    assert popped == 3 and len(low) == 2

    periodic = ActionQueue("replace", replan_steps=2)
    periodic.request(0)
    periodic.receive(0, _chunk(horizon=10))
    assert not periodic.needs_chunk()
    periodic.pop()
    assert not periodic.needs_chunk()
    periodic.pop()
    assert periodic.needs_chunk()
    periodic.request(1)
    assert not periodic.needs_chunk()
    periodic.abandon_requests()
    assert periodic.needs_chunk() and not periodic.in_flight


def test_rtc_reports_the_queued_actions_and_the_measured_delay():
    queue = ActionQueue("rtc")
    assert queue.request(0) is None
    queue.pop()
    queue.pop()
    queue.receive(0, _chunk(horizon=8))
    assert queue.inference_delay() == 2
    rtc = queue.request(1)
    assert isinstance(rtc, RtcPrefix) and rtc.inference_delay == 2
    np.testing.assert_array_equal(rtc.queued_actions, queue.queued)
    assert rtc.queued_actions.shape == (6, 2) and rtc.queued_actions[0, 0] == 2.0
    queue.pop()
    applied = queue.receive(1, _chunk(horizon=8, start=50.0))
    assert (applied.skipped, queue.queued[0, 0]) == (1, 51.0)
    assert queue.inference_delay() == 2


def test_rtc_delay_from_latency_and_control_rate_or_given():
    clock = FakeClock()
    queue = ActionQueue("rtc", control_hz=50.0, clock=clock)
    queue.request(0)
    clock.now = 0.065
    queue.receive(0, _chunk())
    assert queue.inference_delay() == 4
    assert ActionQueue("rtc", inference_delay=3, control_hz=50.0).inference_delay() == 3
