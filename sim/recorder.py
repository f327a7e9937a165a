"""Record scripted-expert episodes as a LeRobot dataset (codebase v2.1 layout).

    from sim.recorder import record
    summary = record("pick_place", episodes=100, out_dir="data/sim_pick_place", workers=2, image_size=224)

or ``python -m sim.recorder --task pick_place --episodes 100 --out data/sim_pick_place --workers 2``.

Layout written under ``out_dir``::

    meta/info.json              codebase_version "v2.1", fps, features (dtype/shape/names), paths
    meta/episodes.jsonl         {"episode_index", "tasks": [instruction], "length", "seed", "task_name"}
    meta/tasks.jsonl            {"task_index", "task"}
    meta/episodes_stats.jsonl   per-episode min/max/mean/std/count per feature (images: per channel, /255)
    data/chunk-000/episode_000000.parquet
        observation.state float32[8], action float32[7], timestamp float32, frame_index, episode_index,
        index, task_index (int64), subtask (string: the expert's current subtask for that frame),
        and with ``locations`` scene_locations (string: where every object and container is, `sim.locations`)
    videos/chunk-000/observation.images.agentview/episode_000000.mp4   (and .wrist; MPEG-4 part 2 "mp4v")

Frame t holds the observation before action t. The dataset always keeps the *clean* expert's action for
the state the robot is in, while the env may execute a perturbed one, so that the expert demonstrates how to
get back on track from the states a policy reaches through its own errors (DART, Laskey et al. 2017):
- ``action_noise`` σ > 0 adds Gaussian noise to the position dims of the executed action in every phase but
  the grasp and release holds (a jolt there only drops the object);
- ``mistakes`` p > 0: with probability p per stage, the executing expert's first grasp of that stage aims
  beside the object (5.5–7 cm along the fingers' width) or closes above it (4–5 cm); the clean expert's
  labels then show how to back off, reopen and grasp again.
- ``detours`` p > 0: with probability p per stage and move, the executing expert first heads over the wrong
  thing (another object before a grasp, the other container, where there is one, before a release), while the
  clean labels keep naming the right one and steering back to it. Without such frames the hand's heading
  gives the target away on nearly every frame, and a policy learns to follow the hand instead of the words.
``locations`` ends every move's label with its target's table position and adds the ``scene_locations``
column (`sim.locations`).
Episodes where the expert fails are dropped (counted in the
summary) and further seeds are tried until ``episodes`` successful ones exist. Attempt k uses seed
``seed + k`` and task ``task_name[k % len(task_name)]``, so a run is reproducible; kept episodes keep the
attempt order.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sim.expert import APPROACH, GRASP, RELEASE, TRANSPORT
from sim.locations import SCENE_LOCATIONS, scene_locations

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
ROBOT_TYPE = "tabletop_gantry_gripper"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
STATE_NAMES = ["ee_x", "ee_y", "ee_z", "ee_ax", "ee_ay", "ee_az", "finger_left", "finger_right"]
ACTION_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
VIDEO_FOURCC = "mp4v"
IMAGE_STAT_SAMPLES = 40  # frames per episode used for the image statistics


def video_key(camera: str) -> str:
    return f"observation.images.{camera}"


def build_features(image_size: tuple[int, int], cameras: Sequence[str], fps: float, locations: bool = False) -> dict:
    h, w = image_size
    feats: dict = {}
    for cam in cameras:
        feats[video_key(cam)] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": "mpeg4",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    feats["observation.state"] = {"dtype": "float32", "shape": [8], "names": STATE_NAMES}
    feats["action"] = {"dtype": "float32", "shape": [7], "names": ACTION_NAMES}
    for key, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        feats[key] = {"dtype": dtype, "shape": [1], "names": None}
    feats["subtask"] = {"dtype": "string", "shape": [1], "names": None}
    if locations:
        feats[SCENE_LOCATIONS] = {"dtype": "string", "shape": [1], "names": None}
    return feats


# ---------------------------------------------------------------------------------------- statistics


def _vector_stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [int(len(x))],
    }


def _image_stats(frames: list[np.ndarray]) -> dict:
    """Per-channel stats of uint8 HxWx3 frames scaled to [0, 1], shaped (3, 1, 1) like LeRobot's."""
    x = np.stack(frames).astype(np.float64) / 255.0  # N, H, W, 3

    def per_channel(v):
        return [[[float(c)]] for c in v]

    return {
        "min": per_channel(x.min((0, 1, 2))),
        "max": per_channel(x.max((0, 1, 2))),
        "mean": per_channel(x.mean((0, 1, 2))),
        "std": per_channel(x.std((0, 1, 2))),
        "count": [len(frames)],
    }


