"""Random access to video frames with OpenCV, for datasets that store each camera as mp4.

Training reads frames in shuffled order, so every read may land anywhere in a file. One capture stays open per
file (opening costs more than seeking); a read just past the previous one decodes forward, any other read
seeks. OpenCV's FFmpeg backend seeks to the preceding key frame and decodes up to the frame asked for, so the
result is the exact frame whatever the GOP length.
"""

from __future__ import annotations

import collections
import pathlib

import cv2
import numpy as np

from policy.errors import UserFacingError

# Frames decoded forward instead of seeking: cheaper than a seek for short gaps with any common GOP.
_FORWARD_WINDOW = 8


class VideoError(UserFacingError, RuntimeError):
    """A video file that cannot be opened or has no frame at the index asked for."""


class _Capture:
    def __init__(self, path: pathlib.Path):
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise VideoError(f"OpenCV cannot open video {path}")
        self.path = path
        self.next_index = 0

    def read(self, index: int) -> np.ndarray:
        gap = index - self.next_index
        if not 0 <= gap <= _FORWARD_WINDOW:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        else:
            for _ in range(gap):
                self.capture.grab()
        ok, bgr = self.capture.read()
        if not ok:
            self.next_index = -1
            raise VideoError(f"{self.path} has no frame {index}")
        self.next_index = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.capture.release()


class VideoReader:
    """Frames by (file, index) as uint8 RGB [H,W,3]; not thread-safe (give each worker its own)."""

    def __init__(self, max_open: int = 16):
        self._max_open = max_open
        self._open: collections.OrderedDict[pathlib.Path, _Capture] = collections.OrderedDict()

    def frame(self, path: str | pathlib.Path, index: int) -> np.ndarray:
        path = pathlib.Path(path)
        capture = self._open.pop(path, None) or _Capture(path)
        self._open[path] = capture
        while len(self._open) > self._max_open:
            self._open.popitem(last=False)[1].close()
        return capture.read(int(index))

    def close(self) -> None:
        for capture in self._open.values():
            capture.close()
        self._open.clear()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes (LeRobot's `image` features) → uint8 RGB [H,W,3]."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoError("image bytes could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
