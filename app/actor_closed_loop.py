"""The actor in closed loop with a perfect planner: the scripted expert's subtask for the current world (words,
and location words when the checkpoint speaks them) in place of the planner's, on held-out scenes.

    python -m app.actor_closed_loop --checkpoint DIR [--tasks pick_place two_stage] [--episodes 8] [--seed 0]
        [--replan-steps 2]

A rollout's failures belong to the planner, the actor or both; this run takes the planner out. Its success
rate is the ceiling that a better planner alone can reach with this actor, and the gap to `rollout` is what
the planner costs. The expert re-reads the world every step, so after a slip it names the recovery subtask
("move to the red cube" again), as a planner should. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable, Sequence

import numpy as np

from actor.engine import ChunkRequest
from app.actor_eval import serving_engine
from app.planner_eval import DEFAULT_TASKS, check_tasks, speaks_locations
from policy.errors import UserFacingError
from policy.inputs import LIBERO_CAMERAS
from policy.model_dir import ModelDir
from sim.expert import ScriptedExpert
from sim.rollout_config import BUILTIN_REPLAN_STEPS
from sim.tasks import make
from training.metrics import Progress

DEFAULT_SEED = 0  # rollouts' held-out seeds; the bundle's recordings start at 100000

# (observation, subtask, step) → an action chunk [H, 7]
Chunker = Callable[[dict, str, int], np.ndarray]


class ActorClosedLoopError(UserFacingError):
    """A bad argument; one line for the user."""


def run_episode(env, chunker: Chunker, seed: int, replan_steps: int, locations: bool) -> dict:
    """One episode of `env` reset with `seed`, the actor (`chunker`) acting on the expert's subtasks."""
    obs = env.reset(seed=seed)
    expert = ScriptedExpert(locations=locations)
    expert.reset(env)
    queued: list[np.ndarray] = []
    subtasks: list[str] = []
    step, done, info = 0, False, {}
    while not done:
        _, subtask = expert.act(env)
        if not subtasks or subtasks[-1] != subtask:
            subtasks.append(subtask)
        if not queued:
            queued = list(chunker(obs, subtask, step)[:replan_steps])
        obs, done, info = env.step(queued.pop(0))
        step += 1
    return {"success": bool(info.get("success")), "steps": step, "subtasks": len(subtasks)}


def evaluate(
    checkpoint: pathlib.Path,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    episodes: int = 8,
    seed: int = DEFAULT_SEED,
    replan_steps: int = BUILTIN_REPLAN_STEPS,
    progress: bool = False,
) -> dict:
    check_tasks(tasks, ActorClosedLoopError)
    if episodes < 1:
        raise ActorClosedLoopError(f"--episodes must be at least 1, got {episodes}")
    if replan_steps < 1:
        raise ActorClosedLoopError(f"--replan-steps must be at least 1, got {replan_steps}")
    model_dir = ModelDir.open(checkpoint)
    engine = serving_engine(model_dir)
    if replan_steps > model_dir.config.action_horizon:
        raise ActorClosedLoopError(
            f"--replan-steps {replan_steps} is longer than the checkpoint's chunk ({model_dir.config.action_horizon})"
        )
    locations = speaks_locations(model_dir.text_tokenizer().pieces())
    cameras = {c: key for c, key in LIBERO_CAMERAS.items() if key in model_dir.config.image_keys}

    def chunker(obs: dict, subtask: str, step: int) -> np.ndarray:
        images = {cameras[c]: image for c, image in obs["images"].items()}
        return engine.run([ChunkRequest(images, obs["task"], subtask, obs["state"], seed=step)])[0].actions

    per_task: dict[str, list[dict]] = {}
    bar = Progress(len(tasks) * episodes, label="episodes", enabled=progress)
    try:
        for task in tasks:
            env = make(task, seed=seed, image_size=model_dir.config.vision.image_size, cameras=tuple(cameras))
            try:
                per_task[task] = []
                for k in range(episodes):
                    per_task[task].append(run_episode(env, chunker, seed + k, replan_steps, locations))
                    bar.update(sum(map(len, per_task.values())))
            finally:
                env.close()
    finally:
        bar.close()
    rows = [r for runs in per_task.values() for r in runs]
    return {
        "checkpoint": str(checkpoint),
        "seed": seed,
        "replan_steps": replan_steps,
        "locations": locations,
        "episodes": len(rows),
        "success": round(sum(r["success"] for r in rows) / len(rows), 3),
        "per_task": {task: sum(r["success"] for r in runs) for task, runs in per_task.items()},
        "mean_steps": round(float(np.mean([r["steps"] for r in rows])), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.actor_closed_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path, help="model directory")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK")
    parser.add_argument("--episodes", type=int, default=8, help="held-out episodes per task")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="episode k of a task uses seed SEED + k")
    parser.add_argument("--replan-steps", type=int, default=BUILTIN_REPLAN_STEPS, help="actions of each chunk executed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        summary = evaluate(
            args.checkpoint,
            tasks=args.tasks,
            episodes=args.episodes,
            seed=args.seed,
            replan_steps=args.replan_steps,
            progress=not args.no_progress,
        )
    except (UserFacingError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    per_task = ", ".join(f"{task} {wins}/{args.episodes}" for task, wins in summary["per_task"].items())
    print(
        f"actor with the expert's subtasks, {summary['episodes']} held-out episodes: "
        f"{summary['success']:.2f} ({per_task})"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