# ----------------------------------------------------------------------------------- one episode


class _EpisodeWorker:
    """Rolls expert episodes with one env per task, streaming frames to mp4 in a scratch folder."""

    def __init__(
        self,
        scratch: str,
        image_size,
        cameras,
        control_hz: float,
        task_options: dict,
        action_noise: float = 0.0,
        mistakes: float = 0.0,
        locations: bool = False,
        detours: float = 0.0,
        first_frames: int | None = None,
    ):
        self.scratch = scratch
        self.first_frames = first_frames
        self.detours = detours
        self.locations = locations
        self.action_noise = action_noise
        self.mistakes = mistakes
        self.image_size = tuple(image_size)
        self.cameras = tuple(cameras)
        self.control_hz = control_hz
        self.task_options = dict(task_options)
        self._envs: dict = {}

    def env(self, task_name: str):
        from sim.tasks import make

        if task_name not in self._envs:
            self._envs[task_name] = make(
                task_name,
                seed=0,
                image_size=self.image_size,
                cameras=self.cameras,
                control_hz=self.control_hz,
                **self.task_options,
            )
        return self._envs[task_name]

    def run(self, attempt: int, task_name: str, seed: int) -> dict:
        import cv2

        from sim.expert import ScriptedExpert

        env = self.env(task_name)
        noise_rng = np.random.default_rng([seed, attempt])
        obs = env.reset(seed=seed)
        labeller = ScriptedExpert(locations=self.locations)
        executor = ScriptedExpert(
            first_grasp_offset=draw_mistakes(noise_rng, self.mistakes, len(env.goal.stages)),
            detours=draw_detours(noise_rng, self.detours, env),
        )
        h, w = self.image_size
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)  # type: ignore[attr-defined]
        paths = {cam: os.path.join(self.scratch, f"attempt{attempt:06d}_{cam}.mp4") for cam in self.cameras}
        writers = {}
        for cam, p in paths.items():
            wr = cv2.VideoWriter(p, fourcc, float(self.control_hz), (w, h))
            if not wr.isOpened():
                raise RuntimeError(f"OpenCV cannot write {VIDEO_FOURCC} video to {p}")
            writers[cam] = wr
        states: list[np.ndarray] = []
        actions: list[np.ndarray] = []
        subtasks: list[str] = []
        scenes: list[str] = []
        frames_for_stats: dict[str, list] = {cam: [] for cam in self.cameras}
        stat_every = max(1, env.max_steps // IMAGE_STAT_SAMPLES)
        done = False
        info = {"success": False}
        noise_scale = self.action_noise * np.array([1, 1, 1, 0, 0, 0, 0], np.float64)
        try:
            while not done and (self.first_frames is None or len(states) < self.first_frames):
                action, subtask = labeller.act(env)
                executed, _ = executor.act(env)
                t = len(states)
                for cam in self.cameras:
                    img = obs["images"][cam]
                    writers[cam].write(np.ascontiguousarray(img[..., ::-1]))
                    if t % stat_every == 0:
                        frames_for_stats[cam].append(img[::2, ::2].copy())
                states.append(obs["state"])
                actions.append(action.astype(np.float32))
                subtasks.append(subtask)
                if self.locations:
                    scenes.append(scene_locations(env))
                if self.action_noise > 0 and executor.phase not in (GRASP, RELEASE):
                    executed = np.clip(executed + noise_rng.normal(size=executed.shape) * noise_scale, -1.0, 1.0)
                obs, done, info = env.step(executed)
        finally:
            for wr in writers.values():
                wr.release()
        ok = bool(info["success"]) or (self.first_frames is not None and len(states) == self.first_frames)
        result = {
            "attempt": attempt,
            "task_name": task_name,
            "seed": seed,
            "success": ok,
            "length": len(states),
            "instruction": env.instruction,
        }
        if not ok:
            for p in paths.values():
                if os.path.exists(p):
                    os.remove(p)
            return result
        result.update(
            videos=paths,
            state=np.stack(states).astype(np.float32),
            action=np.stack(actions).astype(np.float32),
            subtask=subtasks,
            scene_locations=scenes,
            image_stats={cam: _image_stats(frames_for_stats[cam]) for cam in self.cameras},
        )
        return result

    def close(self):
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def draw_mistakes(rng: np.random.Generator, prob: float, stages: int) -> dict[int, np.ndarray]:
    """{stage: grasp-point offset} for the stages whose first grasp goes deliberately wrong."""
    out = {}
    for stage in range(stages):
        if prob <= 0 or rng.random() >= prob:
            continue
        if rng.random() < 0.5:  # beside the object, along the hand's x (the fingers' width): they close on air
            offset = (rng.choice([-1.0, 1.0]) * rng.uniform(0.055, 0.07), rng.uniform(-0.01, 0.01), 0.0)
        else:  # above it: the fingertips close over the top
            offset = (rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01), rng.uniform(0.04, 0.05))
        out[stage] = np.array(offset)
    return out


