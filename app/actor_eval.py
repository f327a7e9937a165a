"""How well the actor reproduces the scripted expert's next action, teacher-forced, on scenes it trained on and
on held-out ones: a minute-long offline figure for the closed-loop failures a rollout shows.

    python -m app.actor_eval --checkpoint DIR [--tasks pick_place two_stage] [--episodes 4]
        [--train-seed 100000] [--heldout-seed 0] [--every 3] [--batch 16]

Frames come from clean expert episodes (`app.planner_eval.collect_frames`), the actor gets the expert's own
subtask as its subtask (so planner errors do not count) and the checkpoint's serving noise scale, with a fixed
seed. Per phase of the subtask ("move to", "grasp", ...) it reports, for the first action of each chunk: the
position error (Euclidean, robot units), the expert's step size, and the cosine between the two moves; and
the same per split. `train` scenes use the bundle recorder's seeds (100000+: the scenes the bundle was trained
on, without its noise and mistakes), `heldout` the rollout's (0+). Similar figures in both splits mean the
actor underfits; a large gap means it memorises scenes.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from actor.engine import ChunkEngine, ChunkRequest, EngineConfig
from app.planner_eval import DEFAULT_TASKS, Frame, collect_frames, phase_of, speaks_locations
from policy.errors import UserFacingError
from policy.model_dir import ModelDir
from sim.episode import ACTION_DIMS

TRAIN_SEED = 100_000  # bundles/recreate_builtin.sh records from here
HELDOUT_SEED = 0  # rollouts start here


def serving_engine(model_dir: ModelDir) -> ChunkEngine:
    """The actor engine for the built-in tasks' 7-D actions, with the checkpoint's serving noise scale."""
    return ChunkEngine.from_model_dir(
        model_dir, EngineConfig(action_dims=ACTION_DIMS, noise_scale=model_dir.serving.noise_scale)
    )


def first_actions(engine: ChunkEngine, frames: Sequence[Frame], batch: int) -> np.ndarray:
    """The first action of the actor's chunk for each frame, conditioned on the expert's subtask."""
    out = []
    for start in range(0, len(frames), batch):
        requests = [
            ChunkRequest(f.cameras, f.instruction, f.label, f.state, seed=i)
            for i, f in enumerate(frames[start : start + batch], start)
        ]
        out += [r.actions[0] for r in engine.run(requests)]
    return np.stack(out)


def _expert_action(frame: Frame) -> np.ndarray:
    assert frame.action is not None  # collect_frames records the expert's action with every frame
    return frame.action


def move_fit(predicted: np.ndarray, expert: np.ndarray) -> dict:
    """Position error, expert step and cosine of the xyz moves, averaged over frames."""
    p, e = predicted[:, :3], expert[:, :3]
    error = np.linalg.norm(p - e, axis=1)
    step = np.linalg.norm(e, axis=1)
    moving = step > 1e-3
    cosine = np.sum(p * e, axis=1) / np.maximum(np.linalg.norm(p, axis=1) * step, 1e-9)
    return {
        "frames": int(len(p)),
        "position_error": round(float(error.mean()), 4),
        "expert_step": round(float(step.mean()), 4),
        "cosine": round(float(cosine[moving].mean()), 3) if moving.any() else None,
    }


def evaluate(
    checkpoint: pathlib.Path,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    episodes: int = 4,
    seeds: dict[str, int] | None = None,
    every: int = 3,
    batch: int = 16,
    progress: bool = False,
) -> dict:
    model_dir = ModelDir.open(checkpoint)
    engine = serving_engine(model_dir)
    image_size = model_dir.config.vision.image_size
    locations = speaks_locations(model_dir.text_tokenizer().pieces())
    summary: dict = {"checkpoint": str(checkpoint), "episodes_per_task": episodes}
    for split, seed in (seeds or {"train": TRAIN_SEED, "heldout": HELDOUT_SEED}).items():
        frames = collect_frames(tasks, episodes, seed, image_size, every=every, locations=locations, progress=progress)
        predicted = first_actions(engine, frames, batch)
        expert = np.stack([_expert_action(f) for f in frames])
        by_phase = collections.defaultdict(list)
        for i, frame in enumerate(frames):
            by_phase[phase_of(frame.label)].append(i)
        summary[split] = {"seed": seed, "all": move_fit(predicted, expert)} | {
            phase: move_fit(predicted[rows], expert[rows]) for phase, rows in sorted(by_phase.items())
        }
    return summary


def report_lines(summary: dict) -> list[str]:
    lines = [f"{'split':8s} {'phase':11s} {'frames':>6s} {'error':>7s} {'expert':>7s} {'cosine':>7s}"]
    for split in ("train", "heldout"):
        for phase, fit in summary.get(split, {}).items():
            if phase == "seed":
                continue
            cosine = "-" if fit["cosine"] is None else f"{fit['cosine']:.3f}"
            lines.append(
                f"{split:8s} {phase:11s} {fit['frames']:6d} {fit['position_error']:7.3f} "
                f"{fit['expert_step']:7.3f} {cosine:>7s}"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.actor_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path, help="model directory")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per task and split")
    parser.add_argument("--train-seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--heldout-seed", type=int, default=HELDOUT_SEED)
    parser.add_argument("--every", type=int, default=3, help="keep every N-th frame")
    parser.add_argument("--batch", type=int, default=16, help="frames per actor call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        summary = evaluate(
            args.checkpoint,
            tasks=args.tasks,
            episodes=args.episodes,
            seeds={"train": args.train_seed, "heldout": args.heldout_seed},
            every=args.every,
            batch=args.batch,
            progress=not args.no_progress,
        )
    except (UserFacingError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    for line in report_lines(summary):
        print(line)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
