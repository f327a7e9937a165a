"""Multi-robot throughput: N robot sessions stream into one runtime at once, for N = 1, 2, 4, 8.

One `robot-runtime serve` (the actor behind the gRPC session service and its dynamic `ChunkBatcher`; without
--checkpoint a random `tiny` checkpoint) and, per round, N robot sessions, each a `RobotClient` that asks for its
next chunk as soon as the last one arrived (back to back: what the runtime can deliver) or every `--period-ms`.
The clients run in processes of their own (one per session unless `--client-processes`), so they share no GIL
with each other or with the runtime; they do share the machine's cores with it, and their CPU use is reported.
A round connects its sessions, warms them up (the planner plans each session once then: `--planner-interval
3600`, and chunks never wait for it), lets them stream for `--settle-s`, then counts the chunks that arrive in
the next `--duration-s`. `--rounds R` repeats the sweep R times, interleaved, and pools each N's rounds.

Per N: chunks/s in total; p50/p99 round trip of every session (the table shows the median session's p50 and the
worst session's p99); the median queue wait and engine time the server reports in each chunk's timings, and the
rest of the round trip (`other`: transport, protobuf, validation, event loop, the client itself); from the
runtime's stats counters the mean batch size the batcher ran, its batches/s and the share of the window it had a
batch in flight (`actor_busy`); the cores (CPU seconds per second) that the runtime process used (split into its
main thread, which runs the event loop; XLA's own pool threads; and the rest, among them the actor thread, which
runs the engine's Python and much of XLA's work itself), its planner process, the bench's clients, and everything
else on the machine (`others`, from /proc/stat: a loaded machine shows here). `scaling` is
throughput(N) / (N × throughput(1)) and `ratio` is that at the largest N: 1 means every added robot gets as many
chunks as a lone one did; issue 16 asks for ≥ 0.8 at N = 8 with the tiny model on CPU. `batch_sizes` counts the
batches of each size the batcher ran (the sampler pads a batch to its next batch bucket).

First, in a process of its own and before the runtime starts, the actor's `ChunkEngine` alone runs one batch of N
copies of a request for every N (`--engine-calls` each, interleaved): wall and CPU ms per batch, prefill and
denoise. Its `ceiling` t(1) / t(N) is the `scaling` that batching would give if every batch were full and nothing
outside the engine cost anything (a lone session also waits for its round trip, which N sessions overlap, so the
measured `scaling` can come out somewhat above it).

    .venv/bin/python bench/multi_robot.py [--sessions 1,2,4,8] [--duration-s 8] [--settle-s 1] [--warmup 10]
        [--rounds 1] [--period-ms 0] [--max-batch 8] [--max-wait-ms 2] [--encoding raw] [--frames noise]
        [--image-size 224] [--client-processes 0] [--runtime-cpus CPUS] [--client-cpus CPUS] [--engine-calls 20]
        [--checkpoint DIR]

A table, then one JSON line: the last line of stdout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import queue
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import TASK, noise_frames, percentiles, scene_frames, tiny_checkpoint  # noqa: E402
from client.robot_client import RobotClient  # noqa: E402
from protos.robot_runtime.v1 import runtime_pb2 as pb  # noqa: E402
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc  # noqa: E402
from runtime.launch import serve_process  # noqa: E402

TARGET_RATIO = 0.8
READY_TIMEOUT_S = 300.0
TICKS = os.sysconf("SC_CLK_TCK")
# A chunk as the client saw it: arrival (time.monotonic), round trip, server queue wait, server total (queue + engine).
Sample = tuple[float, float, float, float]


# -- the robots (client processes) ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClientSetup:
    address: str
    frames: list[dict[str, np.ndarray]]
    state_dims: int
    encoding: str
    period_s: float
    warmup: int
    cpus: str | None


def client_process(setup: ClientSetup, index: int, commands, results) -> None:
    """Runs rounds until told to stop (None): a round is a number of sessions, then its window (start, end)."""
    try:
        if setup.cpus:
            from runtime.serve import set_cpu_affinity

            set_cpu_affinity(setup.cpus)
        while (sessions := commands.get()) is not None:
            results.put(("done", index, run_sessions(setup, sessions, index, commands, results)))
    except BaseException:  # noqa: BLE001 - the parent reports it and stops the bench
        results.put(("error", index, traceback.format_exc()))


def run_sessions(setup: ClientSetup, sessions: int, index: int, commands, results) -> dict[str, Any]:
    warm = threading.Barrier(sessions + 1)
    go = threading.Event()
    window = [0.0, 0.0]
    with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        futures = [pool.submit(robot, setup, warm, go, window) for _ in range(sessions)]
        try:
            warm.wait(READY_TIMEOUT_S)
        except threading.BrokenBarrierError:  # it wakes every waiting session, so all of them end
            errors = [future.exception() for future in futures]
            failed = next((e for e in errors if not isinstance(e, threading.BrokenBarrierError | None)), None)
            if failed is not None:
                raise failed from None
            raise
        results.put(("ready", index, None))
        window[:] = commands.get()
        go.set()
        sleep_until(window[0])
        cpu = time.process_time()
        sleep_until(window[1])
        cpu = time.process_time() - cpu
        samples = [future.result() for future in futures]
    return {"samples": samples, "cpu_s": cpu}


def robot(setup: ClientSetup, warm: threading.Barrier, go: threading.Event, window: list[float]) -> list[Sample]:
    """One session: `warmup` chunks, then chunks back to back (or one every `period_s`) until the window ends."""
    state = np.linspace(-0.5, 0.5, setup.state_dims, dtype=np.float32)
    frames = setup.frames
    samples: list[Sample] = []
    client = RobotClient(setup.address, TASK, image_encoding=setup.encoding)
    try:
        try:
            client.connect()
            for i in range(setup.warmup):
                client.infer(frames[i % len(frames)], state)
        except BaseException:
            warm.abort()
            raise
        warm.wait()
        go.wait()
        end = window[1]
        next_start = time.monotonic()
        i = 0
        while time.monotonic() < end:
            if setup.period_s:
                sleep_until(next_start)
                next_start += setup.period_s
            chunk = client.infer(frames[i % len(frames)], state)
            i += 1
            samples.append((time.monotonic(), chunk.round_trip_ms, chunk.timings.queue_ms, chunk.timings.total_ms))
    finally:
        client.close()
    return samples


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


class Robots:
    """The client processes; a round hands session k to process k mod P."""

    def __init__(self, setup: ClientSetup, processes: int):
        spawn = multiprocessing.get_context("spawn")
        self._results = spawn.Queue()
        self._commands = [spawn.Queue() for _ in range(processes)]
        self._processes = [
            spawn.Process(target=client_process, args=(setup, i, q, self._results), daemon=True)
            for i, q in enumerate(self._commands)
        ]
        for process in self._processes:
            process.start()

    def close(self) -> None:
        for commands in self._commands:
            commands.put(None)
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.terminate()

    def start(self, sessions: int) -> list[int]:
        """Opens `sessions` sessions and warms them up → the busy processes, once all are ready."""
        counts = [len(range(i, sessions, len(self._processes))) for i in range(len(self._processes))]
        busy = [i for i, count in enumerate(counts) if count]
        for i in busy:
            self._commands[i].put(counts[i])
        self._collect("ready", busy)
        return busy

    def stream(self, busy: Sequence[int], start: float, end: float) -> None:
        for i in busy:
            self._commands[i].put((start, end))

    def finish(self, busy: Sequence[int]) -> list[dict[str, Any]]:
        return self._collect("done", busy)

    def _collect(self, kind: str, busy: Sequence[int]) -> list[dict[str, Any]]:
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(answers) < len(busy):
            try:
                got, index, payload = self._results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"client processes {sorted(set(busy) - set(answers))} never said {kind!r}") from None
            if got == "error":
                raise RuntimeError(f"client process {index} failed:\n{payload}")
            answers[index] = payload
        return [answers[i] for i in busy]


# -- the runtime's side: stats counters and CPU time ----------------------------------------------------------


def _cpu_s(stat: pathlib.Path) -> float:
    """utime + stime of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat file, in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _thread_group(task: pathlib.Path, pid: int) -> str:
    if task.name == str(pid):
        return "event_loop"  # the runtime's main thread runs the asyncio loop and gRPC's handlers
    name = (task / "comm").read_text().strip()
    if name.startswith(("tf_", "llvm")):
        return "xla"
    return "grpc" if name in ("grpc_global_tim", "event_engine") else "other"


