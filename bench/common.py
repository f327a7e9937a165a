"""What the runtime benches share: the task, the camera frames a bench robot sends, the random `tiny` checkpoint
they serve when given none, and percentiles. numpy only at import, so a bench's client processes stay light."""

from __future__ import annotations

import contextlib
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

TASK = "put the red cube in the bowl"
SCENES = 8
CAMERAS = ("agentview", "wrist")


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(samples_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(samples_ms, 99)), 3),
    }


def noise_frames(seed: int, size: int = 224) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for name in CAMERAS}


def scene_frames(count: int = SCENES, size: int = 224) -> list[dict[str, np.ndarray]]:
    """Both cameras of the first frame of `count` built-in episodes (MuJoCo renders them)."""
    from sim import tasks

    scenes = []
    for seed in range(count):
        env = tasks.make(("pick_place", "two_stage")[seed % 2], seed=seed, image_size=size)
        scenes.append(dict(env.reset()["images"]))
        env.close()
    return scenes


class FrameSource:
    """Frame `i` of a robot's stream: rendered scenes in turn, or fresh uniform noise (a JPEG encoder's worst
    case). `frames` gives the scenes ready made (a client process then renders nothing)."""

    def __init__(self, kind: str, size: int = 224, frames: Sequence[dict[str, np.ndarray]] | None = None):
        if kind not in ("scene", "noise"):
            raise ValueError(f"frames must be 'scene' or 'noise', got {kind!r}")
        self.kind, self.size = kind, size
        self.scenes = list(frames) if frames is not None else scene_frames(size=size) if kind == "scene" else None

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        return self.scenes[i % len(self.scenes)] if self.scenes is not None else noise_frames(i, self.size)


def tiny_checkpoint(out: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """A random-weight `tiny` checkpoint written by the CLI's `init-checkpoint` (what a bench serves by default);
    the CLI's message goes to stderr, leaving stdout to the bench's own output."""
    from app.cli import main as cli

    with contextlib.redirect_stdout(sys.stderr):
        cli(["init-checkpoint", "--config", "tiny", "--out", str(out), "--seed", str(seed)])
    return out
