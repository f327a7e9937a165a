"""Cold start of `robot-runtime serve` with the persistent compilation cache cold and warm.

For a random-weight checkpoint of a model config (`dummy` by default) it times, from the moment the process is
started:
- ready: the runtime accepts sessions (the actor loaded and compiled every batch bucket up to `--max-batch`, with
  and without RTC; the runtime's ready file);
- first chunk: a robot client's first observation answered. It does not wait for the planner
  (`--wait-for-subtask-ms 0`), so it is the actor's start alone;
- first subtask: the planner's first answer is back in the runtime, while the client sends an observation every
  100 ms as a robot would: a subtask update reaching the client, or, for random weights that decode an empty
  subtask (which the runtime does not pass on), the runtime's first `planner_decode` in its stats. The planner
  process starts beside the actor and shares the CPU with it, as in service. `planner_ready_s` (from the log)
  is when the planner could first plan.

The first start gets an empty cache directory (`cold`: everything compiles and is written), then `--runs` starts
reuse it (`warm`: the executables are read back). `--off` adds a start with the cache off, the runtime as it was
before the cache. Each start prints one line, then the ratios warm / cold (medians of the warm starts), and the
last line printed is one JSON object with all figures, including how many executables each process compiled and
how many came from the cache (from the serve log).

    .venv/bin/python bench/cold_start.py [--config dummy] [--checkpoint DIR] [--runs 1] [--max-batch 8] [--off]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from client.robot_client import RobotClient  # noqa: E402
from runtime.launch import serve_process  # noqa: E402

TASK = "put the red cube in the bowl"
OBSERVATION_PERIOD_S = 0.1
# "actor compiled 6 executables in 12.3 s, 6 from the compilation cache" (runtime/actor_host.py, runtime/serve.py)
COMPILED = re.compile(
    r"(actor|planner) compiled (\d+) executables in ([\d.]+) s(?:, (\d+) from the compilation cache)?"
)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
FIGURES = ("ready_s", "first_chunk_s", "first_subtask_s", "planner_ready_s")


def logged_seconds(log: str, message: str, started: float) -> float | None:
    """Seconds from `started` (a time.time()) to the first log line containing `message`."""
    for line in log.splitlines():
        found = LOG_TIME.match(line)
        if found and message in line:
            stamp = datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            return round(stamp - started, 2)
    return None


def compiled(log: str) -> dict[str, dict[str, Any]]:
    """Per process (actor, planner): executables compiled at start, seconds, and how many the cache held."""
    found = {}
    for name, count, seconds, hits in COMPILED.findall(log):
        found[name] = {"executables": int(count), "compile_s": float(seconds), "from_cache": int(hits or 0)}
    return found


def cache_size(directory: pathlib.Path | None) -> dict[str, Any]:
    if directory is None or not directory.is_dir():
        return {"files": 0, "mb": 0.0}
    files = [path for path in directory.iterdir() if path.is_file()]
    return {"files": len(files), "mb": round(sum(path.stat().st_size for path in files) / 2**20, 2)}


def one_start(checkpoint: pathlib.Path, cache: pathlib.Path | None, log: pathlib.Path, args) -> dict[str, Any]:
    """Starts `robot-runtime serve`, times it to ready, first chunk and first subtask, and stops it."""
    extra = ["--compile-cache", str(cache) if cache else "off", "--wait-for-subtask-ms", "0"]
    extra += ["--max-batch", str(args.max_batch)]
    started_wall, started = time.time(), time.monotonic()
    figures: dict[str, Any] = {}
    with serve_process(checkpoint, log, *extra, timeout_s=args.timeout) as server:
        figures["ready_s"] = round(time.monotonic() - started, 2)
        with RobotClient(server.address, TASK, timeout_s=args.timeout) as client:
            info = client.get_metadata()
            size = args.image_size
            frames = {camera: np.zeros((size, size, 3), np.uint8) for camera in info.cameras}
            state = np.zeros(info.state_dims, np.float32)
            client.infer(frames, state)
            figures["first_chunk_s"] = round(time.monotonic() - started, 2)
            figures["first_subtask_s"] = round(first_plan(client, frames, state, args.timeout) - started, 2)
        text = server.log_text()
    figures["planner_ready_s"] = logged_seconds(text, "planner ready", started_wall)
    figures["compiled"] = compiled(text)
    figures["cache"] = cache_size(cache)
    return figures


def first_plan(client: RobotClient, frames: dict[str, np.ndarray], state: np.ndarray, timeout_s: float) -> float:
    """time.monotonic() when the planner's first answer was back: the client's first subtask update, else the
    moment the runtime's stats first count a planner decode (an empty subtask is not sent to the client)."""
    deadline = time.monotonic() + timeout_s
    while True:
        updates = client.subtask_updates
        if updates:
            return updates[0].received_at
        if client.server_stats().latency["planner_decode"].count:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the planner did not answer within {timeout_s:g} s of the first chunk")
        client.send(frames, state)
        time.sleep(OBSERVATION_PERIOD_S)


