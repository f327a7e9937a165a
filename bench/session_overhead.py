"""What the gRPC session costs on top of the actor, and how much a busy planner slows the actor.

1. Overhead: the same chunk request (2 cameras at 224², state, task), once through `ChunkEngine.run` in this
   process and once through a real `robot-runtime serve` over a loopback Session stream, raw and JPEG
   images. `paired_overhead` is, per chunk, the client's round trip minus the server's own queue + engine
   time for that chunk (robust to the engine's speed drifting on a shared machine); `overhead_p50_ms` is
   median(stream round trip) − median(in-process call), which mixes in that drift. The frames are rendered
   scenes of the built-in tasks (what a camera sends); `grpc_jpeg_noise` repeats the JPEG run on uniform
   noise, the worst case for a JPEG decoder (59 KB a frame at quality 95, a scene 6–11 KB).
   `grpc_floor` is the same client and the same paired measure against a bare grpc.aio servicer that idles
   for the engine's median time and then answers each raw observation with a zero chunk (no validation, no
   actor): what gRPC and the client alone cost on this machine, waking up after an engine-long wait, so
   `above_floor_p50_ms` is the runtime's own share.
2. Planner interference: a separate `serve-planner` process pinned to its own core(s) and the runtime pinned to
   others; the actor's chunk latency while the planner decodes continuously (a client hammers Plan) vs while
   it is idle (the planner process is paused with SIGSTOP). ratio = p99 busy / p99 idle. The bench's own
   robot client runs on the runtime's cores and the Plan-hammering process on the planner's, so the two
   states differ only in what the planner does. The client asks for a chunk every `--interference-period-ms`
   (20 ms, faster than a robot that replans every few 10 Hz control steps). Back to back (0) the client and
   the engine alone keep the runtime's one core busy, and each new observation sends the planner a fresh
   snapshot as soon as it is free: with a fast planner that is a 300 KB snapshot about every 10 ms, on the
   same core, which then shows in the actor's tail.

    .venv/bin/python bench/session_overhead.py [--checkpoint DIR] [--calls 60] [--floor-pause-ms MS]
        [--interference-calls 1000] [--interference-period-ms 20] [--skip-interference]

The last line is one JSON object with the figures. On a 2-core machine the runtime gets core 0 and the
planner core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import TASK, FrameSource, noise_frames, percentiles, tiny_checkpoint  # noqa: E402
from client.robot_client import RobotClient  # noqa: E402
from protos.robot_runtime.v1 import runtime_pb2 as pb  # noqa: E402
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc  # noqa: E402
from protos.wire import numpy_to_image, numpy_to_tensor  # noqa: E402
from runtime.launch import serve_process  # noqa: E402
from runtime.serve import set_cpu_affinity  # noqa: E402


def in_process_latency(checkpoint: pathlib.Path, calls: int, frames: FrameSource) -> list[float]:
    from actor.engine import ChunkEngine, ChunkRequest, EngineConfig
    from policy.inputs import LIBERO_CAMERAS
    from policy.model_dir import ModelDir

    model_dir = ModelDir.open(checkpoint)
    dims = model_dir.norm_stats["actions"].dim
    engine = ChunkEngine.from_model_dir(model_dir, EngineConfig(action_dims=dims))
    state = np.linspace(-0.5, 0.5, model_dir.norm_stats["state"].dim, dtype=np.float32)
    samples = []
    for i in range(calls + 3):
        request = ChunkRequest({LIBERO_CAMERAS[k]: v for k, v in frames(i).items()}, TASK, TASK, state)
        start = time.perf_counter()
        engine.run([request])
        if i >= 3:
            samples.append((time.perf_counter() - start) * 1e3)
    return samples


def stream_latency(
    address: str,
    encoding: str,
    calls: int,
    state_dims: int,
    frames: FrameSource | None = None,
    period_ms: float = 0.0,
) -> tuple[list[float], list[float]]:
    """Round trips through `RobotClient` and, per chunk, round trip minus the server's queue + engine time.
    With `period_ms`, a request starts every `period_ms` like a robot's control loop; else back to back."""
    frames = frames or FrameSource("noise")
    state = np.linspace(-0.5, 0.5, state_dims, dtype=np.float32)
    samples, overheads = [], []
    with RobotClient(address, TASK, image_encoding=encoding) as client:
        next_start = time.perf_counter()
        for i in range(calls + 3):
            time.sleep(max(0.0, next_start - time.perf_counter()))
            next_start += period_ms / 1e3
            chunk = client.infer(frames(i), state)
            if i >= 3:
                samples.append(chunk.round_trip_ms)
                overheads.append(chunk.round_trip_ms - chunk.timings.total_ms)
    return samples, overheads


