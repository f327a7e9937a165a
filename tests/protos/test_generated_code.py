"""The committed generated code must match the .proto files (regenerate with `python -m protos.generate`)."""

from __future__ import annotations

import pathlib

from protos import generate
from protos.robot_runtime.v1 import runtime_pb2, runtime_pb2_grpc


def test_generated_code_is_current(tmp_path: pathlib.Path):
    generate.generate(tmp_path)
    for name in ("runtime_pb2.py", "runtime_pb2_grpc.py", "runtime_pb2.pyi"):
        committed = (generate.ROOT / "protos/robot_runtime/v1" / name).read_text()
        fresh = (tmp_path / "protos/robot_runtime/v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: run python -m protos.generate"


def test_services_and_package():
    assert runtime_pb2.DESCRIPTOR.package == "robot_runtime.v1"
    services = runtime_pb2.DESCRIPTOR.services_by_name
    assert set(services["RobotRuntime"].methods_by_name) == {"Session", "GetMetadata", "GetStats"}
    assert set(services["Planner"].methods_by_name) == {"Plan", "Link", "GetStats"}
    assert hasattr(runtime_pb2_grpc, "RobotRuntimeStub") and hasattr(runtime_pb2_grpc, "PlannerServicer")
