"""The robot's side of the runtime: what a robot control loop (or the sim's rollout runner) imports to talk to
a `robot-runtime serve`: `RobotClient` (one Session stream) and `ActionQueue` (chunks → one action per control
step, with real-time chunking). It depends on the wire (`protos/`) alone, and loads no jax.

Importing the package loads none of its submodules: each public name imports its own on first use
(`__getattr__`, PEP 562)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.action_queue import ActionQueue, RtcPrefix
    from client.chunk_book import Chunk
    from client.robot_client import RobotClient, SubtaskEvent
    from client.session_stream import RuntimeClientError, RuntimeInfo
    from client.stats import ClientStats

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "client.action_queue": ("ActionQueue", "RtcPrefix"),
    "client.chunk_book": ("Chunk",),
    "client.robot_client": ("RobotClient", "SubtaskEvent"),
    "client.session_stream": ("RuntimeClientError", "RuntimeInfo"),
    "client.stats": ("ClientStats",),
}
__all__ = [
    "ActionQueue",
    "Chunk",
    "ClientStats",
    "RobotClient",
    "RtcPrefix",
    "RuntimeClientError",
    "RuntimeInfo",
    "SubtaskEvent",
]


def __getattr__(name: str) -> Any:
    """Imports the submodule that defines a public name on its first use (PEP 562)."""
    for module, names in _EXPORTS.items():
        if name in names:
            value = getattr(importlib.import_module(module), name)
            globals()[name] = value  # later lookups find it without calling this
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
