"""What a run reports: `metrics.jsonl` (one object per logged step), a loss-curve PNG and a tqdm progress bar.

The PNG is drawn with OpenCV (already a dependency) rather than a plotting library: one panel per logged loss
term on a log scale, steps on x.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

LOSS_KEYS = ("loss", "subtask_ce", "fast_ce", "flow_mse")


class MetricsLog:
    """Appends records to a JSONL file; on resume, records from the resumed step on are dropped first."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate(self, before_step: int) -> None:
        kept = [r for r in self.records() if r["step"] < before_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: Mapping[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(dict(record)) + "\n")


def plot_losses(records: Sequence[Mapping[str, float]], path: str | pathlib.Path, *, width: int = 900) -> pathlib.Path:
    """One log-scale panel per loss term present in `records`, stacked; written as PNG."""
    keys = [k for k in LOSS_KEYS if any(k in r for r in records)]
    panel_h, margin = 220, 60
    image = np.full((max(1, len(keys)) * panel_h, width, 3), 255, np.uint8)
    for index, key in enumerate(keys):
        points = [(r["step"], r[key]) for r in records if key in r and r[key] > 0 and math.isfinite(r[key])]
        top = index * panel_h
        _text(image, key, (margin, top + 22), scale=0.6)
        x0, x1, y0, y1 = margin, width - 20, top + 35, top + panel_h - 30
        cv2.rectangle(image, (x0, y0), (x1, y1), (160, 160, 160), 1)
        if len(points) < 2:
            continue
        steps = np.array([p[0] for p in points], float)
        values = np.log10(np.array([p[1] for p in points], float))
        lo, hi = values.min(), values.max()
        hi = hi if hi > lo else lo + 1.0
        xs = x0 + (steps - steps.min()) / max(steps.max() - steps.min(), 1) * (x1 - x0)
        ys = y1 - (values - lo) / (hi - lo) * (y1 - y0)
        cv2.polylines(image, [np.stack([xs, ys], 1).astype(np.int32)], False, (200, 80, 0), 2, cv2.LINE_AA)
        for value, y in ((10**hi, y0), (10**lo, y1)):
            _text(image, f"{value:.3g}", (2, int(y) + 4))
        _text(image, f"step {int(steps.min())} .. {int(steps.max())}", (x1 - 160, y1 + 18))
    path = pathlib.Path(path)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


class Progress:
    """A progress bar on stderr (tqdm): done/total, rate, ETA and a suffix (the latest loss). Silent when
    disabled and whenever stderr is not a terminal (CI, logs)."""

    def __init__(self, total: int, start: int = 0, *, label: str = "step", enabled: bool = True):
        self._bar = tqdm(
            total=total,
            initial=start,
            unit=label,
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None if enabled and total > 0 else True,
        )

    def update(self, done: int, suffix: str | None = None) -> None:
        if suffix is not None:
            self._bar.set_postfix_str(suffix, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()
