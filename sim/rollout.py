"""Rollout runner: episodes of the built-in tasks or a LIBERO suite, driven by a policy, scored and written.

    from sim.envspec import parse_env
    from sim.rollout import PolicySpec, RolloutConfig, rollout
    results = rollout(RolloutConfig(parse_env("builtin:all"), episodes=5, policy=PolicySpec("scripted"),
                                    out_dir=pathlib.Path("runs/x")))

Policies: "scripted" runs the built-in experts (privileged state, no server) to validate the tasks; "remote"
makes every episode a robot session with a runtime over gRPC (`client.robot_client.RobotClient`), asking for a
chunk every `replan_steps` control steps (openpi's LIBERO protocol; sim time stands still while it waits).

Workers are spawned processes (MuJoCo's GL contexts do not survive a fork), each with its own envs and its
own sessions, taking jobs from one queue; with one worker the episodes run in this process. Workers report
subtask changes and finished episodes as they happen, and this process prints them.

`results.json` (in `out_dir`):
    success_rate     over all episodes
    episodes         per episode: task, episode, seed (LIBERO: task_id, and episode = initial state index),
                     instruction, success, steps (policy steps), subtasks [{step, text, version}] (the step a
                     subtask was first acted on; scripted: the expert's labels), planner_updates, video,
                     error, wall_s, worker
    per_task         {task: {success_rate, episodes, successes, mean_steps}}
    latency_ms       policy time per query: a chunk's round trip (remote) or one expert step (scripted);
                     {count, mean, p50, p90, p99, max}
    server_ms        the runtime's own time per chunk (remote only)
    env_step_ms      one env step (physics and rendering)
    config, wall_s
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import queue
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

import numpy as np
from tqdm import tqdm

from sim.envspec import EnvSelection
from sim.episode import ACTION_DIMS, STATE_DIMS, BuiltinSim, Job, Sim, SimObservation
from sim.summary_figure import SUMMARY_FILE, plot_summary

if TYPE_CHECKING:  # imported when a remote policy begins: a scripted rollout needs no gRPC
    from client.action_queue import ActionQueue
    from client.robot_client import RobotClient

PolicyKind = Literal["scripted", "remote"]
DEFAULT_TIMEOUT_S = 120.0
POLL_S = 0.5
BUILTIN_REPLAN_STEPS = 2  # the bundled policy's measured best (5 loses about half its successes)
LIBERO_REPLAN_STEPS = 5  # openpi's LIBERO protocol, so success rates compare with published ones
VIDEO_VIEW_SIZE = 256  # builtin videos show every camera at this size beside the policy's own input


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


@dataclasses.dataclass(frozen=True)
class SubtaskMark:
    step: int
    text: str
    version: int


@dataclasses.dataclass
class RefereeCount:
    """The closed-loop planner metric of one episode: of the steps the policy acted on a subtask, how many named a
    subtask that fits the world's state then (`fit`: the right object, container and a phase that matches
    the gripper, e.g. no "lift" with an empty hand), and how many named nothing the expert ever says in this
    episode (`unknown`: a phrase never seen in training)."""

    steps: int = 0
    fit: int = 0
    unknown: int = 0

    def add(self, text: str, fitting: frozenset[str], phrases: frozenset[str]) -> None:
        said = " ".join(text.lower().split()).rstrip(".;")
        self.steps += 1
        self.fit += said in fitting
        self.unknown += said not in phrases


@dataclasses.dataclass(frozen=True)
class EpisodeResult:
    job: Job
    instruction: str
    success: bool
    steps: int
    subtasks: tuple[SubtaskMark, ...]
    policy_ms: tuple[float, ...]
    server_ms: tuple[float, ...]
    env_ms: tuple[float, ...]
    planner_updates: int
    video: str | None
    error: str | None
    wall_s: float
    worker: int
    referee: RefereeCount | None = None

    def to_json(self, libero: bool) -> dict:
        row = {"task": self.job.task, "episode": self.job.episode, "seed": self.job.seed}
        if libero:
            row["task_id"] = self.job.task_id
        row.update(
            instruction=self.instruction,
            success=self.success,
            steps=self.steps,
            subtasks=[dataclasses.asdict(mark) for mark in self.subtasks],
            planner_updates=self.planner_updates,
            video=self.video,
            error=self.error,
            wall_s=round(self.wall_s, 3),
            worker=self.worker,
        )
        if self.referee is not None:
            row["referee"] = dataclasses.asdict(self.referee)
        return row


@dataclasses.dataclass(frozen=True)
class SubtaskChanged:
    job: Job
    step: int
    text: str


@dataclasses.dataclass(frozen=True)
class EpisodeDone:
    result: EpisodeResult


@dataclasses.dataclass(frozen=True)
class WorkerFailed:
    worker: int
    message: str


@dataclasses.dataclass(frozen=True)
class WorkerExited:
    worker: int


Event = SubtaskChanged | EpisodeDone


# -- policies ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicyTrace:
    policy_ms: tuple[float, ...]
    server_ms: tuple[float, ...] = ()
    planner_updates: int = 0


class Policy(Protocol):
    def begin(self, job: Job, obs: SimObservation) -> None: ...

    def act(self, obs: SimObservation) -> tuple[np.ndarray, str, int]:
        """→ (7-D action, the subtask it serves or "", that subtask's version)."""
        ...

    def end(self) -> PolicyTrace: ...

    def close(self) -> None: ...


class ScriptedPolicy:
    """The built-in expert; it reads privileged poses from the sim's env and labels each step."""

    def __init__(self, sim: BuiltinSim):
        from sim.expert import ScriptedExpert

        self.sim = sim
        self.expert = ScriptedExpert()
        self._times: list[float] = []
        self._label = ("", 0)

    def begin(self, job: Job, obs: SimObservation) -> None:
        self._times, self._label = [], ("", 0)

    def act(self, obs: SimObservation) -> tuple[np.ndarray, str, int]:
        t = time.perf_counter()
        action, text = self.expert.act(self.sim.env)
        self._times.append((time.perf_counter() - t) * 1e3)
        if text != self._label[0]:
            self._label = (text, self._label[1] + 1)
        return action, text, self._label[1]

    def end(self) -> PolicyTrace:
        return PolicyTrace(tuple(self._times))

    def close(self) -> None:
        pass


def _runtime_error(address: str, err: Exception) -> RolloutError:
    details = getattr(err, "details", "") or str(err)
    code = getattr(getattr(err, "code", None), "name", "")
    return RolloutError(f"runtime at {address}: {code + ': ' if code else ''}{details}")


def check_runtime(spec: PolicySpec) -> tuple[str, ...]:
    """Fails fast, before any worker starts, unless the runtime answers and fits the sim → its cameras."""
    from client.robot_client import RobotClient, RuntimeClientError

    client = RobotClient(spec.address, "rollout probe", token=spec.token, timeout_s=min(spec.timeout_s, 15.0))
    try:
        meta = client.get_metadata()
    except RuntimeClientError as err:
        raise _runtime_error(spec.address, err) from None
    finally:
        client.close()
    if meta.action_dims != ACTION_DIMS:
        raise RolloutError(
            f"runtime at {spec.address} sends {meta.action_dims}-D actions; the sim steps "
            f"{ACTION_DIMS}-D ones (serve with --action-dims {ACTION_DIMS})"
        )
    if meta.state_dims != STATE_DIMS:
        raise RolloutError(
            f"runtime at {spec.address} expects a {meta.state_dims}-D state; the sim has "
            f"{STATE_DIMS}-D (serve with --state-dims {STATE_DIMS})"
        )
    unknown = [c for c in meta.cameras if c not in ("agentview", "wrist")]
    if unknown:
        raise RolloutError(f"runtime at {spec.address} wants camera {unknown[0]!r}; the sim has agentview, wrist")
    return tuple(meta.cameras)


class RemotePolicy:
    """One robot session per episode (a fresh planner state), blocking on each chunk like openpi's client."""

    def __init__(self, spec: PolicySpec, replan_steps: int, run_id: str):
        self.spec = spec
        self.replan_steps = replan_steps
        self.run_id = run_id
        self._client: RobotClient | None = None
        self._queue: ActionQueue | None = None
        self._cameras: tuple[str, ...] = ()
        self._subtask = ("", 0)
        self._instruction = ""
        self._round_trip: list[float] = []
        self._server: list[float] = []

    def begin(self, job: Job, obs: SimObservation) -> None:
        from client.action_queue import ActionQueue
        from client.robot_client import RobotClient, RuntimeClientError

        self._client = RobotClient(
            self.spec.address,
            obs.instruction,
            session_id=f"{self.run_id}-{job.index}",
            token=self.spec.token,
            timeout_s=self.spec.timeout_s,
        )
        try:
            meta = self._client.connect()
        except RuntimeClientError as err:
            raise _runtime_error(self.spec.address, err) from None
        self._cameras = tuple(meta.cameras)
        self._queue = ActionQueue("replace", replan_steps=self.replan_steps)
        self._subtask, self._instruction = ("", 0), obs.instruction
        self._round_trip, self._server = [], []

    def act(self, obs: SimObservation) -> tuple[np.ndarray, str, int]:
        from client.robot_client import RuntimeClientError

        assert self._client is not None and self._queue is not None, "call begin() first"
        if self._queue.needs_chunk():
            images = {camera: obs.images[camera] for camera in self._cameras}
            try:
                step = self._client.send(images, obs.state, task=obs.instruction)
                self._queue.request(step)
                chunk = self._client.wait(step)
            except RuntimeClientError as err:
                raise _runtime_error(self.spec.address, err) from None
            self._queue.receive(step, chunk.actions)
            self._round_trip.append(chunk.round_trip_ms)
            self._server.append(chunk.timings.total_ms)
            if chunk.subtask and chunk.subtask != self._instruction:
                self._subtask = (chunk.subtask, chunk.subtask_version)
        action = self._queue.pop()
        if action is None:
            raise RolloutError(f"runtime at {self.spec.address} sent an empty action chunk")
        return action, *self._subtask

    def end(self) -> PolicyTrace:
        updates = len(self._client.subtask_updates) if self._client is not None else 0
        self.close()
        return PolicyTrace(tuple(self._round_trip), tuple(self._server), updates)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# -- one episode ---------------------------------------------------------------------------------------------


def video_path(out_dir: pathlib.Path, job: Job, libero: bool, success: bool) -> pathlib.Path:
    folder = f"task{job.task_id:02d}" if libero else job.task
    outcome = "success" if success else "failure"
    return out_dir / "videos" / folder / f"episode{job.episode:03d}_seed{job.seed}_{outcome}.mp4"


def video_panels(obs: SimObservation) -> list[np.ndarray]:
    """What a video frame shows: the cameras at viewing size, then what the policy saw (its own low-resolution
    images, stacked in one column and scaled up by whole pixels); just the policy's images when there are no views."""
    inputs = list(obs.images.values())
    if not obs.views:
        return inputs
    views = list(obs.views.values())
    height = views[0].shape[0]
    cell = height // max(1, len(inputs))
    column = np.zeros((height, cell, 3), np.uint8)
    for i, image in enumerate(inputs):
        factor = max(1, cell // max(image.shape[:2]))
        big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)[:cell, :cell]
        column[i * cell : i * cell + big.shape[0], : big.shape[1]] = big
    return [*views, column]


def run_episode(
    job: Job,
    sim: Sim,
    policy: Policy,
    *,
    worker: int = 0,
    emit: Callable[[Event], None],
    video_dir: pathlib.Path | None = None,
    libero: bool = False,
) -> EpisodeResult:
    """Steps one episode until success or the step budget; sim errors end it as a failure, policy and
    transport errors (RolloutError) end the run."""
    from sim.video import CaptionedVideo

    started = time.perf_counter()
    video = CaptionedVideo(video_dir / f".w{worker}.mp4", sim.fps) if video_dir is not None else None
    obs = sim.start(job)
    limit = sim.max_steps(job)
    policy.begin(job, obs)
    marks: list[SubtaskMark] = []
    env_ms: list[float] = []
    referee = RefereeCount() if isinstance(policy, RemotePolicy) else None
    text, steps, success, error = "", 0, False, None
    try:
        while steps < limit and not success:
            action, text, version = policy.act(obs)
            if text and (not marks or marks[-1].text != text):
                marks.append(SubtaskMark(steps, text, version))
                emit(SubtaskChanged(job, steps, text))
            judged = sim.referee() if referee is not None and text else None
            if referee is not None and judged is not None:
                referee.add(text, *judged)
            if video is not None:
                video.add(video_panels(obs), [obs.instruction, f"step {steps}: {text or '(no subtask yet)'}"])
            t = time.perf_counter()
            obs, success = sim.step(np.asarray(action, np.float64)[:ACTION_DIMS])
            env_ms.append((time.perf_counter() - t) * 1e3)
            steps += 1
    except RolloutError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken sim step fails the episode, as in openpi's evaluator
        error = f"{type(err).__name__}: {err}"
    finally:
        trace = policy.end()
    saved = None
    if video is not None:
        assert video_dir is not None  # the video exists only with a video_dir
        video.add(video_panels(obs), [obs.instruction, f"step {steps}: {'SUCCESS' if success else 'failure'}"])
        video.close()
        final = video_path(video_dir.parent, job, libero, success)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(video.path, final)
        saved = str(final.relative_to(video_dir.parent))
    return EpisodeResult(
        job=job,
        instruction=obs.instruction,
        success=success,
        steps=steps,
        subtasks=tuple(marks),
        policy_ms=trace.policy_ms,
        server_ms=trace.server_ms,
        env_ms=tuple(env_ms),
        planner_updates=trace.planner_updates,
        video=saved,
        error=error,
        wall_s=time.perf_counter() - started,
        worker=worker,
        referee=referee if referee is not None and referee.steps else None,
    )


# -- workers -------------------------------------------------------------------------------------------------


def _make_sim(config: RolloutConfig, libero_tasks: Sequence) -> Sim:
    if config.selection.kind == "libero":
        from sim.libero import LiberoSim

        return LiberoSim(
            libero_tasks, image_size=config.image_size, max_steps=config.max_steps, prompt=config.libero_prompt
        )
    render = config.policy.kind == "remote" or config.video
    view_size = max(VIDEO_VIEW_SIZE, config.image_size) if config.video else 0
    return BuiltinSim(config.image_size, render, config.max_steps, view_size=view_size)


def _make_policy(config: RolloutConfig, sim: Sim, run_id: str, worker: int) -> Policy:
    if config.policy.kind == "scripted":
        assert isinstance(sim, BuiltinSim), "the scripted policy runs the built-in tasks only (checked by rollout)"
        return ScriptedPolicy(sim)
    return RemotePolicy(config.policy.for_worker(worker), effective_replan_steps(config), run_id)


def run_worker(
    worker: int,
    config: RolloutConfig,
    libero_tasks: Sequence,
    jobs: Iterable[Job],
    emit: Callable[[Event], None],
    run_id: str,
) -> None:
    sim = _make_sim(config, libero_tasks)
    policy = _make_policy(config, sim, run_id, worker)
    video_dir = config.out_dir / "videos" if config.video else None
    try:
        for job in jobs:
            emit(
                EpisodeDone(
                    run_episode(
                        job,
                        sim,
                        policy,
                        worker=worker,
                        emit=emit,
                        video_dir=video_dir,
                        libero=config.selection.kind == "libero",
                    )
                )
            )
    finally:
        policy.close()
        sim.close()


def _jobs_from(job_queue) -> Iterable[Job]:
    while (job := job_queue.get()) is not None:
        yield job


def _worker_main(worker: int, config: RolloutConfig, libero_tasks: Sequence, job_queue, events, run_id: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run_worker(worker, config, libero_tasks, _jobs_from(job_queue), events.put, run_id)
    except RolloutError as err:
        events.put(WorkerFailed(worker, str(err)))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which stops the run
        events.put(WorkerFailed(worker, f"worker {worker} failed: {type(err).__name__}: {err}"))
    else:
        events.put(WorkerExited(worker))


def _run_pool(
    config: RolloutConfig, libero_tasks: Sequence, jobs: Sequence[Job], handle: Callable[[Event], None], run_id: str
) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    job_queue, events = ctx.Queue(), ctx.Queue()
    workers = min(config.workers, len(jobs))
    for job in jobs:
        job_queue.put(job)
    for _ in range(workers):
        job_queue.put(None)
    processes = [
        ctx.Process(
            target=_worker_main,
            args=(w, config, libero_tasks, job_queue, events, run_id),
            name=f"rollout-worker-{w}",
            daemon=True,
        )
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    running = set(range(workers))
    try:
        while running:
            try:
                event = events.get(timeout=POLL_S)
            except queue.Empty:
                dead = [w for w in running if not processes[w].is_alive()]
                if dead:
                    code = processes[dead[0]].exitcode
                    raise RolloutError(f"rollout worker {dead[0]} died (exit code {code})") from None
                continue
            if isinstance(event, WorkerExited):
                running.discard(event.worker)
            elif isinstance(event, WorkerFailed):
                raise RolloutError(event.message)
            else:
                handle(event)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)


# -- planning, reporting, results ----------------------------------------------------------------------------


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


def latency_summary(values: Sequence[float]) -> dict:
    x = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if not x.size:
        return {"count": 0}
    p50, p90, p99 = np.percentile(x, (50, 90, 99))
    return {
        "count": int(x.size),
        "mean": round(float(x.mean()), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(x.max()), 3),
    }


def summarize(config: RolloutConfig, results: Sequence[EpisodeResult], wall_s: float) -> dict:
    libero = config.selection.kind == "libero"
    ordered = sorted(results, key=lambda r: r.job.index)
    per_task: dict[str, dict] = {}
    for r in ordered:
        row = per_task.setdefault(r.job.task, {"episodes": 0, "successes": 0, "steps": 0})
        row["episodes"] += 1
        row["successes"] += int(r.success)
        row["steps"] += r.steps
    for row in per_task.values():
        row["success_rate"] = row["successes"] / row["episodes"]
        row["mean_steps"] = round(row.pop("steps") / row["episodes"], 2)
    successes = sum(r.success for r in ordered)
    results_json = {
        "success_rate": successes / len(ordered) if ordered else 0.0,
        "episodes": [r.to_json(libero) for r in ordered],
        "per_task": per_task,
        "latency_ms": latency_summary([v for r in ordered for v in r.policy_ms]),
        "env_step_ms": latency_summary([v for r in ordered for v in r.env_ms]),
        "config": {
            "env": config.selection.label,
            "tasks": sorted(per_task),
            "episodes_per_task": config.episodes,
            "policy": config.policy.label,
            "seed": effective_seed(config),
            "replan_steps": effective_replan_steps(config) if config.policy.kind == "remote" else None,
            "workers": config.workers,
            "servers": list(config.policy.addresses()) if config.policy.kind == "remote" else [],
            "image_size": config.image_size,
            "max_steps": config.max_steps,
        },
        "wall_s": round(wall_s, 2),
    }
    if config.policy.kind == "remote":
        results_json["server_ms"] = latency_summary([v for r in ordered for v in r.server_ms])
    counts = [r.referee for r in ordered if r.referee is not None]
    if counts:
        steps = sum(c.steps for c in counts)
        results_json["planner_closed_loop"] = {
            "steps": steps,
            "subtask_fit": round(sum(c.fit for c in counts) / steps, 4),
            "unknown_phrase_rate": round(sum(c.unknown for c in counts) / steps, 4),
        }
    return results_json


def format_table(results: dict) -> list[str]:
    """The per-task table printed at the end of a run."""
    per_task = results["per_task"]
    width = max([len("task"), *(len(t) for t in per_task)]) if per_task else 4
    lines = [f"{'task':<{width}}  {'episodes':>8}  {'success':>7}  {'rate':>6}  {'mean steps':>10}"]
    for task, row in per_task.items():
        lines.append(
            f"{task:<{width}}  {row['episodes']:>8}  {row['successes']:>7}  "
            f"{row['success_rate']:>6.3f}  {row['mean_steps']:>10.1f}"
        )
    total = len(results["episodes"])
    ok = sum(e["success"] for e in results["episodes"])
    lines.append(f"{'all':<{width}}  {total:>8}  {ok:>7}  {results['success_rate']:>6.3f}")
    lat = results["latency_ms"]
    if lat.get("count"):
        lines.append(f"policy latency: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms over {lat['count']} queries")
    env = results["env_step_ms"]
    if env.get("count"):
        lines.append(f"env step: p50 {env['p50']:.1f} ms, p99 {env['p99']:.1f} ms")
    planner = results.get("planner_closed_loop")
    if planner:
        lines.append(
            f"closed-loop subtasks: {planner['subtask_fit']:.3f} fit the world's state, "
            f"{planner['unknown_phrase_rate']:.3f} unknown phrases, over {planner['steps']} steps"
        )
    return lines


class Reporter:
    """Prints subtask changes and finished episodes as they happen, under a tqdm bar on a terminal's stderr."""

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        progress: bool = True,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ):
        self.total = total
        self.quiet = quiet
        self.out = out or sys.stdout
        self.results: list[EpisodeResult] = []
        self._bar = tqdm(
            total=total,
            unit="episode",
            file=err or sys.stderr,
            dynamic_ncols=True,
            disable=None if progress else True,  # None: off when the stream is not a terminal
        )

    def handle(self, event: Event) -> None:
        if isinstance(event, SubtaskChanged):
            if not self.quiet:
                self._print(f"{_tag(event.job)} step {event.step:>3}: {event.text}")
            return
        result = event.result
        self.results.append(result)
        outcome = "success" if result.success else ("error" if result.error else "failure")
        detail = f": {result.error}" if result.error else ""
        self._print(f"{_tag(result.job)} {outcome} after {result.steps} steps ({result.wall_s:.1f} s){detail}")
        self._bar.set_postfix_str(f"{sum(r.success for r in self.results)} successes", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()

    def _print(self, line: str) -> None:
        with self._bar.external_write_mode(file=self.out):
            print(line, file=self.out, flush=True)


def _tag(job: Job) -> str:
    task = f"task {job.task_id}" if job.task_id >= 0 else job.task
    return f"[{task} ep {job.episode} seed {job.seed}]"


def rollout(config: RolloutConfig, reporter: Reporter | None = None) -> dict:
    """Runs every episode of the selection and writes `results.json` → the results."""
    if config.workers < 1:
        raise RolloutError(f"--workers must be >= 1, got {config.workers}")
    if config.replan_steps is not None and config.replan_steps < 1:
        raise RolloutError(f"--replan-steps must be >= 1, got {config.replan_steps}")
    jobs, libero_tasks = plan_jobs(config)
    if config.policy.kind == "remote":
        servers = config.policy.addresses()
        if len(servers) > min(config.workers, len(jobs)):
            raise RolloutError(
                f"{len(servers)} servers need at least as many workers and episodes (--workers {config.workers}, "
                f"{len(jobs)} episodes): each worker talks to one server"
            )
        interfaces = {check_runtime(dataclasses.replace(config.policy, address=a)) for a in servers}
        if len(interfaces) > 1:
            raise RolloutError(f"the servers {', '.join(servers)} do not serve the same cameras")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    reporter = reporter or Reporter(len(jobs), quiet=config.quiet, progress=config.progress)
    run_id = f"rollout-{secrets.token_hex(4)}"
    started = time.monotonic()
    try:
        if config.workers == 1 or len(jobs) == 1:
            run_worker(0, config, libero_tasks, jobs, reporter.handle, run_id)
        else:
            _run_pool(config, libero_tasks, jobs, reporter.handle, run_id)
    finally:
        reporter.close()
    results = summarize(config, reporter.results, time.monotonic() - started)
    path = config.out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    latencies = [v for r in reporter.results for v in r.policy_ms]
    plot_summary(results["per_task"], latencies, config.out_dir / SUMMARY_FILE)
    return results
