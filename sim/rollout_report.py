"""A rollout's report: events printed as they happen, the `results.json` summary and the closing table."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TextIO

import numpy as np
from tqdm import tqdm

from sim.episode import Job
from sim.rollout_config import RolloutConfig, effective_replan_steps, effective_seed
from sim.rollout_episodes import EpisodeResult, Event, SubtaskChanged


def latency_summary(values: Sequence[float]) -> dict:
    x = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if not x.size:
        return {"count": 0}
    p50, p90, p99 = np.percentile(x, (50, 90, 99))
    return {
        "count": int(x.size),
        "mean": round(float(x.mean()), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(x.max()), 3),
    }


def summarize(config: RolloutConfig, results: Sequence[EpisodeResult], wall_s: float) -> dict:
    libero = config.selection.kind == "libero"
    ordered = sorted(results, key=lambda r: r.job.index)
    per_task: dict[str, dict] = {}
    for r in ordered:
        row = per_task.setdefault(r.job.task, {"episodes": 0, "successes": 0, "steps": 0})
        row["episodes"] += 1
        row["successes"] += int(r.success)
        row["steps"] += r.steps
    for row in per_task.values():
        row["success_rate"] = row["successes"] / row["episodes"]
        row["mean_steps"] = round(row.pop("steps") / row["episodes"], 2)
    successes = sum(r.success for r in ordered)
    results_json = {
        "success_rate": successes / len(ordered) if ordered else 0.0,
        "episodes": [r.to_json(libero) for r in ordered],
        "per_task": per_task,
        "latency_ms": latency_summary([v for r in ordered for v in r.policy_ms]),
        "env_step_ms": latency_summary([v for r in ordered for v in r.env_ms]),
        "config": {
            "env": config.selection.label,
            "tasks": sorted(per_task),
            "episodes_per_task": config.episodes,
            "policy": config.policy.label,
            "seed": effective_seed(config),
            "replan_steps": effective_replan_steps(config) if config.policy.kind == "remote" else None,
            "workers": config.workers,
            "servers": list(config.policy.addresses()) if config.policy.kind == "remote" else [],
            "image_size": config.image_size,
            "max_steps": config.max_steps,
        },
        "wall_s": round(wall_s, 2),
    }
    if config.policy.kind == "remote":
        results_json["server_ms"] = latency_summary([v for r in ordered for v in r.server_ms])
    counts = [r.referee for r in ordered if r.referee is not None]
    if counts:
        steps = sum(c.steps for c in counts)
        closed_loop: dict[str, float] = {
            "steps": steps,
            "subtask_fit": round(sum(c.fit for c in counts) / steps, 4),
            "unknown_phrase_rate": round(sum(c.unknown for c in counts) / steps, 4),
        }
        located = sum(c.located for c in counts)
        if located:
            closed_loop["location_error_cm"] = round(100 * sum(c.location_error_m for c in counts) / located, 2)
        results_json["planner_closed_loop"] = closed_loop
    return results_json


def format_table(results: dict) -> list[str]:
    """The per-task table printed at the end of a run."""
    per_task = results["per_task"]
    width = max([len("task"), *(len(t) for t in per_task)]) if per_task else 4
    lines = [f"{'task':<{width}}  {'episodes':>8}  {'success':>7}  {'rate':>6}  {'mean steps':>10}"]
    for task, row in per_task.items():
        lines.append(
            f"{task:<{width}}  {row['episodes']:>8}  {row['successes']:>7}  "
            f"{row['success_rate']:>6.3f}  {row['mean_steps']:>10.1f}"
        )
    total = len(results["episodes"])
    ok = sum(e["success"] for e in results["episodes"])
    lines.append(f"{'all':<{width}}  {total:>8}  {ok:>7}  {results['success_rate']:>6.3f}")
    lat = results["latency_ms"]
    if lat.get("count"):
        lines.append(f"policy latency: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms over {lat['count']} queries")
    env = results["env_step_ms"]
    if env.get("count"):
        lines.append(f"env step: p50 {env['p50']:.1f} ms, p99 {env['p99']:.1f} ms")
    planner = results.get("planner_closed_loop")
    if planner:
        lines.append(
            f"closed-loop subtasks: {planner['subtask_fit']:.3f} fit the world's state, "
            f"{planner['unknown_phrase_rate']:.3f} unknown phrases, over {planner['steps']} steps"
            + (
                f"; location words {planner['location_error_cm']:.1f} cm from the thing named (mean)"
                if "location_error_cm" in planner
                else ""
            )
        )
    return lines


class Reporter:
    """Prints subtask changes and finished episodes as they happen, under a tqdm bar on a terminal's stderr."""

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        progress: bool = True,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ):
        self.total = total
        self.quiet = quiet
        self.out = out or sys.stdout
        self.results: list[EpisodeResult] = []
        self._bar = tqdm(
            total=total,
            unit="episode",
            file=err or sys.stderr,
            dynamic_ncols=True,
            disable=None if progress else True,  # None: off when the stream is not a terminal
        )

    def handle(self, event: Event) -> None:
        if isinstance(event, SubtaskChanged):
            if not self.quiet:
                self._print(f"{_tag(event.job)} step {event.step:>3}: {event.text}")
            return
        result = event.result
        self.results.append(result)
        outcome = "success" if result.success else ("error" if result.error else "failure")
        detail = f": {result.error}" if result.error else ""
        self._print(f"{_tag(result.job)} {outcome} after {result.steps} steps ({result.wall_s:.1f} s){detail}")
        self._bar.set_postfix_str(f"{sum(r.success for r in self.results)} successes", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()

    def _print(self, line: str) -> None:
        with self._bar.external_write_mode(file=self.out):
            print(line, file=self.out, flush=True)


def _tag(job: Job) -> str:
    task = f"task {job.task_id}" if job.task_id >= 0 else job.task
    return f"[{task} ep {job.episode} seed {job.seed}]"
