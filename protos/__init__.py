"""The wire, bottom layer beside `policy`: `robot_runtime/v1/runtime.proto` and its generated code
(`protos.robot_runtime.v1.runtime_pb2` and `runtime_pb2_grpc`, made by `python -m protos.generate`), and what
every gRPC end shares: `wire` (tensors and images ↔ numpy, bounded errors, image size checks), `grpc_server`
(server and channel options, keepalive, bearer-token auth, health, `add_service`) and `stats` (the server's
latency histograms).

The light robot client imports it, so it stays light: importing the package loads none of its submodules (no
grpc, no cv2); each public name imports its own on first use (`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from protos.grpc_server import (
        DEFAULT_MAX_MESSAGE_MB,
        TOKEN_ENV,
        Health,
        RateLimitedLog,
        Security,
        add_service,
        auth_metadata,
        bind,
        channel_options,
        client_channel,
        is_loopback,
        make_server,
        read_token,
        return_freed_memory,
        server_options,
        warn_if_exposed,
    )
    from protos.stats import LatencyHistogram, StatsRecorder
    from protos.wire import (
        MAX_IMAGE_SIDE,
        WireError,
        encoded_image_size,
        image_to_numpy,
        needs_decoding,
        numpy_to_image,
        numpy_to_tensor,
        quoted,
        tensor_to_numpy,
    )

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "protos.grpc_server": (
        "DEFAULT_MAX_MESSAGE_MB",
        "TOKEN_ENV",
        "Health",
        "RateLimitedLog",
        "Security",
        "add_service",
        "auth_metadata",
        "bind",
        "channel_options",
        "client_channel",
        "is_loopback",
        "make_server",
        "read_token",
        "return_freed_memory",
        "server_options",
        "warn_if_exposed",
    ),
    "protos.stats": ("LatencyHistogram", "StatsRecorder"),
    "protos.wire": (
        "MAX_IMAGE_SIDE",
        "WireError",
        "encoded_image_size",
        "image_to_numpy",
        "needs_decoding",
        "numpy_to_image",
        "numpy_to_tensor",
        "quoted",
        "tensor_to_numpy",
    ),
}
__all__ = [
    "DEFAULT_MAX_MESSAGE_MB",
    "Health",
    "LatencyHistogram",
    "MAX_IMAGE_SIDE",
    "RateLimitedLog",
    "Security",
    "StatsRecorder",
    "TOKEN_ENV",
    "WireError",
    "add_service",
    "auth_metadata",
    "bind",
    "channel_options",
    "client_channel",
    "encoded_image_size",
    "image_to_numpy",
    "is_loopback",
    "make_server",
    "needs_decoding",
    "numpy_to_image",
    "numpy_to_tensor",
    "quoted",
    "read_token",
    "return_freed_memory",
    "server_options",
    "tensor_to_numpy",
    "warn_if_exposed",
]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
