"""What a run reports: `metrics.jsonl` (one object per logged step), a loss-curve PNG and a tqdm progress bar.

A record holds the step's training terms (`loss`, `flow_mse`, ...) and, at validation steps, the same terms
measured on the held-out episodes under a `val_` prefix (see `training.validation`).
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from collections.abc import Mapping, Sequence

import matplotlib
from tqdm import tqdm

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
from matplotlib import pyplot as plt  # noqa: E402  (after the backend is chosen)

LOSS_KEYS = ("loss", "subtask_ce", "fast_ce", "flow_mse")
VAL_PREFIX = "val_"


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


def plot_losses(records: Sequence[Mapping[str, float]], path: str | pathlib.Path) -> pathlib.Path:
    """One log-scale panel per loss term in `records`, training and (where logged) validation; written as PNG."""
    keys = [k for k in LOSS_KEYS if any(k in r or VAL_PREFIX + k in r for r in records)]
    figure, axes = plt.subplots(max(1, len(keys)), 1, figsize=(8, 2.4 * max(1, len(keys))), sharex=True, squeeze=False)
    try:
        for ax, key in zip(axes[:, 0], keys, strict=False):
            for name, label, style in ((key, "train", "-"), (VAL_PREFIX + key, "validation", "o-")):
                points = [(r["step"], r[name]) for r in records if _positive(r.get(name))]
                if points:
                    steps, values = zip(*points, strict=True)
                    ax.plot(steps, values, style, label=label, markersize=3, linewidth=1.2)
            ax.set_yscale("log")
            ax.set_ylabel(key)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="upper right", fontsize="small")
        axes[-1, 0].set_xlabel("step")
        figure.tight_layout()
        path = pathlib.Path(path)
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path


def _positive(value) -> bool:
    return isinstance(value, int | float) and value > 0 and math.isfinite(value)


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
