"""The robot's side of the runtime: what a robot control loop (or the sim's rollout runner) imports to talk to
a `robot-runtime serve`: `RobotClient` (one Session stream) and `ActionQueue` (chunks → one action per control
step, with real-time chunking). It depends on the wire (`protos/`) alone, and loads no jax.

Importing the package loads none of its submodules: each public name imports its own on first use
(`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

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


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