def draw_detours(rng: np.random.Generator, prob: float, env) -> dict[tuple[int, str], str]:
    """{(stage, phase): body} for the moves that first go over the wrong thing: an object no stage has moved
    yet before a grasp, the other container before a release."""
    out: dict[tuple[int, str], str] = {}
    if prob <= 0:
        return out
    stages = env.goal.stages
    containers = [c.name for c in env.layout.containers]
    for stage, (obj, con) in enumerate(stages):
        moved = {o for o, _ in stages[:stage]}
        decoys = [o.name for o in env.layout.objects if o.name != obj and o.name not in moved]
        if decoys and rng.random() < prob:
            out[(stage, APPROACH)] = decoys[int(rng.integers(len(decoys)))]
        others = [c for c in containers if c != con]
        if others and rng.random() < prob:
            out[(stage, TRANSPORT)] = others[int(rng.integers(len(others)))]
    return out


_WORKER: _EpisodeWorker | None = None


def _pool_init(*worker_args):
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER = _EpisodeWorker(*worker_args)


def _pool_run(attempt: int, task_name: str, seed: int) -> dict:
    assert _WORKER is not None, "_pool_init runs first in every pool worker"
    return _WORKER.run(attempt, task_name, seed)


# --------------------------------------------------------------------------------------- progress


