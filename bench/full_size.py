"""A full-size pi0.5 on this machine: load time, peak memory against the weights' bytes, first and steady chunk,
first subtask.

Every measurement runs in a fresh process (this script with `--worker`), so each peak RSS is that process's own
(VmHWM, else ru_maxrss):
- make (`--make DIR`): `robot-runtime init-checkpoint --config C --out DIR [--dtype D]`, in process: seconds,
  peak RSS, bytes on disk;
- load: `ModelDir.open(DIR).load_model()`, as the actor and the planner load their weights
  (`policy.checkpoint.load_model`): seconds, the weights' bytes (the loaded parameters' nbytes), RSS before
  loading (JAX started, nothing loaded), peak RSS, and `peak_rss_over_weights` (target <= 1.3: one copy of
  the weights and no transient second one). `load_rss_over_weights` counts from the RSS before loading;
- serve (`--serve`): the same load, then the actor's `ChunkEngine` and the planner's `SubtaskDecoder` over that
  one network (in service each process loads its own), batch bucket 1 only. The first chunk includes compiling
  the prefix pass and the denoiser, the first subtask its prefix pass and decode loop (`compile_s` of each);
  `--chunks` and `--subtasks` more calls give the steady latency; then the peak RSS again, and the largest
  scratch memory an executable of each engine needs (`actor_scratch_bytes`, `planner_scratch_bytes`). The
  requests are two LIBERO cameras of uniform noise at the model's image size, the task, a zero state.

The persistent compilation cache is off unless `--compile-cache DIR` is given, so that first calls compile.
A table, then one JSON object as the last line.

    .venv/bin/python bench/full_size.py --checkpoint DIR [--serve] [--chunks 5] [--subtasks 2]
    .venv/bin/python bench/full_size.py --make DIR [--config pi05] [--dtype bfloat16] [--serve]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = "put the red cube in the bowl"
TARGET_RATIO = 1.3
GB = 1e9


# -- measured in the worker processes ------------------------------------------------------------------------


def memory() -> dict[str, int]:
    """This process's resident set now and at its peak, in bytes (/proc, else getrusage's peak for both)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    if "VmHWM" not in found:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        found["VmHWM"] = peak if sys.platform == "darwin" else peak * 1024
        found.setdefault("VmRSS", found["VmHWM"])
    return {"rss_bytes": found["VmRSS"], "peak_rss_bytes": found["VmHWM"]}


