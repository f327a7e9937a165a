"""The decoded-frame cache: the same pixels as the videos, built once, rebuilt when the videos change."""

from __future__ import annotations

import os

import numpy as np

from training.frame_cache import CACHE_DIR
from training.lerobot import LeRobotDataset


def test_cached_frames_equal_the_decoded_videos_and_are_built_once(tmp_path):
    from sim.recorder import record

    root = tmp_path / "ds"
    record("pick_place", 2, root, seed=0, image_size=32, progress=False)
    plain = LeRobotDataset(root, 4)
    cached = LeRobotDataset(root, 4)
    cached.use_frame_cache(progress=False)
    for row in range(len(plain)):
        for camera in plain.cameras:
            np.testing.assert_array_equal(cached.image(row, camera), plain.image(row, camera))
    [folder] = list((root / CACHE_DIR).iterdir())
    built = folder.stat().st_mtime_ns

    LeRobotDataset(root, 4).use_frame_cache(progress=False)
    assert [p.name for p in (root / CACHE_DIR).iterdir()] == [folder.name]  # reused, not rebuilt
    assert folder.stat().st_mtime_ns == built

    video = plain.episodes[0].videos[plain.cameras[0]][0]
    os.utime(video, ns=(built + 10**9, built + 10**9))  # a re-recorded video gets a cache of its own
    LeRobotDataset(root, 4).use_frame_cache(progress=False)
    assert len(list((root / CACHE_DIR).iterdir())) == 2