def runtime_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the runtime (total and by thread group), its planner child and the whole machine."""
    cpu: dict[str, float] = {"runtime": _cpu_s(pathlib.Path(f"/proc/{pid}/stat"))}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            group = _thread_group(task, pid)
            cpu[group] = cpu.get(group, 0.0) + _cpu_s(task / "stat")
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    cpu["planner"] = sum(_cpu_s(pathlib.Path(f"/proc/{child}/stat")) for child in children)
    user, nice, system, _idle, _iowait, irq, softirq = map(int, pathlib.Path("/proc/stat").read_text().split()[1:8])
    cpu["machine"] = (user + nice + system + irq + softirq) / TICKS
    return cpu


def runtime_counters(stub: pb_grpc.RobotRuntimeStub) -> dict[str, int]:
    return dict(stub.GetStats(pb.StatsRequest(), timeout=10).counters)


def wait_for_no_sessions(stub: pb_grpc.RobotRuntimeStub, timeout_s: float = 30.0) -> None:
    """The last round's sessions must be gone: the batcher waits for every open session to queue a request."""
    deadline = time.monotonic() + timeout_s
    while (open_now := runtime_counters(stub).get("sessions_open", 0)) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{open_now} sessions still open {timeout_s:g} s after their round")
        time.sleep(0.2)