def disk_bytes(directory: pathlib.Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def make_worker(out: pathlib.Path, config: str, dtype: str | None, seed: int) -> dict[str, Any]:
    from app.cli import main as cli

    argv = ["init-checkpoint", "--config", config, "--out", str(out), "--seed", str(seed)]
    argv += ["--dtype", dtype] if dtype else []
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        if cli(argv) != 0:
            raise SystemExit(f"init-checkpoint {' '.join(argv[1:])} failed")
    seconds = time.perf_counter() - start
    return {"make_s": round(seconds, 2), "disk_bytes": disk_bytes(out / "params"), **memory()}


def load(checkpoint: pathlib.Path) -> tuple[Any, Any, dict[str, Any]]:
    """The model directory, the network, and the load's figures (the serving engines' load)."""
    import jax

    from policy.checkpoint import model_params
    from policy.model_dir import ModelDir

    jax.devices()  # the backend is up before the baseline
    before = memory()["rss_bytes"]
    start = time.perf_counter()
    model_dir = ModelDir.open(checkpoint)
    model = model_dir.load_model()
    params = jax.tree.leaves(model_params(model))
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    weights = sum(int(x.nbytes) for x in params)
    figures = {
        "load_s": round(seconds, 2),
        "params": sum(int(x.size) for x in params),
        "weights_bytes": weights,
        "weights_dtypes": sorted({str(x.dtype) for x in params}),
        "rss_before_load_bytes": before,
        **memory(),
    }
    figures |= ratios(figures)
    return model_dir, model, figures


def ratios(figures: dict[str, Any]) -> dict[str, float]:
    """Peak RSS over the weights' bytes: the whole process's, and counted from the RSS before loading."""
    weights, peak = figures["weights_bytes"], figures["peak_rss_bytes"]
    return {
        "peak_rss_over_weights": round(peak / weights, 3),
        "load_rss_over_weights": round((peak - figures["rss_before_load_bytes"]) / weights, 3),
    }


def load_worker(checkpoint: pathlib.Path) -> dict[str, Any]:
    return load(checkpoint)[2]


def serve_worker(checkpoint: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from actor.engine import ChunkEngine, ChunkRequest, EngineConfig
    from actor.sampler import FlowSampler
    from bench.common import noise_frames
    from planner.decoder import DecodeRequest, SubtaskDecoder
    from policy.inputs import LIBERO_CAMERAS

    model_dir, model, figures = load(checkpoint)
    cfg, stats = model_dir.config, model_dir.norm_stats
    tokenizer = model_dir.text_tokenizer()
    action_dims = stats["actions"].dim if "actions" in stats else cfg.action_dim
    state = np.zeros(stats["state"].dim if "state" in stats else cfg.action_dim, np.float32)
    images = {LIBERO_CAMERAS[name]: frame for name, frame in noise_frames(0, cfg.vision.image_size).items()}

    sampler = FlowSampler(model, cfg, num_steps=args.num_steps, buckets=(1,))
    config = EngineConfig(action_dims=action_dims, noise_scale=model_dir.serving.noise_scale, seed=0)
    engine = ChunkEngine(sampler, tokenizer, stats, config)
    request = ChunkRequest(images, TASK, TASK, state)
    chunk_ms = []
    for _ in range(1 + args.chunks):
        start = time.perf_counter()
        (result,) = engine.run([request])
        chunk_ms.append((time.perf_counter() - start) * 1e3)
    last = result.timings
    figures |= {
        "first_chunk_s": round(chunk_ms[0] / 1e3, 2),
        "actor_compile_s": round(sum(event.compile_ms for event in sampler.compiles) / 1e3, 2),
        "actor_scratch_bytes": sampler.stages.scratch_bytes,
        "steady_chunk_ms": summary(chunk_ms[1:]),
        "chunk_prefill_ms": round(last.prefill_ms, 1),
        "chunk_denoise_ms": round(last.denoise_ms, 1),
        "chunk_shape": list(result.actions.shape),
        "num_steps": args.num_steps,
    }

    decoder = SubtaskDecoder(model, tokenizer, cfg, max_new_tokens=args.max_new_tokens, buckets=(1,), norm_stats=stats)
    plan = DecodeRequest(images, TASK, state if decoder.warm_up_state is not None else None)
    subtask_ms = []
    for _ in range(1 + args.subtasks):
        start = time.perf_counter()
        (planned,) = decoder.decode([plan])
        subtask_ms.append((time.perf_counter() - start) * 1e3)
    figures |= {
        "first_subtask_s": round(subtask_ms[0] / 1e3, 2),
        "planner_compile_s": round(sum(event.compile_ms for event in decoder.compiles) / 1e3, 2),
        "planner_scratch_bytes": decoder.stages.scratch_bytes,
        "steady_subtask_ms": summary(subtask_ms[1:]),
        "subtask_tokens": len(planned.token_ids),
        "subtask": planned.text,
        "max_new_tokens": args.max_new_tokens,
    }
    serve_memory = memory()
    figures |= {"serve_rss_bytes": serve_memory["rss_bytes"], "serve_peak_rss_bytes": serve_memory["peak_rss_bytes"]}
    return figures


def summary(samples_ms: list[float]) -> dict[str, float] | None:
    if not samples_ms:
        return None
    return {
        "calls": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 1),
        "min_ms": round(min(samples_ms), 1),
        "max_ms": round(max(samples_ms), 1),
    }


def worker(args: argparse.Namespace) -> int:
    from policy.compile_cache import enable_compile_cache

    enable_compile_cache(args.compile_cache)
    if args.worker == "make":
        figures = make_worker(args.make, args.config, args.dtype, args.seed)
    elif args.worker == "load":
        figures = load_worker(args.checkpoint)
    else:
        figures = serve_worker(args.checkpoint, args)
    print(json.dumps(figures))
    return 0


# -- the bench: one process per measurement ------------------------------------------------------------------


def run_worker(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs this script as a `kind` worker; its last stdout line is its figures (stderr passes through)."""
    argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", kind]
    argv += ["--compile-cache", args.compile_cache, "--seed", str(args.seed), "--config", args.config]
    argv += ["--dtype", args.dtype] if args.dtype else []
    argv += ["--make", str(args.make)] if kind == "make" else ["--checkpoint", str(args.checkpoint)]
    argv += ["--chunks", str(args.chunks), "--subtasks", str(args.subtasks), "--num-steps", str(args.num_steps)]
    argv += ["--max-new-tokens", str(args.max_new_tokens)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=args.timeout, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the {kind} measurement failed (exit {done.returncode})")
    return json.loads(lines[-1])


def gb(value: float) -> str:
    return f"{value / GB:.2f} GB" if value >= GB else f"{value / 1e6:.1f} MB"


def ms(figure: dict[str, float] | None) -> str:
    return "-" if figure is None else f"{figure['p50_ms']:.0f} ms (min {figure['min_ms']:.0f}, n {figure['calls']})"


def table(figures: dict[str, Any]) -> list[str]:
    rows = []
    if figures.get("make"):
        made = figures["make"]
        rows.append(
            f"make   {made['make_s']:8.1f} s   peak RSS {gb(made['peak_rss_bytes'])}   disk {gb(made['disk_bytes'])}"
        )
    for name in ("load", "serve"):
        done = figures.get(name)
        if not done:
            continue
        rows.append(
            f"{name:<6} load {done['load_s']:6.1f} s   weights {gb(done['weights_bytes'])} "
            f"({'/'.join(done['weights_dtypes'])}, {done['params'] / 1e9:.2f} B params)   "
            f"RSS before {gb(done['rss_before_load_bytes'])}   peak RSS {gb(done['peak_rss_bytes'])}   "
            f"peak / weights {done['peak_rss_over_weights']:.2f} (from before load {done['load_rss_over_weights']:.2f})"
        )
    served = figures.get("serve")
    if served:
        rows.append(
            f"actor    first chunk {served['first_chunk_s']:.1f} s (compile {served['actor_compile_s']:.1f} s)   "
            f"steady {ms(served['steady_chunk_ms'])}   prefill {served['chunk_prefill_ms']:.0f} ms "
            f"denoise {served['chunk_denoise_ms']:.0f} ms   chunk {served['chunk_shape']}"
        )
        rows.append(
            f"planner  first subtask {served['first_subtask_s']:.1f} s (compile {served['planner_compile_s']:.1f} s)   "
            f"steady {ms(served['steady_subtask_ms'])}   {served['subtask_tokens']} tokens {served['subtask']!r}"
        )
        peak, end = gb(served["serve_peak_rss_bytes"]), gb(served["serve_rss_bytes"])
        scratch = max(served["actor_scratch_bytes"], served["planner_scratch_bytes"])
        rows.append(
            f"serve    peak RSS {peak} ({served['serve_peak_rss_bytes'] / served['weights_bytes']:.2f} × weights)   "
            f"RSS at end {end}   largest executable scratch {gb(scratch)}"
        )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", type=pathlib.Path, help="model directory to load (openpi layout + config)")
    where.add_argument("--make", type=pathlib.Path, help="write a random-weight checkpoint here first, then load it")
    parser.add_argument("--config", default="pi05", help="--make: the model config (default pi05)")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], help="--make: weights dtype (config default)")
    parser.add_argument("--seed", type=int, default=0, help="--make: the random weights' seed")
    parser.add_argument("--serve", action="store_true", help="also time the first and steady chunk and subtask")
    parser.add_argument("--chunks", type=int, default=5, help="steady chunks timed after the first (default 5)")
    parser.add_argument("--subtasks", type=int, default=2, help="steady subtasks timed after the first (default 2)")
    parser.add_argument("--num-steps", type=int, default=10, help="flow-matching steps per chunk (default 10)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="the planner's decode length (default 20)")
    parser.add_argument("--compile-cache", default="off", help="persistent compilation cache DIR, or off (default)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds each measurement may take")
    parser.add_argument("--worker", choices=["make", "load", "serve"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.chunks < 0 or args.subtasks < 0 or args.num_steps < 1 or args.max_new_tokens < 1:
        parser.error("--chunks and --subtasks must be >= 0, --num-steps and --max-new-tokens >= 1")
    if args.make is not None and args.make.exists() and any(args.make.iterdir()):
        parser.error(f"--make {args.make} exists and is not empty; load it with --checkpoint instead")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    figures: dict[str, Any] = {"make": None}
    if args.make is not None:
        figures["make"] = run_worker("make", args)
        args.checkpoint = args.make
    figures["checkpoint"] = str(args.checkpoint.resolve())
    figures["load"] = run_worker("load", args)
    figures["serve"] = run_worker("serve", args) if args.serve else None
    figures["target_ratio"] = TARGET_RATIO
    figures["ratio_met"] = figures["load"]["peak_rss_over_weights"] <= TARGET_RATIO
    figures["compile_cache"] = args.compile_cache
    figures["jax"] = importlib.metadata.version("jax")
    figures |= {"cpu_cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    for row in table(figures):
        print(row, flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
