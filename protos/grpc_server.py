"""gRPC plumbing shared by the runtime and planner processes: options, security, health, reflection.

Defaults are for a robot on the same host: loopback bind, no SO_REUSEPORT (a second server on the same port
fails instead of silently sharing it), explicit message limits, keepalive on both ends. TLS and a bearer
token are opt-in; the health service stays reachable without the token so supervisors can probe it.
Services are registered with `add_service`, whose parsers turn undecodable bytes into INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import hmac
import ipaddress
import logging
import os
import pathlib
import time
from collections.abc import Sequence

import grpc
from google.protobuf import descriptor, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.wire import WireError

log = logging.getLogger(__name__)

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


TOKEN_ENV = "ROBOT_RUNTIME_TOKEN"
KEEPALIVE_TIME_MS = 20_000
# A server accepts pings this often (and counts no strikes against slower ones), so the clients' keepalive
# (every KEEPALIVE_TIME_MS, with or without calls) can never earn a GOAWAY too_many_pings.
MIN_PING_INTERVAL_MS = KEEPALIVE_TIME_MS // 2


def keepalive_options() -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
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
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 0),
        *keepalive_options(),
    ]


def read_token(token_file: str | None) -> str | None:
    """The bearer token from a file (first line) or the ROBOT_RUNTIME_TOKEN environment variable; a token on
    the command line would be visible to every user in `ps`."""
    if token_file:
        try:
            token = pathlib.Path(token_file).read_text().strip()
        except OSError as err:
            raise ValueError(f"--token-file: cannot read {token_file}: {err.strerror}") from err
        if not token:
            raise ValueError(f"--token-file: {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def is_loopback(address: str) -> bool:
    """Whether a bind address reaches this host only (`unix:` sockets, 127.0.0.0/8, ::1, localhost)."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(address: str, security: Security) -> None:
    """A token without TLS crosses the network in clear text: say so loudly unless the bind is loopback."""
    if security.token and security.tls_cert is None and not is_loopback(address):
        log.warning(
            "SECURITY: %s accepts a bearer token without TLS: the token crosses the network in clear text and "
            "anyone on the path can replay it. Add --tls-cert/--tls-key, or bind to 127.0.0.1.",
            address,
        )


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


_DENIED = "missing or wrong bearer token (authorization metadata)"


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def deny(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

    async def deny_stream(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)
        yield  # an async generator, as a response stream's handler must be

    kind = (handler.request_streaming, handler.response_streaming)
    make = _HANDLER_MAKERS[kind]
    behaviour = deny_stream if handler.response_streaming else deny
    return make(
        behaviour, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


_HANDLER_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class Undecodable:
    """What a request's parser returns for bytes that are not a valid message: the handler answers
    INVALID_ARGUMENT instead of gRPC's UNKNOWN with a logged traceback."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def error(self) -> WireError:
        return WireError("request", f"the bytes are not a valid {self.type_name} message")


class RateLimitedLog:
    """At most one warning per `interval_s`, saying how many were held back: garbage cannot flood the log."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0):
        self._log = logger
        self._interval_s = interval_s
        self._next = 0.0
        self._held_back = 0

    def warning(self, message: str, *args) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held_back += 1
            return
        if self._held_back:
            message += f" (and {self._held_back} more in the last {self._interval_s:.0f} s)"
        self._log.warning(message, *args)
        self._next, self._held_back = now + self._interval_s, 0


_rejections = RateLimitedLog(log)


def add_service(server: grpc.aio.Server, servicer, service: descriptor.ServiceDescriptor) -> None:
    """Registers `servicer` for `service` like the generated `add_*Servicer_to_server`, except that an
    undecodable request, or a WireError escaping a handler, ends the call with INVALID_ARGUMENT (one
    rate-limited log line), never with UNKNOWN."""
    handlers = {}
    for method in service.methods:
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        behaviour = getattr(servicer, method.name)
        kind = (method.client_streaming, method.server_streaming)
        handlers[method.name] = _HANDLER_MAKERS[kind](
            _guarded(behaviour, kind, f"{service.name}.{method.name}"),
            request_deserializer=_parser(request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


class _Traffic:
    received_bytes = 0  # request bytes parsed by `add_service` handlers since the process started


def _parser(message_type):
    def parse(data: bytes):
        _Traffic.received_bytes += len(data)
        try:
            return message_type.FromString(data)
        except Exception:  # noqa: BLE001 - DecodeError, or a RuntimeError from the upb parser
            return Undecodable(message_type.DESCRIPTOR.name)

    return parse


async def _refuse(context, rpc: str, err: WireError) -> None:
    _rejections.warning("%s: refused a request: %s", rpc, str(err)[:200])
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))


def _guarded(behaviour, kind: tuple[bool, bool], rpc: str):
    client_streaming, server_streaming = kind

    async def checked(requests):
        async for request in requests:
            if isinstance(request, Undecodable):
                raise request.error()
            yield request

    if not server_streaming:

        async def unary_response(request, context):
            if isinstance(request, Undecodable):
                await _refuse(context, rpc, request.error())
            try:
                return await behaviour(checked(request) if client_streaming else request, context)
            except WireError as err:
                await _refuse(context, rpc, err)

        return unary_response

    async def stream_response(request, context):
        if not client_streaming and isinstance(request, Undecodable):
            await _refuse(context, rpc, request.error())
        try:
            calls = behaviour(checked(request) if client_streaming else request, context)
            async with contextlib.aclosing(calls) as responses:
                async for response in responses:
                    yield response
        except WireError as err:
            await _refuse(context, rpc, err)

    return stream_response


def make_server(security: Security, max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> grpc.aio.Server:
    interceptors = [BearerTokenInterceptor(security.token)] if security.token else []
    return grpc.aio.server(options=server_options(max_message_mb), interceptors=interceptors)


def bind(server: grpc.aio.Server, address: str, security: Security) -> int:
    """Binds `host:port` (port 0 picks one) or `unix:PATH`; returns the port (0 for unix sockets)."""
    if security.tls_cert is not None:
        assert security.tls_key is not None  # Security holds both or neither
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

    async def set(self, serving: bool, names: Sequence[str] | None = None) -> None:
        """Every name's status (or only `names`')."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._names if names is None else names:
            await self._servicer.set(name, status)


def client_channel(address: str, *, tls_ca: pathlib.Path | None = None, max_message_mb: int = DEFAULT_MAX_MESSAGE_MB):
    options = channel_options(max_message_mb)
    if tls_ca is not None:
        return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(tls_ca.read_bytes()), options=options)
    return grpc.aio.insecure_channel(address, options=options)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _malloc_trim():
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


async def return_freed_memory(every_mb: int = 64, interval_s: float = 2.0) -> None:
    """After every `every_mb` of requests, hands the memory they left in the allocator's free lists back to
    the OS: a burst of large (or hostile) messages would otherwise keep the process at its peak RSS."""
    trim = _malloc_trim()
    if trim is None:
        return
    trimmed_at = _Traffic.received_bytes
    while True:
        await asyncio.sleep(interval_s)
        if _Traffic.received_bytes - trimmed_at >= every_mb * 1024 * 1024:
            trimmed_at = _Traffic.received_bytes
            await asyncio.to_thread(trim, 0)
