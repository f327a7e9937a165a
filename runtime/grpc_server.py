"""gRPC plumbing shared by the runtime and planner processes: options, security, health, reflection.

Defaults are for a robot on the same host: loopback bind, no SO_REUSEPORT (a second server on the same port
fails instead of silently sharing it), explicit message limits, keepalive on both ends. TLS and a bearer
token are opt-in; the health service stays reachable without the token so supervisors can probe it.
"""

from __future__ import annotations

import dataclasses
import hmac
import pathlib
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
DEFAULT_MAX_MESSAGE_MB = 64


@dataclasses.dataclass(frozen=True)
class Security:
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    token: str | None = None

    def __post_init__(self):
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")


def keepalive_options() -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> list[tuple[str, int]]:
    limit = max_message_mb * 1024 * 1024
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        *keepalive_options(),
    ]


def channel_options(max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> list[tuple[str, int]]:
    limit = max_message_mb * 1024 * 1024
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit), *keepalive_options()]


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without `authorization: Bearer <token>` with UNAUTHENTICATED (health checks exempt)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}"

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        metadata = dict(details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self._expected.encode()):
            return handler
        return _denying(handler)


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def deny(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (authorization metadata)")

    kind = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(deny, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


def make_server(security: Security, max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> grpc.aio.Server:
    interceptors = [BearerTokenInterceptor(security.token)] if security.token else []
    return grpc.aio.server(options=server_options(max_message_mb), interceptors=interceptors)


def bind(server: grpc.aio.Server, address: str, security: Security) -> int:
    """Binds `host:port` (port 0 picks one) or `unix:PATH`; returns the port (0 for unix sockets)."""
    if security.tls_cert is not None:
        credentials = grpc.ssl_server_credentials([(security.tls_key.read_bytes(), security.tls_cert.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot bind {address}")
    return port


class Health:
    """grpc.health.v1 for the given service names; NOT_SERVING until `serving()`."""

    def __init__(self, server: grpc.aio.Server, service_names: Sequence[str]):
        self._servicer = health.aio.HealthServicer()
        self._names = ["", *service_names]
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    async def set(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._names:
            await self._servicer.set(name, status)


def client_channel(address: str, *, tls_ca: pathlib.Path | None = None, max_message_mb: int = DEFAULT_MAX_MESSAGE_MB):
    options = channel_options(max_message_mb)
    if tls_ca is not None:
        return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(tls_ca.read_bytes()), options=options)
    return grpc.aio.insecure_channel(address, options=options)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()
