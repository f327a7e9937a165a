"""The rollout's figure beside `results.json`: success per task, and the histogram of policy latencies."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
from matplotlib import pyplot as plt  # noqa: E402  (after the backend is chosen)

SUMMARY_FILE = "summary.png"


def plot_summary(
    per_task: Mapping[str, Mapping], latencies_ms: Sequence[float], path: str | pathlib.Path
) -> pathlib.Path:
    """Left: success rate per task (with successes/episodes); right: policy query latency (ms, log count)."""
    figure, (tasks_ax, latency_ax) = plt.subplots(1, 2, figsize=(11, 3.2 + 0.25 * len(per_task)))
    try:
        names = list(per_task)
        rates = [per_task[n]["success_rate"] for n in names]
        tasks_ax.barh(names, rates, color="tab:green")
        for y, name in enumerate(names):
            row = per_task[name]
            tasks_ax.text(0.01, y, f"{row['successes']}/{row['episodes']}", va="center")
        tasks_ax.set_xlim(0, 1)
        tasks_ax.invert_yaxis()
        tasks_ax.set_xlabel("success rate")
        latencies = np.asarray([v for v in latencies_ms if np.isfinite(v)], np.float64)
        if latencies.size:
            latency_ax.hist(latencies, bins=40, color="tab:blue", log=True)
            for q, style in ((50, "-"), (99, "--")):
                value = float(np.percentile(latencies, q))
                latency_ax.axvline(value, color="k", linestyle=style, label=f"p{q} {value:.1f} ms")
            latency_ax.legend(fontsize="small")
        else:
            latency_ax.text(0.5, 0.5, "no policy queries", ha="center", transform=latency_ax.transAxes)
        latency_ax.set_xlabel("policy query latency (ms)")
        figure.tight_layout()
        path = pathlib.Path(path)
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path