class EchoRuntime(pb_grpc.RobotRuntimeServicer):
    """Metadata on open, then a zero chunk for every observation after `pause_ms` of idling (the engine's time),
    reported as the chunk's server time like the runtime reports its engine time."""

    def __init__(self, state_dims: int, pause_ms: float):
        self._pause = pause_ms / 1e3
        self._metadata = pb.RuntimeMetadata(
            action_dims=7, action_horizon=10, state_dims=state_dims, cameras=["agentview", "wrist"], session_id="echo"
        )
        self._actions = numpy_to_tensor(np.zeros((10, 7), np.float32))

    async def Session(self, request_iterator, context):
        async for request in request_iterator:
            kind = request.WhichOneof("kind")
            if kind == "open":
                yield pb.SessionEvent(metadata=self._metadata)
            elif kind == "observation":
                start = time.perf_counter()
                await asyncio.sleep(self._pause)
                timings = pb.Timings(total_ms=(time.perf_counter() - start) * 1e3)
                step = request.observation.step
                chunk = pb.ActionChunk(observation_step=step, actions=self._actions, timings=timings)
                yield pb.SessionEvent(chunk=chunk)


def run_echo_server(port: int, state_dims: int, pause_ms: float) -> None:
    from protos.grpc_server import server_options
    from runtime.serve import run_async

    async def main():
        server = grpc.aio.server(options=server_options())
        pb_grpc.add_RobotRuntimeServicer_to_server(EchoRuntime(state_dims, pause_ms), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    run_async(main())


def floor_overhead(calls: int, state_dims: int, frames: FrameSource, pause_ms: float) -> list[float]:
    """Per chunk: round trip − pause through `EchoRuntime`, raw frames."""
    port = free_port()
    args = (port, state_dims, pause_ms)
    server = multiprocessing.get_context("spawn").Process(target=run_echo_server, args=args, daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or not server.is_alive():
                    raise RuntimeError(f"the echo server did not start (exit code {server.exitcode})") from None
                time.sleep(0.1)
        _, overheads = stream_latency(f"127.0.0.1:{port}", "raw", calls, state_dims, frames)
        return overheads
    finally:
        server.terminate()
        server.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_planner(address: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    request = pb.PlanRequest(task=TASK, images={"base_0_rgb": numpy_to_image(np.zeros((224, 224, 3), np.uint8))})
    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            try:
                pb_grpc.PlannerStub(channel).Plan(request, timeout=30)
                return
            except grpc.RpcError:
                time.sleep(0.5)
    raise TimeoutError(f"planner at {address} not ready after {timeout_s}s")


def hammer_planner(address: str, stop, counter, cpus: str) -> None:
    """Plan after Plan until `stop` is set; runs in its own process so it shares no GIL with the robot client."""
    set_cpu_affinity(cpus)
    request = pb.PlanRequest(
        task=TASK, images={"base_0_rgb": numpy_to_image(noise_frames(0)["agentview"])}, max_tokens=20
    )
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PlannerStub(channel)
        while not stop.is_set():
            stub.Plan(request, timeout=60)
            with counter.get_lock():
                counter.value += 1


def interference(
    checkpoint: pathlib.Path, workdir: pathlib.Path, calls: int, state_dims: int, period_ms: float
) -> dict:
    cpus = os.cpu_count() or 2
    actor_cpus, planner_cpus = ("0", "1") if cpus <= 3 else (f"0-{cpus // 2 - 1}", f"{cpus // 2}-{cpus - 1}")
    port = free_port()
    planner_address = f"127.0.0.1:{port}"
    planner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve-planner",
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(port),
            "--cpus",
            planner_cpus,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    own_cpus = os.sched_getaffinity(0)
    try:
        wait_for_planner(planner_address)
        args = ("--planner-address", planner_address, "--actor-cpus", actor_cpus)
        set_cpu_affinity(actor_cpus)
        with serve_process(checkpoint, workdir / "serve.log", *args) as runtime:
            spawn = multiprocessing.get_context("spawn")
            stop, counter = spawn.Event(), spawn.Value("i", 0)
            hammer_args = (planner_address, stop, counter, planner_cpus)
            hammer = spawn.Process(target=hammer_planner, args=hammer_args, daemon=True)
            hammer.start()
            deadline = time.monotonic() + 120
            while counter.value == 0 and hammer.is_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if counter.value == 0:
                raise RuntimeError("the Plan-hammering process never got an answer from the planner")
            busy, _ = stream_latency(runtime.address, "raw", calls, state_dims, period_ms=period_ms)
            stop.set()
            hammer.join()
            planner.send_signal(signal.SIGSTOP)
            time.sleep(0.5)
            idle, _ = stream_latency(runtime.address, "raw", calls, state_dims, period_ms=period_ms)
            planner.send_signal(signal.SIGCONT)
    finally:
        os.sched_setaffinity(0, own_cpus)
        planner.terminate()
        planner.wait(timeout=30)
    return {
        "period_ms": period_ms,
        "actor_cpus": actor_cpus,
        "planner_cpus": planner_cpus,
        "planner_busy": {**percentiles(busy), "plans_during": counter.value},
        "planner_idle": percentiles(idle),
        "p99_ratio_busy_over_idle": round(float(np.percentile(busy, 99) / np.percentile(idle, 99)), 3),
        "p50_ratio_busy_over_idle": round(float(np.percentile(busy, 50) / np.percentile(idle, 50)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model directory (default: a fresh random `tiny` checkpoint)")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument(
        "--floor-pause-ms",
        type=float,
        help="how long the bare servicer idles per chunk (default: the engine's median; 0 answers at once)",
    )
    parser.add_argument(
        "--interference-calls", type=int, default=1000, help="chunks per planner state (p99 needs many)"
    )
    parser.add_argument(
        "--interference-period-ms",
        type=float,
        default=20.0,
        help="one chunk request every this many ms, like a robot loop (0: back to back)",
    )
    parser.add_argument("--skip-interference", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="session-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        checkpoint = pathlib.Path(args.checkpoint) if args.checkpoint else workdir / "tiny"
        if not args.checkpoint:
            tiny_checkpoint(checkpoint)
        from policy.model_dir import ModelDir

        state_dims = ModelDir.open(checkpoint).norm_stats["state"].dim
        scenes = FrameSource("scene")
        local = percentiles(in_process_latency(checkpoint, args.calls, scenes))
        print(f"in-process engine: {local}", file=sys.stderr)
        pause_ms = local["p50_ms"] if args.floor_pause_ms is None else args.floor_pause_ms
        floor = percentiles(floor_overhead(args.calls, state_dims, scenes, pause_ms))
        print(f"grpc floor (bare servicer idling {pause_ms} ms per chunk): {floor}", file=sys.stderr)
        result: dict = {"in_process": local, "grpc_floor": {**floor, "pause_ms": pause_ms}}
        (workdir / "a").mkdir()
        with serve_process(checkpoint, workdir / "a" / "serve.log", "--planner-interval", "3600") as runtime:
            for name, encoding, frames in (
                ("grpc_raw", "raw", scenes),
                ("grpc_jpeg", "jpeg", scenes),
                ("grpc_jpeg_noise", "jpeg", FrameSource("noise")),
            ):
                remote, overheads = stream_latency(runtime.address, encoding, args.calls, state_dims, frames)
                stats, paired = percentiles(remote), percentiles(overheads)
                result[name] = {
                    **stats,
                    "paired_overhead": paired,
                    "above_floor_p50_ms": round(paired["p50_ms"] - floor["p50_ms"], 3),
                    "overhead_p50_ms": round(stats["p50_ms"] - result["in_process"]["p50_ms"], 3),
                    "overhead_p99_ms": round(stats["p99_ms"] - result["in_process"]["p99_ms"], 3),
                }
                print(f"{name}: {result[name]}", file=sys.stderr)
        if not args.skip_interference:
            (workdir / "b").mkdir()
            result["planner_interference"] = interference(
                checkpoint, workdir / "b", args.interference_calls, state_dims, args.interference_period_ms
            )
        result["calls"] = args.calls
    print(json.dumps(result))


if __name__ == "__main__":
    main()
