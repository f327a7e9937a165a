"""End to end over real loopback sockets: `robot-runtime serve` with its planner process, on a random checkpoint."""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import signal
import subprocess
import time

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_process import Stream, good_observation, run_server, runtime_stats, wait_until

from app.cli import main as cli_main
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.wire import numpy_to_image, numpy_to_tensor, tensor_to_numpy


@pytest.fixture(scope="module")
def channel(runtime_server):
    with grpc.insecure_channel(runtime_server.address) as ch:
        yield ch


def test_two_concurrent_sessions_stream_their_own_chunks(channel):
    baseline = runtime_stats(channel).counters["sessions_open"]

    def drive(name: str) -> list[tuple[str, int, tuple[int, ...]]]:
        stream = Stream(channel, session_id=name)
        try:
            assert stream.metadata.session_id == name
            return [
                (c.session_id, c.observation_step, tuple(tensor_to_numpy(c.actions, "a").shape))
                for c in (stream.chunk() for _ in range(5))
            ]
        finally:
            stream.close()

    names = ["robot-a", "robot-b"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(drive, names))
    for name, result in zip(names, results, strict=True):
        assert result == [(name, step, (10, 8)) for step in range(1, 6)]  # every chunk names its own session
    wait_until(lambda: runtime_stats(channel).counters["sessions_open"] == baseline, 10, "both sessions to close")


def test_metadata_health_and_reflection(channel):
    meta = pb_grpc.RobotRuntimeStub(channel).GetMetadata(pb.MetadataRequest(), timeout=10)
    assert (meta.action_dims, meta.action_horizon, meta.state_dims) == (8, 10, 8)
    assert list(meta.cameras) == ["agentview", "wrist"]
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    [reply] = list(
        reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    )
    names = {s.name for s in reply.list_services_response.service}
    assert "robot_runtime.v1.RobotRuntime" in names and "grpc.health.v1.Health" in names