class _Progress:
    """Episodes recorded, with failures and frames, on a tqdm bar (silent when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True):
        self._bar = tqdm(total=total, unit="episode", file=sys.stderr, disable=None if enabled and total > 0 else True)

    def update(self, done: int, failed: int, frames: int) -> None:
        self._bar.set_postfix_str(f"{failed} failed, {frames} frames", refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


# ------------------------------------------------------------------------------------------ record


def _write_parquet(path: Path, r: dict, episode_index: int, global_start: int, task_index: int, fps: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = r["length"]
    frame = np.arange(n, dtype=np.int64)
    table = pa.table(
        {
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(r["state"].reshape(-1)), 8),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(r["action"].reshape(-1)), 7),
            "timestamp": pa.array((frame / fps).astype(np.float32)),
            "frame_index": pa.array(frame),
            "episode_index": pa.array(np.full(n, episode_index, dtype=np.int64)),
            "index": pa.array(global_start + frame),
            "task_index": pa.array(np.full(n, task_index, dtype=np.int64)),
            "subtask": pa.array(r["subtask"], type=pa.string()),
        }
    )
    if r["scene_locations"]:
        table = table.append_column(SCENE_LOCATIONS, pa.array(r["scene_locations"], type=pa.string()))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _video_frame_count(path: str) -> int:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return -1
        return int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


class _DatasetWriter:
    """The dataset as successful episodes arrive in attempt order: each one's videos, parquet and meta rows land
    here, numbered after the ones before it (episode index, global frame index, task index), and `write_meta`
    writes meta/ once they are all in."""

    def __init__(self, out: Path, fps: float):
        self.out = out
        self.fps = fps
        self.episodes = 0
        self.failed_seeds: list[tuple[str, int]] = []
        self.task_index: dict[str, int] = {}
        self.total_frames = 0
        self._episodes_rows: list[dict] = []
        self._stats_rows: list[dict] = []

    def add(self, r: dict) -> None:
        """One attempt's result: a failure is only counted; a success becomes the next episode."""
        if not r["success"]:
            self.failed_seeds.append((r["task_name"], r["seed"]))
            return
        out, fps = self.out, self.fps
        ep = self.episodes
        chunk = ep // CHUNKS_SIZE
        instr = r["instruction"]
        if instr not in self.task_index:
            self.task_index[instr] = len(self.task_index)
        for cam, src in r["videos"].items():
            dst = out / VIDEO_PATH.format(episode_chunk=chunk, video_key=video_key(cam), episode_index=ep)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dst)
            n_frames = _video_frame_count(str(dst))
            if n_frames != r["length"]:
                raise RuntimeError(f"{dst}: video reads back {n_frames} frames, expected {r['length']}")
        _write_parquet(
            out / DATA_PATH.format(episode_chunk=chunk, episode_index=ep),
            r,
            ep,
            self.total_frames,
            self.task_index[instr],
            fps,
        )
        self._episodes_rows.append(
            {
                "episode_index": ep,
                "tasks": [instr],
                "length": r["length"],
                "task_name": r["task_name"],
                "seed": r["seed"],
            }
        )
        n = r["length"]
        frame = np.arange(n)
        st = {
            "observation.state": _vector_stats(r["state"]),
            "action": _vector_stats(r["action"]),
            "timestamp": _vector_stats(frame / fps),
            "frame_index": _vector_stats(frame),
            "episode_index": _vector_stats(np.full(n, ep)),
            "index": _vector_stats(self.total_frames + frame),
            "task_index": _vector_stats(np.full(n, self.task_index[instr])),
        }
        for cam, s in r["image_stats"].items():
            st[video_key(cam)] = s
        self._stats_rows.append({"episode_index": ep, "stats": st})
        self.total_frames += n
        self.episodes += 1

    def write_meta(
        self,
        image_size: tuple[int, int],
        cameras: Sequence[str],
        action_noise: float,
        mistakes: float,
        locations: bool,
        detours: float,
    ) -> None:
        out, fps = self.out, self.fps
        n_eps = self.episodes
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": ROBOT_TYPE,
            "total_episodes": n_eps,
            "total_frames": self.total_frames,
            "total_tasks": len(self.task_index),
            "total_videos": n_eps * len(cameras),
            "total_chunks": max(1, math.ceil(n_eps / CHUNKS_SIZE)) if n_eps else 0,
            "chunks_size": CHUNKS_SIZE,
            "fps": fps,
            "splits": {"train": f"0:{n_eps}"},
            "action_noise": action_noise,
            "mistakes": mistakes,
            "locations": locations,
            "detours": detours,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": build_features(image_size, cameras, fps, locations),
        }
        with open(out / "meta" / "info.json", "w") as f:
            json.dump(info, f, indent=4)
        _write_jsonl(out / "meta" / "episodes.jsonl", self._episodes_rows)
        _write_jsonl(
            out / "meta" / "tasks.jsonl",
            [{"task_index": i, "task": t} for t, i in sorted(self.task_index.items(), key=lambda kv: kv[1])],
        )
        _write_jsonl(out / "meta" / "episodes_stats.jsonl", self._stats_rows)


