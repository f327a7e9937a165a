"""Running a rollout's episodes: one episode's loop, a worker's sim and policy, and the pool of spawned workers.

Workers report subtask changes and finished episodes as events, so the calling process prints them as they
happen, whether the episodes run in it or in the pool.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import queue
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from sim.episode import ACTION_DIMS, BuiltinSim, Job, Judgement, Sim, SimObservation
from sim.locations import split_location
from sim.rollout_config import RolloutConfig, RolloutError, effective_replan_steps
from sim.rollout_policies import Policy, RemotePolicy, ScriptedPolicy

POLL_S = 0.5
VIDEO_VIEW_SIZE = 256  # builtin videos show every camera at this size beside the policy's own input


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
    episode (`unknown`: a phrase never seen in training). Where the subtask ends in location words
    (`sim.locations`), `located` counts the steps and `location_error_m` sums how far they were from the thing
    the subtask names (a drop point lies up to `sim.expert.RELEASE_OFFSET` from its container's centre)."""

    steps: int = 0
    fit: int = 0
    unknown: int = 0
    located: int = 0
    location_error_m: float = 0.0

    def add(self, text: str, judged: Judgement) -> None:
        words, where = split_location(text)
        said = " ".join(words.lower().split()).rstrip(".;")
        self.steps += 1
        self.fit += said in judged.fitting
        self.unknown += said not in judged.phrases
        named = next((xy for thing, xy in judged.places.items() if said.endswith(" " + thing)), None)
        if where is not None and named is not None:
            self.located += 1
            self.location_error_m += float(np.linalg.norm(where - named))


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
                referee.add(text, judged)
            if video is not None:
                target = split_location(text)[1]
                shown = sim.mark_target(obs, target) if target is not None else obs
                video.add(video_panels(shown), [obs.instruction, f"step {steps}: {text or '(no subtask yet)'}"])
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


def run_pool(
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