def _planner_health(channel) -> int:
    request = health_pb2.HealthCheckRequest(service="robot_runtime.v1.Planner")
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def test_plan_against_the_runtime_port_reaches_its_planner(runtime_server, channel, tmp_path, capsys):
    wait_until(lambda: _planner_health(channel) == health_pb2.HealthCheckResponse.SERVING, 30, "the planner's health")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    code = cli_main(
        [
            "plan",
            "--server",
            runtime_server.address,
            "--image",
            f"base_0_rgb={image}",
            "--task",
            "put the red cube in the bowl",
            "--max-tokens",
            "4",
            "--json",
        ]
    )
    assert code == 0
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(reply["tokens"]) >= 1
    with pytest.raises(grpc.RpcError) as info:
        list(pb_grpc.PlannerStub(channel).Link(iter([pb.PlanRequest()]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_dropped_session_is_freed_and_only_its_owner_can_resume_it(channel):
    baseline = runtime_stats(channel).counters["sessions_open"]
    stream = Stream(channel, session_id="leaving")
    stream.chunk()
    assert runtime_stats(channel).counters["sessions_open"] == baseline + 1
    stream.close()
    wait_until(lambda: runtime_stats(channel).counters["sessions_open"] == baseline, 10, "the session to be freed")
    with pytest.raises(grpc.RpcError) as stranger:
        Stream(channel, session_id="leaving")
    assert stranger.value.code() == grpc.StatusCode.ALREADY_EXISTS and "resume_token" in stranger.value.details()
    again = Stream(channel, session_id="leaving", resume_token=stream.metadata.resume_token)
    again.step = stream.step
    assert again.chunk().observation_step == 2
    again.finish()
    fresh = Stream(channel, session_id="leaving")  # a finished session frees its id at once
    assert fresh.chunk().observation_step == 1
    fresh.close()


def test_a_stranger_cannot_take_over_or_end_a_live_session(channel):
    owner = Stream(channel)
    owner.chunk()
    session_id = owner.metadata.session_id
    assert len(session_id) == 16 and len(owner.metadata.resume_token) >= 32
    for token in ("", "not-the-token"):
        with pytest.raises(grpc.RpcError) as stranger:
            Stream(channel, session_id=session_id, resume_token=token)
        assert stranger.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert owner.chunk().observation_step == 2

    successor = Stream(channel, session_id=session_id, resume_token=owner.metadata.resume_token)
    successor.step = owner.step
    assert successor.chunk().observation_step == 3
    err = owner.error(good_observation(9))
    assert err.code() == grpc.StatusCode.ABORTED and "reopened" in err.details()
    successor.close()


def with_state(step: int, state: pb.Tensor) -> pb.Observation:
    obs = good_observation(step)
    obs.state.CopyFrom(state)
    return obs


def with_images(step: int, images: dict[str, pb.Image]) -> pb.Observation:
    obs = good_observation(step)
    obs.images.clear()
    for name, image in images.items():
        obs.images[name].CopyFrom(image)
    return obs


SMALL = numpy_to_image(np.zeros((8, 8, 3), np.uint8))

BAD_INPUTS = {
    "state dtype": (lambda s: with_state(s, numpy_to_tensor(np.zeros(8, np.int32))), "observation.state"),
    "state shape": (lambda s: with_state(s, numpy_to_tensor(np.zeros(7, np.float32))), "observation.state"),
    "NaN state": (lambda s: with_state(s, numpy_to_tensor(np.full(8, np.nan, np.float32))), "NaN"),
    "truncated tensor": (
        lambda s: with_state(s, pb.Tensor(dtype="float32", shape=[8], data=b"\0" * 7)),
        "observation.state",
    ),
    "undecodable image": (
        lambda s: with_images(s, {"agentview": pb.Image(encoding=pb.Image.JPEG, data=b"not a jpeg"), "wrist": SMALL}),
        "observation.images['agentview']",
    ),
    "raw image size": (
        lambda s: with_images(
            s, {"agentview": pb.Image(encoding=pb.Image.RAW_RGB8, shape=[4, 4, 3], data=b"\0" * 5), "wrist": SMALL}
        ),
        "observation.images['agentview']",
    ),
    "unknown camera": (
        lambda s: with_images(s, {"agentview": SMALL, "wrist": SMALL, "top": SMALL}),
        "observation.images['top']",
    ),
    "missing camera": (lambda s: with_images(s, {"agentview": SMALL}), "observation.images['wrist']"),
    "out-of-order step": (lambda s: good_observation(s - 1), "observation.step"),
    "overflowing state shape": (
        lambda s: with_state(s, pb.Tensor(dtype="float32", shape=[2**32, 2**32])),
        "observation.state",
    ),
    "overflowing rtc shape": (
        lambda s: _with_rtc(s, pb.Tensor(dtype="float32", shape=[2**62, 8])),
        "observation.rtc.queued_actions",
    ),
    "image bomb": (
        lambda s: with_images(
            s, {"agentview": pb.Image(encoding=pb.Image.PNG, data=_png_header(16384, 16384)), "wrist": SMALL}
        ),
        "(refused before decoding)",
    ),
}


def _with_rtc(step: int, queued: pb.Tensor) -> pb.Observation:
    obs = good_observation(step)
    obs.rtc.queued_actions.CopyFrom(queued)
    obs.rtc.inference_delay = 1
    return obs


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def test_an_undecodable_message_after_open_ends_the_stream_with_invalid_argument(channel):
    session = channel.stream_stream(
        "/robot_runtime.v1.RobotRuntime/Session",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.SessionEvent.FromString,
    )
    release = __import__("threading").Event()

    def requests():
        yield pb.SessionRequest(open=pb.SessionOpen(task="put the red cube in the bowl")).SerializeToString()
        yield b"\xff\xff\xff\xff not a protobuf"
        release.wait(30)  # keep the stream open: the server must end it, not the client's half-close

    with pytest.raises(grpc.RpcError) as info:
        for _ in session(requests(), timeout=30):
            pass
    release.set()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_only_that_session_with_a_named_field(channel, case):
    make, field = BAD_INPUTS[case]
    healthy = Stream(channel, session_id=f"bystander-{case}")
    healthy.chunk()
    victim = Stream(channel)
    victim.chunk()
    err = victim.error(make(victim.step + 1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.details()
    assert healthy.chunk().observation_step == 2
    healthy.close()


def test_empty_task_and_oversized_message(channel):
    stream = Stream(channel, task="")
    err = stream.error(good_observation(1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "observation.task" in err.details()

    big = Stream(channel)
    huge = good_observation(1)
    huge.images["agentview"].CopyFrom(pb.Image(encoding=pb.Image.JPEG, data=bytes(65 * 1024 * 1024)))
    err = big.error(huge)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert runtime_stats(channel).counters["chunks"] > 0


def _planner_child(server) -> int:
    children = pathlib.Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return int(children[0]) if children else 0


def test_killing_the_planner_does_not_stop_chunks_and_plans_resume(runtime_server, channel):
    def planner_replies() -> int:
        hist = runtime_stats(channel).latency.get("planner_decode")
        return hist.count if hist is not None else 0

    stream = Stream(channel, session_id="through-a-crash")
    wait_until(lambda: stream.chunk() and planner_replies() > 0, 120, "the planner's first reply")
    before = _planner_child(runtime_server)
    assert before
    subprocess.run(["kill", "-9", str(before)], check=True)

    latencies = []
    outage_end = time.monotonic() + 3
    while time.monotonic() < outage_end:
        start = time.monotonic()
        assert stream.chunk().actions.shape == [10, 8]
        latencies.append(time.monotonic() - start)
    assert max(latencies) < 5.0
    replies_at_kill = planner_replies()

    def resumed():
        stream.chunk()
        return planner_replies() > replies_at_kill and _planner_child(runtime_server) not in (0, before)

    wait_until(resumed, 180, "the restarted planner to answer again")
    wait_until(lambda: _planner_health(channel) == health_pb2.HealthCheckResponse.SERVING, 20, "the Planner's health")
    stream.close()


def test_the_planner_health_follows_a_planner_that_stops_answering(runtime_server, channel):
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    wait_until(lambda: _planner_health(channel) == serving, 60, "the Planner's health")
    planner = _planner_child(runtime_server)
    assert planner
    subprocess.run(["kill", "-STOP", str(planner)], check=True)
    try:
        wait_until(lambda: _planner_health(channel) == not_serving, 30, "NOT_SERVING for a stopped planner")
    finally:
        subprocess.run(["kill", "-CONT", str(planner)], check=True)
    wait_until(lambda: _planner_health(channel) == serving, 30, "SERVING again")


def test_sigterm_shuts_down_runtime_and_planner(tiny_checkpoint, tmp_path):
    with run_server(tiny_checkpoint, tmp_path) as server:
        planner = wait_until(lambda: _planner_child(server), 60, "the planner process")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert (
            not pathlib.Path(f"/proc/{planner}").exists()
            or "zombie" in pathlib.Path(f"/proc/{planner}/status").read_text()
        )


def test_planner_dies_with_a_killed_runtime(tiny_checkpoint, tmp_path):
    with run_server(tiny_checkpoint, tmp_path) as server:
        planner = wait_until(lambda: _planner_child(server), 60, "the planner process")
        server.process.kill()
        server.process.wait(timeout=30)
        wait_until(lambda: not pathlib.Path(f"/proc/{planner}").exists(), 30, "the orphaned planner to exit")
