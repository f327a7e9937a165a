"""The simulated robot (see `sim/README.md`): built-in MuJoCo tabletop tasks (`tasks`, `env`, `scene`),
scripted experts (`expert`), the LIBERO bridge (`libero`), the LeRobot dataset recorder (`recorder`) and the
rollout runner (`rollout`; its function `rollout.rollout` stays in the module whose name it shares). It reaches
a policy only through `client`.

Importing the package loads none of its submodules, mujoco least of all (`sim.render` must choose
`MUJOCO_GL` before mujoco's first import); each public name imports its own on first use (`__getattr__`,
PEP 562)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.env import TabletopEnv
    from sim.envspec import EnvSelection, EnvSpecError, parse_env
    from sim.episode import ACTION_DIMS, STATE_DIMS, BuiltinSim, Job, SimObservation
    from sim.expert import ScriptedExpert
    from sim.libero import LiberoSim
    from sim.recorder import record
    from sim.render import CameraRenderer
    from sim.rollout_config import PolicySpec, RolloutConfig, RolloutError
    from sim.tasks import list_tasks, make

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "sim.env": ("TabletopEnv",),
    "sim.envspec": ("EnvSelection", "EnvSpecError", "parse_env"),
    "sim.episode": ("ACTION_DIMS", "STATE_DIMS", "BuiltinSim", "Job", "SimObservation"),
    "sim.expert": ("ScriptedExpert",),
    "sim.libero": ("LiberoSim",),
    "sim.recorder": ("record",),
    "sim.render": ("CameraRenderer",),
    "sim.rollout_config": ("PolicySpec", "RolloutConfig", "RolloutError"),
    "sim.tasks": ("list_tasks", "make"),
}
__all__ = [
    "ACTION_DIMS",
    "BuiltinSim",
    "CameraRenderer",
    "EnvSelection",
    "EnvSpecError",
    "Job",
    "LiberoSim",
    "PolicySpec",
    "RolloutConfig",
    "RolloutError",
    "STATE_DIMS",
    "ScriptedExpert",
    "SimObservation",
    "TabletopEnv",
    "list_tasks",
    "make",
    "parse_env",
    "record",
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
