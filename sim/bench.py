"""Stepping and rendering cost of the built-in env, per control step and per camera.

    python -m sim.bench --episodes 3 --size 128 --size 224

The expert drives the arm (real contacts, a real grasp), so physics time is what an episode costs; each
configuration replays the same seeds with 0, 1 and 2 cameras, and a camera's cost is the difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence

import numpy as np

CAMERA_SETS: tuple[tuple[str, ...], ...] = ((), ("agentview",), ("agentview", "wrist"))


@dataclasses.dataclass(frozen=True)
class StepTiming:
    task: str
    image_size: int
    cameras: int
    steps: int
    median_ms: float
    p95_ms: float


def time_steps(task: str, image_size: int, cameras: Sequence[str], seeds: Sequence[int]) -> StepTiming:
    from sim.expert import ScriptedExpert
    from sim.tasks import make

    env = make(
        task, seed=seeds[0], image_size=image_size, cameras=tuple(cameras) or ("agentview",), render=bool(cameras)
    )
    times = []
    try:
        for seed in seeds:
            env.reset(seed=seed)
            expert, done = ScriptedExpert(), False
            while not done:
                action, _ = expert.act(env)
                t = time.perf_counter()
                _, done, _ = env.step(action)
                times.append((time.perf_counter() - t) * 1e3)
    finally:
        env.close()
    median, p95 = np.percentile(times, (50, 95))
    return StepTiming(task, image_size, len(cameras), len(times), round(float(median), 2), round(float(p95), 2))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--size", type=int, action="append", help="image side in pixels (repeatable; default 224)")
    args = parser.parse_args(argv)
    seeds = list(range(args.episodes))
    for size in args.size or [224]:
        rows = [time_steps(args.task, size, cameras, seeds) for cameras in CAMERA_SETS]
        for row in rows:
            print(json.dumps(dataclasses.asdict(row)))
        per_camera = (rows[2].median_ms - rows[0].median_ms) / 2
        print(
            json.dumps(
                {
                    "image_size": size,
                    "physics_ms_per_step": rows[0].median_ms,
                    "render_ms_per_camera": round(per_camera, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