# -- the engine alone -----------------------------------------------------------------------------------------


def engine_times(checkpoint: str, frames: dict[str, np.ndarray], sizes: Sequence[int], calls: int) -> dict[str, Any]:
    """The runtime's ChunkEngine in this process (a spawned one: the bench itself never imports jax), one batch of
    n copies of a request at a time for every n in `sizes`, interleaved → medians per n and the sampler's buckets."""
    from actor.engine import ChunkEngine, ChunkRequest, EngineConfig
    from policy.inputs import LIBERO_CAMERAS
    from policy.model_dir import ModelDir

    model_dir = ModelDir.open(checkpoint)
    engine = ChunkEngine.from_model_dir(model_dir, EngineConfig(action_dims=model_dir.norm_stats["actions"].dim))
    state = np.linspace(-0.5, 0.5, model_dir.norm_stats["state"].dim, dtype=np.float32)
    images = {LIBERO_CAMERAS[camera]: frame for camera, frame in frames.items()}
    request = ChunkRequest(images, TASK, TASK, state)
    times: dict[int, list[tuple[float, ...]]] = {n: [] for n in sizes}
    for i in range(calls + 2):  # the first two of each size compile and warm up
        for n in sizes:
            wall, cpu = time.perf_counter(), time.process_time()
            timings = engine.run([request] * n)[0].timings
            wall, cpu = (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3
            if i >= 2:
                times[n].append((wall, cpu, timings.prefill_ms, timings.denoise_ms))
    by_size = {}
    for n, samples in times.items():
        wall, cpu, prefill, denoise = (round(float(v), 3) for v in np.median(samples, axis=0))
        by_size[str(n)] = {"batch_ms": wall, "cpu_ms": cpu, "prefill_ms": prefill, "denoise_ms": denoise}
    return {"buckets": list(engine.sampler.buckets), "by_sessions": by_size}


def engine_alone(checkpoint: pathlib.Path, frames: dict[str, np.ndarray], sizes: Sequence[int], calls: int) -> dict:
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        result = pool.submit(engine_times, str(checkpoint), frames, sizes, calls).result()
    lone = result["by_sessions"].get("1")
    if lone is not None:  # N sessions in one full batch and no cost outside the engine: N / t(N) vs N / t(1)
        ceiling = {n: round(lone["batch_ms"] / t["batch_ms"], 3) for n, t in result["by_sessions"].items()}
        result["ceiling"] = ceiling
    return result


# -- rounds ---------------------------------------------------------------------------------------------------


def run_round(
    robots: Robots, stub: pb_grpc.RobotRuntimeStub, pid: int, sessions: int, settle_s: float, duration_s: float
) -> dict[str, Any]:
    wait_for_no_sessions(stub)
    busy = robots.start(sessions)
    start = time.monotonic() + settle_s
    end = start + duration_s
    robots.stream(busy, start, end)
    sleep_until(start)
    counters, cpu = runtime_counters(stub), runtime_cpu(pid)
    sleep_until(end)
    counters = {k: v - counters.get(k, 0) for k, v in runtime_counters(stub).items()}
    cpu = {k: v - cpu.get(k, 0.0) for k, v in runtime_cpu(pid).items()}
    answers = robots.finish(busy)
    in_window = [[s for s in session if start <= s[0] < end] for answer in answers for session in answer["samples"]]
    cpu["clients"] = sum(answer["cpu_s"] for answer in answers)
    return {"sessions": sessions, "window_s": duration_s, "samples": in_window, "counters": counters, "cpu_s": cpu}


def summarize(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One N's rounds pooled: as if its windows were one."""
    n = rounds[0]["sessions"]
    window = sum(r["window_s"] for r in rounds)
    per_session = [[s for r in rounds for s in r["samples"][k]] for k in range(n)]
    pooled = [s for session in per_session for s in session]
    if any(not session for session in per_session):
        raise RuntimeError(f"a session got no chunk in its {window:g} s window at N={n}")
    counters: dict[str, int] = {}
    cpu: dict[str, float] = {}
    for r in rounds:
        for k, v in r["counters"].items():
            counters[k] = counters.get(k, 0) + v
        for k, c in r["cpu_s"].items():
            cpu[k] = cpu.get(k, 0.0) + c
    batches = counters.get("batches", 0)
    sizes = {int(k.removeprefix("batches_of_")): v for k, v in counters.items() if k.startswith("batches_of_") and v}
    ours = cpu["runtime"] + cpu["planner"] + cpu["clients"]
    cores = {k: round(v / window, 3) for k, v in cpu.items() if k != "machine"}
    cores["others"] = round(max(0.0, cpu["machine"] - ours) / window, 3)
    return {
        "sessions": n,
        "chunks": len(pooled),
        "chunks_per_s": round(len(pooled) / window, 2),
        "chunks_per_s_by_round": [round(len(sum(r["samples"], [])) / r["window_s"], 2) for r in rounds],
        "latency": percentiles([s[1] for s in pooled]),
        "session_latency": [percentiles([s[1] for s in session]) for session in per_session],
        "server_queue_p50_ms": round(float(np.median([s[2] for s in pooled])), 3),
        "server_engine_p50_ms": round(float(np.median([s[3] - s[2] for s in pooled])), 3),
        "other_p50_ms": round(float(np.median([s[1] - s[3] for s in pooled])), 3),
        "mean_batch": round(counters.get("batched_chunks", 0) / batches, 3) if batches else None,
        "batches_per_s": round(batches / window, 2),
        "actor_busy": round(counters.get("actor_busy_us", 0) / 1e6 / window, 3),
        "batch_sizes": {str(size): count for size, count in sorted(sizes.items())},
        "dropped": counters.get("dropped", 0),
        "cores": cores,
        "window_s": window,
    }


def scaling(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    lone = next((s["chunks_per_s"] for s in summaries if s["sessions"] == 1), None)
    if lone is None:
        return {"by_sessions": {}, "ratio": None}
    by_sessions = {str(s["sessions"]): round(s["chunks_per_s"] / (s["sessions"] * lone), 3) for s in summaries}
    largest = max(s["sessions"] for s in summaries)
    ratio = by_sessions[str(largest)]
    return {
        "by_sessions": by_sessions,
        "ratio": {"sessions": largest, "value": ratio, "target": TARGET_RATIO, "met": ratio >= TARGET_RATIO},
    }


def table(summaries: Sequence[dict[str, Any]], by_sessions: dict[str, float]) -> str:
    head = (
        f"{'N':>3} {'chunks/s':>9} {'scaling':>8} {'p50 ms':>8} {'p99 ms':>8} {'queue':>7} {'engine':>7} "
        f"{'other':>7} {'batch':>6} {'busy':>5}  cores: runtime (loop/xla) planner clients others"
    )
    lines = [head]
    for s in summaries:
        c = s["cores"]
        p50 = np.median([p["p50_ms"] for p in s["session_latency"]])
        p99 = max(p["p99_ms"] for p in s["session_latency"])
        batch = "-" if s["mean_batch"] is None else f"{s['mean_batch']:.2f}"
        scale = by_sessions.get(str(s["sessions"]))
        lines.append(
            f"{s['sessions']:>3} {s['chunks_per_s']:>9.1f} {'-' if scale is None else f'{scale:.3f}':>8} "
            f"{p50:>8.2f} {p99:>8.2f} {s['server_queue_p50_ms']:>7.2f} {s['server_engine_p50_ms']:>7.2f} "
            f"{s['other_p50_ms']:>7.2f} {batch:>6} {s['actor_busy']:>5.2f}  "
            f"{c['runtime']:.2f} ({c.get('event_loop', 0):.2f}/{c.get('xla', 0):.2f}) {c['planner']:.2f} "
            f"{c['clients']:.2f} {c['others']:.2f}"
        )
    return "\n".join(lines)


def engine_table(engine: dict[str, Any]) -> str:
    lines = [f"the engine alone, one batch of N at a time (buckets {engine['buckets']}):"]
    head = ("N", 3), ("batch ms", 9), ("per chunk", 10), ("cpu ms", 7), ("prefill", 8), ("denoise", 8), ("ceiling", 8)
    lines.append(" ".join(f"{name:>{width}}" for name, width in head))
    for n, t in engine["by_sessions"].items():
        ceiling = engine.get("ceiling", {}).get(n)
        lines.append(
            f"{n:>3} {t['batch_ms']:>9.2f} {t['batch_ms'] / int(n):>10.2f} {t['cpu_ms']:>7.2f} {t['prefill_ms']:>8.2f} "
            f"{t['denoise_ms']:>8.2f} {'-' if ceiling is None else f'{ceiling:.3f}':>8}"
        )
    return "\n".join(lines)


def verdict(summaries: Sequence[dict[str, Any]], ratio: dict[str, Any] | None, engine: dict[str, Any] | None) -> str:
    if ratio is None:
        return "no round with a lone session (N=1): no scaling ratio"
    n, largest = ratio["sessions"], summaries[-1]
    met = "met" if ratio["met"] else "NOT met"
    text = f"ratio throughput(N={n}) / ({n} x throughput(N=1)) = {ratio['value']:.3f} (target {TARGET_RATIO}: {met})"
    if engine is not None and "ceiling" in engine:
        text += f"; the engine alone allows {engine['ceiling'][str(n)]:.3f}"
    return text + (
        f"; at N={n} the batcher had a batch in flight {largest['actor_busy']:.0%} of the time, "
        f"{largest['mean_batch']} requests a batch on average"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,2,4,8", help="comma-separated session counts (default 1,2,4,8)")
    parser.add_argument("--duration-s", type=float, default=8.0, help="counted window per round")
    parser.add_argument("--settle-s", type=float, default=1.0, help="streaming before the window opens")
    parser.add_argument("--warmup", type=int, default=10, help="chunks per session before the round starts")
    parser.add_argument("--rounds", type=int, default=1, help="sweeps of every N, interleaved, pooled per N")
    parser.add_argument(
        "--period-ms", type=float, default=0.0, help="one request per session every MS (0: back to back)"
    )
    parser.add_argument("--max-batch", type=int, default=8, help="the runtime's --max-batch")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="the runtime's --max-wait-ms")
    parser.add_argument("--encoding", choices=("raw", "jpeg", "png"), default="raw")
    parser.add_argument("--frames", choices=("noise", "scene"), default="noise", help="what the cameras send")
    parser.add_argument("--image-size", type=int, default=224, help="camera frames are SIZE² pixels")
    parser.add_argument(
        "--client-processes", type=int, default=0, help="processes the sessions are spread over (0: one each)"
    )
    parser.add_argument("--runtime-cpus", help="pin the runtime process to these cores (e.g. 0)")
    parser.add_argument("--client-cpus", help="pin the client processes to these cores (e.g. 1)")
    parser.add_argument(
        "--engine-calls", type=int, default=20, help="timed batches per N of the engine alone, first (0: skip)"
    )
    parser.add_argument("--checkpoint", type=pathlib.Path, help="serve this checkpoint (default: random tiny)")
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.sessions.split(",")})
    if not counts or counts[0] < 1:
        parser.error(f"--sessions must be positive counts, got {args.sessions!r}")

    if args.frames == "scene":
        frames = scene_frames(size=args.image_size)
    else:
        frames = [noise_frames(seed, args.image_size) for seed in range(8)]
    extra = ["--planner-interval", "3600", "--wait-for-subtask-ms", "0"]
    extra += ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    if args.runtime_cpus:
        extra += ["--actor-cpus", args.runtime_cpus]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="multi-robot-") as tmp:
        workdir = pathlib.Path(tmp)
        checkpoint = args.checkpoint or tiny_checkpoint(workdir / "tiny")
        engine = engine_alone(checkpoint, frames[0], counts, args.engine_calls) if args.engine_calls else None
        with serve_process(checkpoint, workdir / "serve.log", *extra) as server:
            with grpc.insecure_channel(server.address) as channel:
                stub = pb_grpc.RobotRuntimeStub(channel)
                metadata = stub.GetMetadata(pb.MetadataRequest(), timeout=30)
                period_s = args.period_ms / 1e3
                setup = ClientSetup(
                    server.address, frames, metadata.state_dims, args.encoding, period_s, args.warmup, args.client_cpus
                )
                robots = Robots(setup, args.client_processes or counts[-1])
                try:
                    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
                    for _ in range(args.rounds):
                        for n in counts:
                            timing = (args.settle_s, args.duration_s)
                            rounds[n].append(run_round(robots, stub, server.process.pid, n, *timing))
                            print(f"N={n}: {summarize(rounds[n][-1:])['chunks_per_s']} chunks/s", file=sys.stderr)
                finally:
                    robots.close()
    summaries = [summarize(rounds[n]) for n in counts]
    scale = scaling(summaries)
    print(table(summaries, scale["by_sessions"]))
    if engine is not None:
        print(engine_table(engine))
    print(verdict(summaries, scale["ratio"], engine))
    result = {
        "results": summaries,
        "scaling": scale["by_sessions"],
        "ratio": scale["ratio"],
        "engine": engine,
        "settings": {
            "sessions": counts,
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "period_ms": args.period_ms,
            "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms,
            "encoding": args.encoding,
            "frames": args.frames,
            "image_size": args.image_size,
            "client_processes": args.client_processes or counts[-1],
            "runtime_cpus": args.runtime_cpus,
            "client_cpus": args.client_cpus,
            "checkpoint": str(args.checkpoint) if args.checkpoint else "random tiny",
        },
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before]},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
