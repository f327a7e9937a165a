"""gRPC plumbing: undecodable requests of every RPC shape get INVALID_ARGUMENT, a wrong token UNAUTHENTICATED
(on streams too), the keepalive settings of the two ends agree, and the token's safety rules."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from protos import grpc_server
from protos.grpc_server import Security, add_service, auth_metadata, is_loopback, read_token, warn_if_exposed
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import WireError

SERVICE = pb.DESCRIPTOR.services_by_name["RobotRuntime"]
GARBAGE = b"\xff\xff\xff\xff not a protobuf"


class EchoRuntime:
    async def GetMetadata(self, request, context):
        return pb.RuntimeMetadata(version="echo")

    async def GetStats(self, request, context):
        raise WireError("stats", "a handler's own WireError")

    async def Session(self, requests, context):
        async for request in requests:
            yield pb.SessionEvent(metadata=pb.RuntimeMetadata(session_id=request.open.session_id))


async def _call(token: str | None, sent_token: str | None, calls):
    server = grpc_server.make_server(Security(token=token))
    add_service(server, EchoRuntime(), SERVICE)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return [await call(channel, auth_metadata(sent_token)) for call in calls]
    finally:
        await server.stop(None)


def _raw(channel, method: str, streaming: bool):
    path = f"/{SERVICE.full_name}/{method}"
    kind = channel.stream_stream if streaming else channel.unary_unary
    return kind(path, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)


async def _status(call) -> grpc.StatusCode:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as err:
        return grpc.StatusCode[err.code().name], err.details()
    return grpc.StatusCode.OK, ""


def _unary(method: str, payload: bytes):
    async def call(channel, metadata):
        return await _status(_raw(channel, method, False)(payload, metadata=metadata, timeout=10))

    return call


def _stream(*payloads: bytes):
    async def call(channel, metadata):
        async def requests():
            for payload in payloads:
                yield payload

        return await _status(_raw(channel, "Session", True)(requests(), metadata=metadata, timeout=10))

    return call


def test_undecodable_requests_get_invalid_argument_and_one_log_line(caplog):
    first_open = pb.SessionRequest(open=pb.SessionOpen(session_id="a")).SerializeToString()
    with caplog.at_level(logging.WARNING, "protos.grpc_server"):
        results = asyncio.run(
            _call(
                None,
                None,
                [
                    _unary("GetMetadata", GARBAGE),
                    _unary("GetMetadata", b""),
                    _unary("GetStats", b""),
                    _stream(GARBAGE),
                    _stream(first_open, GARBAGE),
                ],
            )
        )
    assert results[1] == (grpc.StatusCode.OK, "")
    for index in (0, 3, 4):
        code, details = results[index]
        assert (code, "not a valid" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True), index
    assert results[2] == (grpc.StatusCode.INVALID_ARGUMENT, "stats: a handler's own WireError")
    lines = [r for r in caplog.records if r.name == "protos.grpc_server"]
    assert len(lines) == 1 and "Traceback" not in caplog.text


def test_a_wrong_token_is_unauthenticated_on_every_rpc_shape():
    results = asyncio.run(_call("secret", "wrong", [_unary("GetMetadata", b""), _stream(b"")]))
    assert [code for code, _ in results] == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert asyncio.run(_call("secret", "secret", [_unary("GetMetadata", b"")]))[0][0] == grpc.StatusCode.OK


def test_client_keepalive_never_pings_faster_than_the_server_accepts():
    client = dict(grpc_server.channel_options())
    server = dict(grpc_server.server_options())
    assert client["grpc.keepalive_time_ms"] >= server["grpc.http2.min_recv_ping_interval_without_data_ms"]
    assert server["grpc.http2.max_ping_strikes"] == 0


def test_token_file_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(grpc_server.TOKEN_ENV, raising=False)
    assert read_token(None) is None
    monkeypatch.setenv(grpc_server.TOKEN_ENV, "from-env")
    assert read_token(None) == "from-env"
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert read_token(str(path)) == "from-file"
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_token(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        read_token(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("[::1]:50051", True),
        ("localhost:1", True),
        ("unix:/tmp/s", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        ("robot.lan:1", False),
    ],
)
def test_a_token_without_tls_warns_unless_loopback(address, loopback, caplog):
    with caplog.at_level(logging.WARNING, "protos.grpc_server"):
        warn_if_exposed(address, Security(token="secret"))
        warn_if_exposed(address, Security())
    assert is_loopback(address) == loopback
    assert ("SECURITY" in caplog.text) == (not loopback)
