"""Rollout videos: the cameras side by side over a caption band that names the current subtask.

The caption sits below the images rather than on them so it never hides what the policy saw. Videos are
MPEG-4 part 2 (`mp4v`), the codec OpenCV's pip wheels can encode, like the recorder's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

FOURCC = "mp4v"
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_SCALE = 0.5
MIN_SCALE = 0.3
LINE_PX = 16
PAD_PX = 6
CAPTION_LINES = 2
WHITE = (255, 255, 255)
GREY = (170, 170, 170)


def _fit(text: str, width: int) -> tuple[str, float]:
    """The largest font scale up to MAX_SCALE that fits `width`; below MIN_SCALE the text is cut instead."""
    (w, _), _ = cv2.getTextSize(text, FONT, MAX_SCALE, 1)
    if w <= width:
        return text, MAX_SCALE
    scale = MAX_SCALE * width / w
    if scale >= MIN_SCALE:
        return text, scale
    while text and cv2.getTextSize(text + "...", FONT, MIN_SCALE, 1)[0][0] > width:
        text = text[:-1]
    return text + "...", MIN_SCALE


def compose(images: Sequence[np.ndarray], lines: Sequence[str]) -> np.ndarray:
    """RGB frame: images (uint8 HxWx3, equal heights) left to right, then one caption row per line."""
    row = np.concatenate([np.asarray(im, np.uint8) for im in images], axis=1)
    width = row.shape[1]
    band = np.zeros((CAPTION_LINES * LINE_PX + PAD_PX, width, 3), np.uint8)
    for i, (line, colour) in enumerate(zip(lines[:CAPTION_LINES], (GREY, WHITE))):
        text, scale = _fit(line, width - 2 * PAD_PX)
        cv2.putText(band, text, (PAD_PX, (i + 1) * LINE_PX), FONT, scale, colour, 1, cv2.LINE_AA)
    return np.concatenate([row, band], axis=0)


class CaptionedVideo:
    """Writes composed frames to `path`; the size is fixed by the first frame."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = os.fspath(path)
        self.fps = float(fps)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def add(self, images: Sequence[np.ndarray], lines: Sequence[str]) -> None:
        frame = compose(images, lines)
        if self._writer is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*FOURCC), self.fps, (w, h))  # type: ignore[attr-defined]
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {FOURCC} video to {self.path}")
        self._writer.write(np.ascontiguousarray(frame[..., ::-1]))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