def describe(label: str, figures: dict[str, Any]) -> str:
    parts = [f"{name} {figures[name]:6.1f} s" for name in FIGURES if figures.get(name) is not None]
    for name, counts in figures["compiled"].items():
        parts.append(
            f"{name} {counts['executables']} compiled in {counts['compile_s']:.1f} s ({counts['from_cache']} cached)"
        )
    return f"{label:<6} " + "  ".join(parts) + f"  cache {figures['cache']['files']} files {figures['cache']['mb']} MB"


def medians(starts: list[dict[str, Any]]) -> dict[str, float]:
    return {
        name: round(statistics.median(s[name] for s in starts), 2)
        for name in FIGURES
        if all(s.get(name) is not None for s in starts)
    }


def ratios(warm: dict[str, float], cold: dict[str, Any]) -> dict[str, float]:
    return {name: round(warm[name] / cold[name], 3) for name in warm if cold.get(name)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="dummy", help="model config of the random checkpoint (default dummy)")
    parser.add_argument("--checkpoint", type=pathlib.Path, help="serve this model directory instead")
    parser.add_argument("--runs", type=int, default=1, help="warm starts after the cold one (default 1)")
    parser.add_argument("--max-batch", type=int, default=8, help="serve's --max-batch: buckets compiled at start")
    parser.add_argument("--image-size", type=int, default=224, help="camera images sent are PX x PX")
    parser.add_argument("--off", action="store_true", help="also time a start with the cache off")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each stage of a start may take")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.max_batch < 1:
        parser.error("--runs and --max-batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        work = pathlib.Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from policy.model_dir import init_model_dir

            checkpoint = init_model_dir(args.config, work / args.config)
        cache = work / "xla"
        figures: dict[str, Any] = {"checkpoint": args.config if args.checkpoint is None else str(checkpoint)}
        figures |= {"max_batch": args.max_batch, "runs": args.runs}
        if args.off:
            figures["off"] = one_start(checkpoint, None, work / "off.log", args)
            print(describe("off", figures["off"]), flush=True)
        figures["cold"] = one_start(checkpoint, cache, work / "cold.log", args)
        print(describe("cold", figures["cold"]), flush=True)
        figures["warm"] = []
        for run in range(args.runs):
            figures["warm"].append(one_start(checkpoint, cache, work / f"warm{run}.log", args))
            print(describe("warm", figures["warm"][-1]), flush=True)
    warm = medians(figures["warm"])
    figures["warm_over_cold"] = ratios(warm, figures["cold"])
    if args.off:
        figures["warm_over_off"] = ratios(warm, figures["off"])
    print("warm / cold: " + "  ".join(f"{k} {v:.2f}" for k, v in figures["warm_over_cold"].items()), flush=True)
    figures["jax"] = importlib.metadata.version("jax")
    figures |= {"cpu_cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
