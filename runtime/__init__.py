"""The robot-facing runtime: the gRPC session service, batching, the planner link and proxy, supervision of the
planner process, the openpi bridge. `serve.serve_runtime` and `serve.serve_planner` run the two servers,
`launch.serve_process` starts one as a child process.

Importing the package loads none of its submodules: each public name imports its own on first use
(`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from runtime.batcher import ChunkBatcher
    from runtime.chunks import ServedChunk
    from runtime.launch import ServerProcess, ServerStartError, serve_process
    from runtime.openpi_bridge import OpenpiBridge
    from runtime.planner_link import PlannerLink
    from runtime.planner_proxy import PlannerProxy
    from runtime.serve import (
        ModelSource,
        PlannerOptions,
        PlannerSupervisor,
        RuntimeOptions,
        run_async,
        serve_planner,
        serve_runtime,
    )
    from runtime.service import RobotRuntimeService
    from runtime.sessions import Session, SessionRegistry, SessionSettings

# A session's first chunk waits this long for the planner's first subtask (serve --wait-for-subtask-ms), so that
# the actor never acts on the bare task, a prompt it was not trained on; past it, the task stands in.
DEFAULT_WAIT_FOR_SUBTASK_MS = 10_000.0

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "runtime.batcher": ("ChunkBatcher",),
    "runtime.chunks": ("ServedChunk",),
    "runtime.launch": ("ServerProcess", "ServerStartError", "serve_process"),
    "runtime.openpi_bridge": ("OpenpiBridge",),
    "runtime.planner_link": ("PlannerLink",),
    "runtime.planner_proxy": ("PlannerProxy",),
    "runtime.serve": (
        "ModelSource",
        "PlannerOptions",
        "PlannerSupervisor",
        "RuntimeOptions",
        "run_async",
        "serve_planner",
        "serve_runtime",
    ),
    "runtime.service": ("RobotRuntimeService",),
    "runtime.sessions": ("Session", "SessionRegistry", "SessionSettings"),
}
__all__ = [
    "ChunkBatcher",
    "DEFAULT_WAIT_FOR_SUBTASK_MS",
    "ModelSource",
    "OpenpiBridge",
    "PlannerLink",
    "PlannerOptions",
    "PlannerProxy",
    "PlannerSupervisor",
    "RobotRuntimeService",
    "RuntimeOptions",
    "ServedChunk",
    "ServerProcess",
    "ServerStartError",
    "Session",
    "SessionRegistry",
    "SessionSettings",
    "run_async",
    "serve_planner",
    "serve_process",
    "serve_runtime",
]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, _lazy_dir, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)


def __dir__() -> list[str]:
    return sorted({*_lazy_dir(), *__all__})  # with the constant this module defines itself