def record(
    task_name: str | Sequence[str],
    episodes: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    workers: int = 1,
    image_size: int | Sequence[int] = 224,
    cameras: Sequence[str] = ("agentview", "wrist"),
    control_hz: float = 10.0,
    max_attempts: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    action_noise: float = 0.0,
    mistakes: float = 0.0,
    same_scene: bool = False,
    locations: bool = False,
    detours: float = 0.0,
    first_frames: int | None = None,
    **task_options,
) -> dict:
    """Record ``episodes`` successful expert episodes of ``task_name`` (a name or a list cycled over).

    ``same_scene`` records every attempt on the scene of ``seed`` (the perturbations still differ): the
    one-scene data of the learnability gate. ``first_frames`` keeps only each episode's first frames, from
    the reset pose on (scenes for localisation training, with the hand away from every thing). Returns a
    summary: {"out_dir", "episodes", "frames", "failed", "failed_seeds", "attempts", "tasks", "seconds"}.
    Raises RuntimeError if ``max_attempts`` (default 2 * episodes + 10) runs out.
    """
    from sim.tasks import TASKS

    names = [task_name] if isinstance(task_name, str) else list(task_name)
    if not names:
        raise ValueError("task_name is empty")
    for n in names:
        if n not in TASKS:
            raise KeyError(f"unknown task {n!r}; known: {sorted(TASKS)}")
    if episodes < 0:
        raise ValueError("episodes must be >= 0")
    if not (math.isfinite(action_noise) and action_noise >= 0):
        raise ValueError(f"action_noise must be a finite σ >= 0, got {action_noise}")
    if not 0.0 <= mistakes <= 1.0:
        raise ValueError(f"mistakes must be a probability in [0, 1], got {mistakes}")
    if not 0.0 <= detours <= 1.0:
        raise ValueError(f"detours must be a probability in [0, 1], got {detours}")
    if first_frames is not None and first_frames < 1:
        raise ValueError(f"first_frames must be >= 1, got {first_frames}")
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    image_size = (int(image_size[0]), int(image_size[1]))
    cameras = tuple(cameras)
    max_attempts = int(max_attempts if max_attempts is not None else 2 * episodes + 10)
    fps = int(control_hz) if float(control_hz).is_integer() else float(control_hz)

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True to replace it)")
        shutil.rmtree(out)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".recording_", dir=out)

    t0 = time.time()
    bar = _Progress(episodes, progress)
    dataset = _DatasetWriter(out, fps)
    attempts = 0

    def job(k: int) -> tuple[int, str, int]:
        return k, names[k % len(names)], seed if same_scene else seed + k

    worker_args = (
        scratch,
        image_size,
        cameras,
        control_hz,
        task_options,
        action_noise,
        mistakes,
        locations,
        detours,
        first_frames,
    )
    try:
        if workers <= 1:
            worker = _EpisodeWorker(*worker_args)
            try:
                while dataset.episodes < episodes and attempts < max_attempts:
                    r = worker.run(*job(attempts))
                    attempts += 1
                    dataset.add(r)
                    bar.update(dataset.episodes, len(dataset.failed_seeds), dataset.total_frames)
            finally:
                worker.close()
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")  # GL contexts do not survive fork
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=_pool_init,
                initargs=worker_args,
            ) as pool:
                pending: deque = deque()
                submitted = 0
                while dataset.episodes < episodes:
                    # keep a window of attempts in flight; results are consumed in attempt order
                    need = episodes - dataset.episodes
                    while len(pending) < 2 * workers and submitted < max_attempts and len(pending) < need + workers:
                        pending.append(pool.submit(_pool_run, *job(submitted)))
                        submitted += 1
                    if not pending:
                        break
                    r = pending.popleft().result()
                    attempts += 1
                    dataset.add(r)
                    bar.update(dataset.episodes, len(dataset.failed_seeds), dataset.total_frames)
                for f in pending:
                    f.cancel()
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)

    if dataset.episodes < episodes:
        raise RuntimeError(
            f"only {dataset.episodes} of {episodes} episodes succeeded in {attempts} attempts "
            f"(failed: {dataset.failed_seeds})"
        )
    dataset.write_meta(image_size, cameras, action_noise, mistakes, locations, detours)
    return {
        "out_dir": str(out),
        "episodes": dataset.episodes,
        "frames": dataset.total_frames,
        "failed": len(dataset.failed_seeds),
        "failed_seeds": [s for _, s in dataset.failed_seeds],
        "attempts": attempts,
        "tasks": len(dataset.task_index),
        "seconds": round(time.time() - t0, 2),
    }


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Record scripted-expert episodes as a LeRobot v2.1 dataset.")
    p.add_argument("--task", action="append", required=True, help="task name (repeat to mix tasks)")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--control-hz", type=float, default=10.0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    summary = record(
        args.task,
        args.episodes,
        args.out,
        seed=args.seed,
        workers=args.workers,
        image_size=args.image_size,
        control_hz=args.control_hz,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
