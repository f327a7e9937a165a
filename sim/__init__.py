"""The simulated robot (see `sim/README.md`): built-in MuJoCo tabletop tasks (`tasks`, `env`, `scene`),
scripted experts (`expert`), the LIBERO bridge (`libero`), the LeRobot dataset recorder (`recorder`) and the
rollout runner (`rollout`; its function `rollout.rollout` stays in the module whose name it shares). It reaches
a policy only through `client`.

Importing the package loads none of its submodules, mujoco least of all (`sim.render` must choose
`MUJOCO_GL` before mujoco's first import); each public name imports its own on first use (`__getattr__`,
PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

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


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
