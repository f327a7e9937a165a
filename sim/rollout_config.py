"""What a rollout runs: the policy and run settings, and the episode jobs they plan (seeds, LIBERO initial states).

Checked here, before any env or worker starts, so a bad selection costs one error line.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

from sim.envspec import EnvSelection
from sim.episode import Job

PolicyKind = Literal["scripted", "remote"]
DEFAULT_TIMEOUT_S = 120.0
BUILTIN_REPLAN_STEPS = 2  # the bundled policy's measured best (5 loses about half its successes)
LIBERO_REPLAN_STEPS = 5  # openpi's LIBERO protocol, so success rates compare with published ones


class RolloutError(RuntimeError):
    """The run cannot go on: a bad selection, or the runtime is unreachable or does not fit the sim."""


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """address: the runtime a worker talks to; servers: several runtimes (one per GPU or host) that the
    workers share out, worker w using servers[w % len(servers)]."""

    kind: PolicyKind
    address: str = ""
    token: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    servers: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.kind == "scripted":
            return "scripted"
        return f"runtimes at {', '.join(self.servers)}" if len(self.servers) > 1 else f"runtime at {self.address}"

    def addresses(self) -> tuple[str, ...]:
        return self.servers or (self.address,)

    def for_worker(self, worker: int) -> PolicySpec:
        addresses = self.addresses()
        return dataclasses.replace(self, address=addresses[worker % len(addresses)])


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    selection: EnvSelection
    episodes: int
    policy: PolicySpec
    out_dir: pathlib.Path
    workers: int = 1
    video: bool = False
    seed: int | None = None
    same_scene: bool = False  # built-in: every episode on the scene of `seed` (the learnability gate)
    replan_steps: int | None = None  # None: BUILTIN_REPLAN_STEPS or LIBERO_REPLAN_STEPS
    image_size: int = 224
    max_steps: int | None = None
    libero_prompt: str = "auto"
    quiet: bool = False
    progress: bool = True


def effective_replan_steps(config: RolloutConfig) -> int:
    if config.replan_steps is not None:
        return config.replan_steps
    return LIBERO_REPLAN_STEPS if config.selection.kind == "libero" else BUILTIN_REPLAN_STEPS


def effective_seed(config: RolloutConfig) -> int:
    """LIBERO's protocol seeds every env with 7; built-in episodes count up from 0."""
    from sim.libero import DEFAULT_SEED

    if config.seed is not None:
        return config.seed
    return DEFAULT_SEED if config.selection.kind == "libero" else 0


def plan_jobs(config: RolloutConfig) -> tuple[list[Job], list]:
    """Episode k of a built-in task uses seed `seed + k`; LIBERO episode k starts from initial state k."""
    if config.episodes < 1:
        raise RolloutError(f"--episodes must be >= 1, got {config.episodes}")
    selection = config.selection
    if selection.kind == "builtin":
        seed = effective_seed(config)
        jobs = [
            (task, k, seed if config.same_scene else seed + k, -1)
            for task in selection.tasks
            for k in range(config.episodes)
        ]
        return [Job(i, *job) for i, job in enumerate(jobs)], []
    from sim.libero import LiberoError, load_tasks

    if config.policy.kind == "scripted":
        raise RolloutError("--policy scripted runs the built-in tasks only; LIBERO needs --server or --checkpoint")
    try:
        tasks = load_tasks(selection.suite, selection.tasks)
    except LiberoError as err:
        raise RolloutError(str(err)) from None
    short = [t for t in tasks if t.trials < config.episodes]
    if short:
        raise RolloutError(
            f"{selection.suite} task {short[0].task_id} has {short[0].trials} initial states; "
            f"--episodes {config.episodes} is too many"
        )
    seed = effective_seed(config)
    jobs = [(t.name, k, seed, t.task_id) for t in tasks for k in range(config.episodes)]
    return [Job(i, *job) for i, job in enumerate(jobs)], tasks
