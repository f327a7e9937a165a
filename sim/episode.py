"""What the rollout runner steps: one episode job, the observation a policy sees, and the built-in sim.

A `Sim` hides how an environment starts an episode and when it counts as solved, so the runner's loop is the
same for the built-in tasks and LIBERO (`sim.libero.LiberoSim`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # sim.env loads MuJoCo and picks a GL backend; BuiltinSim imports it when it starts a task
    from sim.env import TabletopEnv

ACTION_DIMS = 7  # LIBERO's: EE delta position, delta axis-angle, gripper
STATE_DIMS = 8  # EE position, EE axis-angle, two finger joints


@dataclasses.dataclass(frozen=True)
class Job:
    """Episode `episode` of `task`. Built-in: `seed` picks the layout. LIBERO: `episode` picks the suite's
    initial state and `seed` seeds the env; `task_id` is the task's index in its suite."""

    index: int
    task: str
    episode: int
    seed: int
    task_id: int = -1


@dataclasses.dataclass(frozen=True)
class SimObservation:
    """Images are upright uint8 HxWx3 per camera (empty when nothing is rendered); state is float32[8]. Views are
    the same cameras at a viewing size, when the sim renders them for a video; the policy never sees them."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: str
    views: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # larger renders, for videos only


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What the closed-loop planner metric judges a subtask by, at one step: the subtasks that fit the world's
    state, every subtask the expert can name in this episode, and where each thing it can name is now
    ("the red cube" → table xy), for the planner's location words."""

    fitting: frozenset[str]
    phrases: frozenset[str]
    places: dict[str, np.ndarray]


class Sim(Protocol):
    fps: float

    def start(self, job: Job) -> SimObservation: ...

    def step(self, action: np.ndarray) -> tuple[SimObservation, bool]:
        """Applies a 7-D action → (observation, whether the task is now solved)."""
        ...

    def max_steps(self, job: Job) -> int: ...

    def referee(self) -> Judgement | None:
        """What the closed-loop planner metric judges the policy's subtask by now, or None where the sim cannot
        tell."""
        ...

    def mark_target(self, obs: SimObservation, xy: np.ndarray) -> SimObservation:
        """`obs` with a ring on its viewing-size agent view where the table position `xy` is (a planner's location
        words), for videos; unchanged where the sim has no such view or no table positions."""
        ...

    def close(self) -> None: ...


class BuiltinSim:
    """The built-in MuJoCo tasks; one env per task, kept across episodes (its GL context is reused)."""

    def __init__(self, image_size: int, render: bool, max_steps: int | None = None, view_size: int = 0):
        self.image_size = image_size
        self.render = render
        self.view_size = view_size
        self._max_steps = max_steps
        self._envs: dict[str, TabletopEnv] = {}
        self.env: TabletopEnv | None = None
        self.fps = 10.0

    def start(self, job: Job) -> SimObservation:
        from sim.tasks import make

        if job.task not in self._envs:
            self._envs[job.task] = make(
                job.task,
                seed=job.seed,
                image_size=self.image_size,
                render=self.render,
                max_steps=self._max_steps,
                view_size=self.view_size,
            )
        from sim.expert import subtask_phrases

        self.env = self._envs[job.task]
        self.fps = self.env.fps
        obs = self._observation(self.env.reset(seed=job.seed))
        self._phrases = frozenset(subtask_phrases(self.env))
        return obs

    def step(self, action: np.ndarray) -> tuple[SimObservation, bool]:
        assert self.env is not None, "call start() first"
        obs, _, info = self.env.step(action)
        return self._observation(obs), bool(info["success"])

    def max_steps(self, job: Job) -> int:
        assert self.env is not None, "call start() first"
        return self.env.max_steps

    def referee(self) -> Judgement:
        from sim.expert import consistent_subtasks

        env = self.env
        assert env is not None and env.layout is not None, "call start() first"
        places = {spec.description: env.body_pos(spec.name)[:2] for spec in env.layout.objects}
        places |= {spec.description: env.body_pos(spec.name)[:2] for spec in env.layout.containers}
        return Judgement(frozenset(consistent_subtasks(env)), self._phrases, places)

    def mark_target(self, obs: SimObservation, xy: np.ndarray) -> SimObservation:
        import cv2

        assert self.env is not None, "call start() first"
        view = obs.views.get("agentview")
        if view is None:
            return obs
        size = view.shape[0]
        spot = self.env.pixel("agentview", np.array([xy[0], xy[1], 0.0]), size)
        if spot is None:
            return obs
        marked = view.copy()
        centre = (round(spot[0]), round(spot[1]))
        cv2.circle(marked, centre, max(4, size // 40), (255, 255, 255), max(1, size // 128) + 1, cv2.LINE_AA)
        cv2.circle(marked, centre, max(4, size // 40) + 2, (0, 0, 0), 1, cv2.LINE_AA)
        return dataclasses.replace(obs, views={**obs.views, "agentview": marked})

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def _observation(self, obs: dict) -> SimObservation:
        assert self.env is not None
        views = self.env.views() if self.view_size else {}
        return SimObservation(obs["images"], obs["state"], obs["task"], views)
