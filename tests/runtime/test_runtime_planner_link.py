"""The runtime against a remote planner (`--planner-address`) that the test controls, and TLS + bearer token."""

from __future__ import annotations

import concurrent.futures
import socket
import subprocess
import time

import grpc
import pytest
from server_process import Stream, run_server, wait_until

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc


class CountingPlanner(pb_grpc.PlannerServicer):
    """Answers every observation with a numbered subtask, so updates are easy to follow."""

    def __init__(self):
        self.plans = 0

    def Link(self, request_iterator, context):
        for request in request_iterator:
            self.plans += 1
            yield pb.PlanReply(
                session_id=request.session_id,
                observation_step=request.observation_step,
                subtask=f"pick up the red cube {self.plans}",
                decode_ms=1.0,
            )


def start_planner(port: int) -> tuple[grpc.Server, CountingPlanner]:
    planner = CountingPlanner()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    pb_grpc.add_PlannerServicer_to_server(planner, server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    server.start()
    return server, planner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_subtask_updates_reach_the_session_and_resume_after_a_planner_outage(tiny_checkpoint, tmp_path):
    port = free_port()
    planner_server, planner = start_planner(port)
    with run_server(tiny_checkpoint, tmp_path, "--planner-address", f"127.0.0.1:{port}") as runtime:
        with grpc.insecure_channel(runtime.address) as channel:
            stream = Stream(channel, session_id="arm")
            chunk = wait_until(lambda: (c := stream.chunk()).subtask_version > 0 and c, 60, "a chunk with a subtask")
            assert chunk.subtask.startswith("pick up the red cube")
            assert stream.subtasks and stream.subtasks[0].version == 1 and stream.subtasks[0].session_id == "arm"
            versions = [u.version for u in stream.subtasks]
            assert versions == sorted(versions)

            planner_server.stop(0).wait()
            stopped_at = time.monotonic()
            during = [stream.chunk() for _ in range(5)]
            assert time.monotonic() - stopped_at < 20
            last_version = max(c.subtask_version for c in during)
            assert all(c.subtask.startswith("pick up the red cube") for c in during)

            planner_server, planner = start_planner(port)
            wait_until(lambda: stream.chunk().subtask_version > last_version, 60, "updates after the planner returns")
            assert planner.plans > 0
            stream.close()
    planner_server.stop(0)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def test_tls_and_bearer_token(tiny_checkpoint, tmp_path, tls_files):
    key, cert = tls_files
    args = ("--tls-cert", str(cert), "--tls-key", str(key), "--token", "s3cret")
    with run_server(tiny_checkpoint, tmp_path, *args) as runtime:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"localhost:{runtime.port}", credentials) as channel:
            stub = pb_grpc.RobotRuntimeStub(channel)
            for metadata in [(), (("authorization", "Bearer wrong"),)]:
                with pytest.raises(grpc.RpcError) as info:
                    stub.GetMetadata(pb.MetadataRequest(), timeout=10, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as info:
                Stream(channel)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            good = (("authorization", "Bearer s3cret"),)
            assert stub.GetMetadata(pb.MetadataRequest(), timeout=10, metadata=good).action_dims == 8
            stream = Stream(channel, metadata=good)
            assert stream.chunk().observation_step == 1
            stream.close()
        with grpc.insecure_channel(runtime.address) as plaintext:
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.RobotRuntimeStub(plaintext).GetMetadata(pb.MetadataRequest(), timeout=5, metadata=good)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plan_cli_asks_a_running_planner(tiny_checkpoint, tmp_path, capsys):
    import json
    import sys

    import cv2
    import numpy as np

    from app.cli import main

    port = free_port()
    planner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve-planner",
            "--checkpoint",
            str(tiny_checkpoint),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    image = tmp_path / "cam.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 90, np.uint8))
    try:
        args = [
            "plan",
            "--server",
            f"127.0.0.1:{port}",
            "--image",
            f"base_0_rgb={image}",
            "--task",
            "stack the cubes",
            "--max-tokens",
            "3",
            "--json",
        ]
        wait_until(lambda: main(args) == 0, 240, "the planner to answer")
        reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert set(reply) >= {"subtask", "tokens", "prefill_ms", "decode_ms"} and len(reply["tokens"]) == 3
        assert main(["plan", "--server", f"127.0.0.1:{port}", "--image", f"top={image}", "--task", "x"]) == 2
        assert "INVALID_ARGUMENT" in capsys.readouterr().err
    finally:
        planner.terminate()
        planner.wait(timeout=30)
