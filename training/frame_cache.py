"""Decoded video frames of a dataset, kept once on disk as memory-mapped uint8 arrays.

Reading a random frame from an mp4 means seeking and decoding from the last key frame: a few milliseconds a
frame, on the same cores the train step needs. The first run over a dataset decodes every video once, in order,
into `<dataset>/.frame_cache/<key>/<camera>.npy` ([rows, H, W, 3], rows in the dataset's order); later runs map
those files and read a frame as a slice. The key hashes which frame of which file every row reads, plus each
video's size and modification time, so a re-recorded or filtered dataset gets a cache of its own. A dataset
folder that cannot be written caches under `~/.cache/robot-runtime/frames/` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from training.video import VideoError

CACHE_DIR = ".frame_cache"
USER_CACHE = pathlib.Path("~/.cache/robot-runtime/frames")


def cache_key(sources: Mapping[str, Sequence[tuple[str, int]]]) -> str:
    """Hash of camera → per-row (video file, frame index), with each file's size and mtime."""
    digest = hashlib.sha256()
    for camera in sorted(sources):
        digest.update(camera.encode())
        file_ids = {path: i for i, path in enumerate(sorted({path for path, _ in sources[camera]}))}
        for path in file_ids:
            stat = os.stat(path)
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        rows = np.asarray([(file_ids[path], index) for path, index in sources[camera]], np.int64)
        digest.update(rows.tobytes())
    return digest.hexdigest()[:24]


def open_frames(
    root: pathlib.Path, sources: Mapping[str, Sequence[tuple[str, int]]], *, progress: bool = True
) -> dict[str, np.ndarray]:
    """camera → read-only memory map [rows, H, W, 3] of the frames `sources` names, decoding them first if needed."""
    if not sources:
        return {}
    key = cache_key(sources)
    for base in (root / CACHE_DIR, USER_CACHE.expanduser()):
        folder = base / key
        if (folder / "done").is_file():
            return _map(folder, sources)
    for base in (root / CACHE_DIR, USER_CACHE.expanduser()):
        try:
            base.mkdir(parents=True, exist_ok=True)
            scratch = pathlib.Path(tempfile.mkdtemp(prefix=".building-", dir=base))
        except OSError:
            continue
        try:
            _build(scratch, sources, progress)
            folder = base / key
            try:
                scratch.rename(folder)
            except OSError:  # another process finished the same cache first
                if not (folder / "done").is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return _map(folder, sources)
    raise OSError(f"no writable place for the frame cache (tried {root / CACHE_DIR} and {USER_CACHE})")


def _map(folder: pathlib.Path, sources: Mapping[str, Sequence[tuple[str, int]]]) -> dict[str, np.ndarray]:
    frames = {camera: np.load(folder / f"{_file_name(camera)}.npy", mmap_mode="r") for camera in sources}
    for camera, array in frames.items():
        if array.shape[0] != len(sources[camera]):
            raise VideoError(
                f"frame cache {folder} holds {array.shape[0]} frames of {camera}, expected "
                f"{len(sources[camera])}; delete the folder to rebuild it"
            )
    return frames


def _file_name(camera: str) -> str:
    return camera.replace("/", "_")


def _build(folder: pathlib.Path, sources: Mapping[str, Sequence[tuple[str, int]]], progress: bool) -> None:
    by_file: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for camera, rows in sources.items():
        for row, (path, index) in enumerate(rows):
            by_file.setdefault((camera, path), []).append((index, row))
    arrays: dict[str, np.memmap] = {}
    show = progress and sys.stderr.isatty()
    for done, ((camera, path), wanted) in enumerate(by_file.items(), 1):
        frames = _decode(path, max(index for index, _ in wanted))
        if camera not in arrays:
            arrays[camera] = np.lib.format.open_memmap(
                folder / f"{_file_name(camera)}.npy",
                mode="w+",
                dtype=np.uint8,
                shape=(len(sources[camera]), *frames[0].shape),
            )
        for index, row in wanted:
            if index >= len(frames):
                raise VideoError(f"{path} has {len(frames)} frames, a row needs frame {index}")
            arrays[camera][row] = frames[index]
        if show and (done % 20 == 0 or done == len(by_file)):
            print(f"\rframe cache: decoded {done}/{len(by_file)} videos", end="", file=sys.stderr, flush=True)
    if show:
        print(file=sys.stderr)
    for array in arrays.values():
        array.flush()
    (folder / "manifest.json").write_text(json.dumps({c: list(a.shape) for c, a in arrays.items()}))
    (folder / "done").write_text("")


def _decode(path: str, last: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise VideoError(f"OpenCV cannot open video {path}")
    frames: list[np.ndarray] = []
    try:
        while len(frames) <= last:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path} has no frames")
    return frames
