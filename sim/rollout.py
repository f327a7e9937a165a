"""Rollout runner: episodes of the built-in tasks or a LIBERO suite, driven by a policy, scored and written.

    from sim.envspec import parse_env
    from sim.rollout import PolicySpec, RolloutConfig, rollout
    results = rollout(RolloutConfig(parse_env("builtin:all"), episodes=5, policy=PolicySpec("scripted"),
                                    out_dir=pathlib.Path("runs/x")))

Policies: "scripted" runs the built-in experts (privileged state, no server) to validate the tasks; "remote"
makes every episode a robot session with a runtime over gRPC (`client.robot_client.RobotClient`), asking for a
chunk every `replan_steps` control steps (openpi's LIBERO protocol; sim time stands still while it waits).

Workers are spawned processes (MuJoCo's GL contexts do not survive a fork), each with its own envs and its
own sessions, taking jobs from one queue; with one worker the episodes run in this process. Workers report
subtask changes and finished episodes as they happen, and this process prints them.

This module is the entry point; the parts live beside it: `rollout_config` (settings, job planning),
`rollout_policies` (scripted, remote), `rollout_episodes` (the episode loop, the workers) and `rollout_report`
(live printing, `results.json`, the table).

`results.json` (in `out_dir`):
    success_rate     over all episodes
    episodes         per episode: task, episode, seed (LIBERO: task_id, and episode = initial state index),
                     instruction, success, steps (policy steps), subtasks [{step, text, version}] (the step a
                     subtask was first acted on; scripted: the expert's labels), planner_updates, video,
                     error, wall_s, worker
    per_task         {task: {success_rate, episodes, successes, mean_steps}}
    latency_ms       policy time per query: a chunk's round trip (remote) or one expert step (scripted);
                     {count, mean, p50, p90, p99, max}
    server_ms        the runtime's own time per chunk (remote only)
    env_step_ms      one env step (physics and rendering)
    config, wall_s
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time

from sim.rollout_config import PolicySpec, RolloutConfig, RolloutError, plan_jobs
from sim.rollout_episodes import run_pool, run_worker
from sim.rollout_policies import check_runtime
from sim.rollout_report import Reporter, format_table, summarize
from sim.summary_figure import SUMMARY_FILE, plot_summary

__all__ = ["PolicySpec", "Reporter", "RolloutConfig", "RolloutError", "format_table", "plan_jobs", "rollout"]


def rollout(config: RolloutConfig, reporter: Reporter | None = None) -> dict:
    """Runs every episode of the selection and writes `results.json` → the results."""
    if config.workers < 1:
        raise RolloutError(f"--workers must be >= 1, got {config.workers}")
    if config.replan_steps is not None and config.replan_steps < 1:
        raise RolloutError(f"--replan-steps must be >= 1, got {config.replan_steps}")
    jobs, libero_tasks = plan_jobs(config)
    if config.policy.kind == "remote":
        servers = config.policy.addresses()
        if len(servers) > min(config.workers, len(jobs)):
            raise RolloutError(
                f"{len(servers)} servers need at least as many workers and episodes (--workers {config.workers}, "
                f"{len(jobs)} episodes): each worker talks to one server"
            )
        interfaces = {check_runtime(dataclasses.replace(config.policy, address=a)) for a in servers}
        if len(interfaces) > 1:
            raise RolloutError(f"the servers {', '.join(servers)} do not serve the same cameras")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    reporter = reporter or Reporter(len(jobs), quiet=config.quiet, progress=config.progress)
    run_id = f"rollout-{secrets.token_hex(4)}"
    started = time.monotonic()
    try:
        if config.workers == 1 or len(jobs) == 1:
            run_worker(0, config, libero_tasks, jobs, reporter.handle, run_id)
        else:
            run_pool(config, libero_tasks, jobs, reporter.handle, run_id)
    finally:
        reporter.close()
    results = summarize(config, reporter.results, time.monotonic() - started)
    path = config.out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    latencies = [v for r in reporter.results for v in r.policy_ms]
    plot_summary(results["per_task"], latencies, config.out_dir / SUMMARY_FILE)
    return results
