"""Does the policy bind the words to the object that has them? Measured at the reset pose of held-out scenes,
where the hand gives nothing away, so neither network can read the target off where the hand is heading.

    python -m app.binding_eval --checkpoint DIR [--tasks pick_place two_stage] [--scenes 20] [--seed 0]

Three figures, each with its chance level (a uniform pick among the scene's objects):
- `actor`: told "move to the X" for each object X in turn (with X's location words when the checkpoint speaks
  them), does its first chunk head for X? The object it heads for is the one whose direction from the hand is
  closest, by cosine, to the chunk's summed move (the scripted expert's own first chunk scores 1.0).
- `planner`: does its first subtask name the target ("move to the {target}"), and, for a location-speaking
  checkpoint, is the object nearest the place it names the target?
- `policy`: the two together: given the planner's subtask, does the actor head for the target?
- `planner_locates` (location-speaking checkpoints): asked "locate the X" for each object X in turn, with the
  state zeroed as in training's localisation questions, is the object nearest its answer X?

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from actor.engine import ChunkRequest
from app.actor_eval import serving_engine
from app.planner_eval import DEFAULT_TASKS, check_tasks, load_decoder, speaks_locations
from planner.decoder import DecodeRequest
from policy.errors import UserFacingError
from policy.inputs import LIBERO_CAMERAS
from policy.model_dir import ModelDir
from policy.normalize import unnormalize
from sim.locations import location_words, split_location
from sim.tasks import make
from training.metrics import Progress

DEFAULT_SEED = 0  # rollouts' held-out seeds; the bundle's recordings start at 100000
MAX_NEW_TOKENS = 24


class BindingEvalError(UserFacingError):
    """A bad argument; one line for the user."""


def aimed_object(move: np.ndarray, hand: np.ndarray, objects: np.ndarray) -> int:
    """Index of the object (rows of `objects`, xyz) whose direction from `hand` is closest to `move` (xyz)."""
    towards = objects - hand
    cosine = towards @ move / np.maximum(np.linalg.norm(towards, axis=1) * np.linalg.norm(move), 1e-9)
    return int(np.argmax(cosine))


def nearest_object(xy: np.ndarray, objects: np.ndarray) -> int:
    """Index of the object (rows of `objects`, xyz) nearest the table position `xy`."""
    return int(np.argmin(np.linalg.norm(objects[:, :2] - xy, axis=1)))


def _move_to(description: str, xy: np.ndarray | None) -> str:
    return f"move to the {description}" + ("" if xy is None else f" {location_words(xy)}")


def evaluate(
    checkpoint: pathlib.Path,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    scenes: int = 20,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> dict:
    check_tasks(tasks, BindingEvalError)
    if scenes < 1:
        raise BindingEvalError(f"--scenes must be at least 1, got {scenes}")
    model_dir = ModelDir.open(checkpoint)
    engine = serving_engine(model_dir)
    _, decoder = load_decoder(checkpoint, None, None, 1, MAX_NEW_TOKENS)
    locations = speaks_locations(model_dir.text_tokenizer().pieces())
    cameras = {c: key for c, key in LIBERO_CAMERAS.items() if key in model_dir.config.image_keys}
    stats = model_dir.norm_stats["state"]
    blank = unnormalize(np.zeros(stats.dim), stats, use_quantiles=model_dir.config.use_quantiles).astype(np.float32)
    rows = []
    bar = Progress(len(tasks) * scenes, label="scenes", enabled=progress)
    try:
        for task in tasks:
            env = make(task, seed=seed, image_size=model_dir.config.vision.image_size, cameras=tuple(cameras))
            try:
                for k in range(scenes):
                    obs = env.reset(seed=seed + k)
                    rows.append(_score_scene(engine, decoder, env, obs, cameras, locations, trial=k, blank=blank))
                    bar.update(len(rows))
            finally:
                env.close()
    finally:
        bar.close()

    def share(key: str) -> float:
        return round(sum(r[key] for r in rows) / sum(r[f"{key}_trials"] for r in rows), 3)

    return {
        "checkpoint": str(checkpoint),
        "tasks": list(tasks),
        "scenes": len(rows),
        "seed": seed,
        "locations": locations,
        "chance": round(float(np.mean([r["chance"] for r in rows])), 3),
        "actor": share("actor"),
        "planner_words": share("planner_words"),
        "planner_located": share("planner_located") if locations else None,
        "policy": share("policy"),
        "planner_locates": share("planner_locates") if locations else None,
    }


def _score_scene(
    engine, decoder, env, obs: dict, cameras: dict, locations: bool, trial: int, blank: np.ndarray
) -> dict:
    """Hits and trials of one scene at its reset pose (see the module docstring)."""
    images = {cameras[c]: image for c, image in obs["images"].items()}
    hand = np.asarray(env.ee_pos())
    objects = env.layout.objects
    where = np.stack([np.asarray(env.body_pos(o.name)) for o in objects])
    target = [o.name for o in objects].index(env.goal.stages[0][0])

    def aim(subtask: str) -> int:
        chunk = engine.run([ChunkRequest(images, obs["task"], subtask, obs["state"], seed=trial)])[0].actions
        return aimed_object(chunk[:, :3].sum(axis=0), hand, where)

    actor = sum(aim(_move_to(o.description, where[i, :2] if locations else None)) == i for i, o in enumerate(objects))
    said = decoder.decode([DecodeRequest(images, obs["task"], obs["state"])], temperature=0.0)[0].text
    words, place = split_location(said)
    locates = 0
    if locations:
        questions = [DecodeRequest(images, f"locate the {o.description}", blank) for o in objects]
        for i, answer in enumerate(decoder.decode(questions, temperature=0.0)):
            _, at = split_location(" " + answer.text)
            locates += at is not None and nearest_object(at, where) == i
    return {
        "chance": 1 / len(objects),
        "actor": actor,
        "actor_trials": len(objects),
        "planner_words": words.strip() == f"move to the {objects[target].description}",
        "planner_words_trials": 1,
        "planner_located": place is not None and nearest_object(place, where) == target,
        "planner_located_trials": 1,
        "policy": bool(said.strip()) and aim(said) == target,  # an empty subtask is no plan
        "policy_trials": 1,
        "planner_locates": locates,
        "planner_locates_trials": len(objects),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.binding_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path, help="model directory")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK")
    parser.add_argument("--scenes", type=int, default=20, help="held-out scenes per task")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="scene k of a task uses seed SEED + k")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        summary = evaluate(
            args.checkpoint, tasks=args.tasks, scenes=args.scenes, seed=args.seed, progress=not args.no_progress
        )
    except (UserFacingError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    located = ""
    if summary["locations"]:
        located = f", locates it {summary['planner_located']:.2f} (asked, any object: {summary['planner_locates']:.2f})"
    print(
        f"at the reset pose of {summary['scenes']} held-out scenes (chance {summary['chance']:.2f}): actor heads "
        f"for the object named {summary['actor']:.2f}; planner names the target {summary['planner_words']:.2f}"
        f"{located}; planner + actor head for the target {summary['policy']:.2f}"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
