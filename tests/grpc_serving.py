"""An in-process gRPC server for a fake RobotRuntime servicer, on a free loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent import futures

import grpc

from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc


@contextlib.contextmanager
def serving(servicer: pb_grpc.RobotRuntimeServicer, workers: int = 8) -> Iterator[str]:
    """Yields `127.0.0.1:PORT` while the servicer answers there."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    pb_grpc.add_RobotRuntimeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
