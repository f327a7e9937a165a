"""Peer benchmark: this project's pi0.5 against openpi's own implementation, side by side in one run.

One set of random weights (saved in openpi's checkpoint layout) and one set of inputs (3 cameras at 224², a
20-token prompt, flow noise) go to three worker processes (`bench/vs_openpi_worker.py`), each kept warm:
- ours:            `FlowSampler` chunks and `policy.decoding.generate` text, on this venv's jax;
- openpi:          openpi's `Pi0.sample_actions`, jitted as its policy does, on openpi's pinned jax/flax in
                   its own venv (`--venv`, built on first use with only what its model code imports);
- openpi_our_jax:  the same openpi code on this venv's jax, so the compiler is the same as ours
                   (`--skip-same-jax` leaves it out; if openpi's code fails there, the JSON says why).
The workers stay idle while another is timed; the parent asks each in turn, rotating the order every round,
so load drift on a shared machine hits all alike. Per round and configuration it prints the medians and the
ratio ours / reference (< 1: ours is faster).

Measured: chunk latency (10 Euler steps) per batch and dtype; subtask decode (20 greedy tokens including the
prefill, batch 1); cold start (process start → first chunk returned; ours with JAX's persistent compilation
cache as `robot-runtime serve` has it, first empty, then once more with the cache the first start filled, while
openpi's serving compiles anew at every start); peak RSS (VmHWM) per worker; parity
(max abs difference of the actions for the same noise, and whether the decoded tokens agree: it proves the
sides run the same model); and a roofline figure: XLA's FLOP count of a chunk and a decode, the float32
matmul peak of this machine measured in the same run, and the fraction of it that each side achieves.

Shape (`--shape`): pi0.5 with Gemma `dummy` for both experts, max_token_len 48, action_dim 32, horizon 50.
`dummy` (the default) uses SigLIP mu/14 and a 1024-token vocabulary, the shape of this project's `dummy`
figures and of the openpi parity fixture; openpi's Pi0 is pointed at them by two module attributes (see
`openpi_shape_patches` in the worker). `openpi-dummy` is openpi's `Pi0Config(pi05=True, paligemma_variant=
"dummy", action_expert_variant="dummy")` untouched: SigLIP So400m/14 and the PaliGemma vocabulary, which is
vision-bound and far too slow for a 2-core CPU (use it on a GPU).

    .venv/bin/python bench/vs_openpi.py --openpi /path/to/openpi                 # 5 rounds × 20 calls
    .venv/bin/python bench/vs_openpi.py --openpi /path/to/openpi --rounds 2 --calls 3 --batches 1 --dtypes float32
Without --openpi (or with a path that is no openpi checkout) it prints one JSON line saying so and exits 0.
The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "bench" / "vs_openpi_worker.py"

# What openpi's JAX model code needs, at openpi's pins (its pyproject.toml, with the ml-dtypes and tensorstore
# overrides of its [tool.uv] section); torch, augmax and safetensors are stubbed in the worker instead.
OPENPI_PINS = (
    "jax==0.5.3",
    "jaxlib==0.5.3",
    "flax==0.10.2",
    "orbax-checkpoint==0.11.13",
    "jaxtyping==0.2.36",
    "beartype==0.19.0",
    "einops",
    "numpy<2",
    "ml_collections==1.0.0",
    "sentencepiece",
    "typing-extensions",
    "ml-dtypes==0.4.1",
    "tensorstore==0.1.74",
)
# What openpi's model code imports and this venv lacks; installed beside the venv (--no-deps), not into it.
SAME_JAX_EXTRAS = ("jaxtyping==0.2.36", "beartype==0.19.0", "einops")
STAMP = ".bench-openpi-installed"

BASE_SHAPE = {"gemma": "dummy", "max_token_len": 48, "action_dim": 32, "action_horizon": 50}
SHAPES = {
    "dummy": {**BASE_SHAPE, "vision": "mu/14", "vocab": 1024},
    "openpi-dummy": {**BASE_SHAPE, "vision": "So400m/14", "vocab": 257_152},
}
STEPS = 10
NEW_TOKENS = 20
PROMPT_TOKENS = 20
SUBJECT = "ours"
WARM_CACHE = "ours_warm_cache"  # our worker started again once the first start filled its compilation cache
REFERENCES = ("openpi", "openpi_our_jax")
PEAK_CALLS = 5


class SideError(RuntimeError):
    """A worker that failed to start, died, or answered an error; the message is one line."""


class Side:
    """A worker process: started at construction (its cold start timed to the ready line), then asked in turn."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: pathlib.Path):
        self.name, self.log_path = name, log
        self.failed: dict[str, str] = {}
        start = time.perf_counter()
        with open(log, "w") as log_file:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env, cwd=ROOT
            )
        self.info = self._reply()
        self.cold_start_s = time.perf_counter() - start

    def request(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise SideError(self._death()) from None
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request(op="quit")
            except SideError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SideError(self._death())
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise SideError(reply["error"])
        return reply

    def _death(self) -> str:
        code = self.proc.wait()
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return f"{self.name} worker exited with status {code}: {lines[-1] if lines else 'no output'}"


def openpi_checkout(path: str | None) -> pathlib.Path | None:
    """The openpi checkout at path, or None if there is none there (no src/openpi/models/pi0.py)."""
    if not path:
        return None
    checkout = pathlib.Path(path).expanduser().resolve()
    return checkout if (checkout / "src" / "openpi" / "models" / "pi0.py").is_file() else None


def not_given(path: str | None) -> dict[str, Any]:
    reason = "openpi not given" if not path else f"openpi not given: {path} has no src/openpi/models/pi0.py"
    return {"openpi": None, "skipped": f"{reason}; pass --openpi PATH (a checkout of Physical-Intelligence/openpi)"}


def pip_install(python: str, target: pathlib.Path, packages: Sequence[str], *extra: str) -> None:
    """Installs packages once: a stamp in target records the exact list, so a changed list reinstalls."""
    stamp = target / STAMP
    wanted = "\n".join(packages)
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    print(f"installing into {target}: {' '.join(packages)}", flush=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *extra, *packages], check=True)
    stamp.write_text(wanted)


def ensure_openpi_venv(venv: pathlib.Path) -> pathlib.Path:
    """openpi's own venv (its pinned jax/flax), created on first use; returns its python."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating openpi's venv at {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip_install(str(python), venv, OPENPI_PINS)
    return python


def ensure_same_jax_site(venv: pathlib.Path) -> pathlib.Path:
    """A directory of the pure-Python packages openpi needs beyond this venv, for running it on our jax."""
    site = venv / "our-jax-site"
    site.mkdir(parents=True, exist_ok=True)
    pip_install(sys.executable, site, SAME_JAX_EXTRAS, "--no-deps", "--target", str(site))
    return site


def write_params(directory: pathlib.Path, shape: dict[str, Any]) -> pathlib.Path:
    """One set of random float32 weights in openpi's layout, perturbed so that every input matters.

    Without the perturbation openpi's zero-initialised adaRMS gates make the actions ignore the prefix, and
    the parity check would prove little.
    """
    sys.path[:0] = [str(ROOT), str(WORKER.parent)]
    from vs_openpi_worker import our_model_config

    from policy.checkpoint import init_params, save_params

    cfg = our_model_config(shape, "float32")
    return save_params(directory / "params", init_params(cfg, seed=0, perturb_std=0.05))


def write_inputs(path: pathlib.Path, shape: dict[str, Any], batch: int, seed: int = 0) -> pathlib.Path:
    """Inputs for `batch` rows, every row different: uint8 images, a right-padded prompt, state, flow noise."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {
        f"image_{key}": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        for key in ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    }
    tokens = np.zeros((batch, shape["max_token_len"]), np.int32)
    tokens[:, :PROMPT_TOKENS] = rng.integers(4, shape["vocab"], (batch, PROMPT_TOKENS))
    tokens[:, 0] = 2
    arrays["tokens"] = tokens
    arrays["token_mask"] = tokens != 0
    arrays["state"] = rng.normal(size=(batch, shape["action_dim"])).astype(np.float32)
    arrays["noise"] = rng.standard_normal((batch, shape["action_horizon"], shape["action_dim"]), np.float32)
    np.savez(path, **arrays)
    return path


def worker_command(python: str, side: str, files: dict[str, str], args: argparse.Namespace) -> list[str]:
    command = [python, str(WORKER), "--side", "ours" if side == SUBJECT else "openpi"]
    command += ["--params", files["params"], "--inputs", files["inputs"], "--shape", json.dumps(SHAPES[args.shape])]
    command += ["--steps", str(STEPS), "--new-tokens", str(NEW_TOKENS)]
    command += ["--first-batch", str(args.batches[0]), "--first-dtype", args.dtypes[0]]
    if side == SUBJECT:
        command += ["--compile-cache", files["compile_cache"]]
    else:
        command += ["--openpi-src", str(args.openpi_checkout / "src")]
    return command


def side_plans(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, str]]]:
    """Per side: the python to run the worker with and its environment (PYTHONPATH set or cleared)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    plans = {SUBJECT: (sys.executable, env)}
    plans["openpi"] = (str(ensure_openpi_venv(args.venv)), env)
    if not args.skip_same_jax:
        plans["openpi_our_jax"] = (sys.executable, {**env, "PYTHONPATH": str(ensure_same_jax_site(args.venv))})
    return plans


def start_sides(
    plans: dict[str, tuple[str, dict[str, str]]], args: argparse.Namespace, files: dict[str, str], logs: pathlib.Path
) -> tuple[dict[str, Side], dict[str, str]]:
    """Starts the workers one after another (cold starts never overlap); returns (running sides, errors)."""
    sides: dict[str, Side] = {}
    errors: dict[str, str] = {}
    for name, (python, env) in plans.items():
        print(f"starting {name} ({python})", flush=True)
        try:
            sides[name] = side = Side(name, worker_command(python, name, files, args), env, logs / f"{name}.log")
        except SideError as err:
            errors[name] = str(err)
            print(f"  {name} failed to start: {err}", flush=True)
            continue
        info = side.info
        print(
            f"  {name}: jax {info['jax']}, flax {info['flax']}, cold start {side.cold_start_s:.1f} s "
            f"(imports {info['import_s']:.1f} s, load + compile + first chunk {info['first_chunk_s']:.1f} s)",
            flush=True,
        )
    return sides, errors


def warm_cache_start(
    plans: dict[str, tuple[str, dict[str, str]]], args: argparse.Namespace, files: dict[str, str], logs: pathlib.Path
) -> float | None:
    """Our worker's cold start once more, now that the first start filled the compilation cache; the worker quits."""
    python, env = plans[SUBJECT]
    print(f"starting {WARM_CACHE} ({python})", flush=True)
    try:
        side = Side(WARM_CACHE, worker_command(python, SUBJECT, files, args), env, logs / f"{WARM_CACHE}.log")
    except SideError as err:
        print(f"  {WARM_CACHE} failed to start: {err}", flush=True)
        return None
    side.close()
    print(f"  {WARM_CACHE}: cold start {side.cold_start_s:.1f} s", flush=True)
    return side.cold_start_s


def cold_start_figures(seconds: dict[str, float], warm_cache_s: float | None) -> dict[str, Any]:
    """Process start → first chunk per side (seconds), and ours over each reference with the cache cold and warm."""
    figures: dict[str, Any] = {name: round(s, 2) for name, s in seconds.items()}
    if warm_cache_s is not None:
        figures[WARM_CACHE] = round(warm_cache_s, 2)
    for ref in REFERENCES:
        if SUBJECT in seconds and ref in seconds:
            ratios = {"cold_cache": round(seconds[SUBJECT] / seconds[ref], 3)}
            if warm_cache_s is not None:
                ratios["warm_cache"] = round(warm_cache_s / seconds[ref], 3)
            figures[f"ours_over_{ref}"] = ratios
    return figures


def configurations(batches: Sequence[int], dtypes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Label → the worker request (without `calls`) for every timed configuration."""
    configs = {f"chunk_b{b}_{d}": {"op": "chunk", "batch": b, "dtype": d} for d in dtypes for b in batches}
    configs.update({f"decode_{d}": {"op": "decode", "dtype": d} for d in dtypes})
    return configs


def ask(side: Side, label: str, **request: Any) -> dict[str, Any] | None:
    """The side's reply, or None after recording its error for this configuration (later asks then skip it)."""
    if label in side.failed:
        return None
    try:
        return side.request(**request)
    except SideError as err:
        side.failed[label] = str(err)
        print(f"  {side.name} {label}: {err}", flush=True)
        return None


def replies(sides: dict[str, Side], label: str, **request: Any) -> dict[str, dict[str, Any]]:
    """Each side's reply to the same request, leaving out the sides that failed it."""
    answers = {name: ask(side, label, **request) for name, side in sides.items()}
    return {name: reply for name, reply in answers.items() if reply is not None}


def warm_up(sides: dict[str, Side], configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Compiles every configuration on every side before any timing; returns the compile seconds."""
    compile_s: dict[str, dict[str, float]] = {name: {} for name in sides}
    for label, request in configs.items():
        for name, side in sides.items():
            reply = ask(side, label, **request, calls=0)
            if reply and reply["compile_s"] is not None:
                compile_s[name][label] = round(reply["compile_s"], 2)
        done = [f"{n} {s[label]} s" if label in s else f"{n} at its cold start" for n, s in compile_s.items()]
        print(f"compiled {label}: " + ", ".join(done), flush=True)
    return compile_s


def parity(sides: dict[str, Side], batch: int, dtypes: Sequence[str]) -> dict[str, Any]:
    """Per dtype: max |ours − reference| of the actions for the same noise, and whether the decoded tokens agree."""
    result: dict[str, Any] = {"batch": batch}
    for dtype in dtypes:
        actions = replies(sides, f"chunk_b{batch}_{dtype}", op="actions", batch=batch, dtype=dtype)
        tokens = replies(sides, f"decode_{dtype}", op="tokens", dtype=dtype)
        figures: dict[str, Any] = {}
        for ref in REFERENCES:
            if SUBJECT in actions and ref in actions:
                diff = np.abs(np.asarray(actions[SUBJECT]["actions"]) - np.asarray(actions[ref]["actions"]))
                figures[f"max_abs_diff_vs_{ref}"] = float(f"{diff.max():.2e}")
            if SUBJECT in tokens and ref in tokens:
                figures[f"same_tokens_as_{ref}"] = tokens[SUBJECT]["tokens"] == tokens[ref]["tokens"]
        result[dtype] = figures
        print(f"parity {dtype}: {figures}", flush=True)
    return result


def run_rounds(
    sides: dict[str, Side], configs: dict[str, dict[str, Any]], rounds: int, calls: int
) -> dict[str, list[dict[str, list[float]]]]:
    """Label → per round, side → the call latencies (ms). The side order rotates every round."""
    names = list(sides)
    timings: dict[str, list[dict[str, list[float]]]] = {label: [] for label in configs}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for label, request in configs.items():
            answers = {name: ask(sides[name], label, **request, calls=calls) for name in order}
            timings[label].append({name: reply["ms"] for name, reply in answers.items() if reply})
            print(f"round {r + 1}/{rounds} {round_line(label, timings[label][-1])}", flush=True)
    return timings


def round_line(label: str, by_side: dict[str, list[float]]) -> str:
    medians = {name: float(np.median(ms)) for name, ms in by_side.items() if ms}
    parts = [f"{name} {ms:8.1f} ms" for name, ms in medians.items()]
    compared = [ref for ref in REFERENCES if {SUBJECT, ref} <= set(medians)]
    parts += [f"ours/{ref} {medians[SUBJECT] / medians[ref]:.2f}" for ref in compared]
    return f"{label:<20} " + "  ".join(parts)


def summarize(rounds: Sequence[dict[str, list[float]]]) -> dict[str, Any]:
    """One configuration's figures: per side p50/p90/min over all calls, and the ratio ours / reference.

    The ratio is taken per round, from that round's medians, so each ratio compares calls made minutes apart
    at most; `median` is the median of those ratios (< 1: ours is faster).
    """
    names = list(dict.fromkeys(name for by_side in rounds for name in by_side))
    summary: dict[str, Any] = {}
    for name in names:
        ms = np.asarray([x for by_side in rounds for x in by_side.get(name, [])])
        if ms.size:
            summary[name] = {
                "p50_ms": round(float(np.median(ms)), 3),
                "p90_ms": round(float(np.percentile(ms, 90)), 3),
                "min_ms": round(float(ms.min()), 3),
                "calls": int(ms.size),
            }
    ratios = {}
    for ref in REFERENCES:
        per_round = [
            float(np.median(by_side[SUBJECT]) / np.median(by_side[ref]))
            for by_side in rounds
            if by_side.get(SUBJECT) and by_side.get(ref)
        ]
        if per_round:
            median = round(float(np.median(per_round)), 3)
            ratios[ref] = {"per_round": [round(x, 3) for x in per_round], "median": median}
    summary["ours_over"] = ratios
    return summary


def roofline(ours: Side, summaries: dict[str, Any], configs: dict[str, dict[str, Any]], dtype: str) -> dict[str, Any]:
    """FLOPs per chunk and decode (XLA cost analysis, counted in `dtype`), this machine's float32 matmul peak,
    and the FLOP/s each side achieves at its median latency, as a fraction of that peak."""
    n = 2048 if "cpu" in ours.info["device"].lower() else 8192
    batches = sorted({request["batch"] for request in configs.values() if "batch" in request})
    measured = ask(ours, "peak", op="peak", n=n, calls=PEAK_CALLS)
    counted = ask(ours, "flops", op="flops", batches=batches, dtype=dtype)
    if measured is None or counted is None:
        return {"error": ours.failed.get("peak") or ours.failed.get("flops")}
    peak = measured["flops_per_s"]
    print(f"matmul peak (float32 {n}x{n}): {peak / 1e9:.1f} GFLOP/s", flush=True)
    result: dict[str, Any] = {"matmul_peak_gflops": round(peak / 1e9, 2), "peak_matmul": f"float32 {n}x{n}"}
    for label, summary in summaries.items():
        request = configs[label]
        flops = counted["chunk"][str(request["batch"])] if request["op"] == "chunk" else counted["decode"]
        figures: dict[str, Any] = {"gflop": round(flops / 1e9, 3)}
        for name, side in summary.items():
            if name != "ours_over":
                achieved = flops / (side["p50_ms"] / 1e3)
                figures[f"{name}_gflops"] = round(achieved / 1e9, 2)
                figures[f"{name}_fraction_of_peak"] = round(achieved / peak, 4)
        result[label] = figures
    return result


def describe_sides(sides: dict[str, Side], errors: dict[str, str], compile_s: dict, memory: dict) -> dict[str, Any]:
    described: dict[str, Any] = {name: {"error": error} for name, error in errors.items()}
    for name, side in sides.items():
        info = side.info
        described[name] = {
            "python": info["python"],
            "jax": info["jax"],
            "flax": info["flax"],
            "cold_start_s": round(side.cold_start_s, 2),
            "import_s": round(info["import_s"], 2),
            "first_chunk_s": round(info["first_chunk_s"], 2),
            "compile_s": compile_s.get(name, {}),
            **memory.get(name, {}),
        }
        if info["patches"]:
            described[name]["patches"] = info["patches"]
        if side.failed:
            described[name]["errors"] = side.failed
    return described


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openpi", help="a checkout of Physical-Intelligence/openpi (the one with src/openpi)")
    parser.add_argument("--venv", type=pathlib.Path, default=ROOT / ".venv-openpi", help="openpi's own venv")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per side, configuration and round")
    parser.add_argument("--batches", default="1,4", help="chunk batch sizes, comma-separated")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated; weights cast to each")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="dummy")
    parser.add_argument("--skip-same-jax", action="store_true", help="leave out openpi on this venv's jax")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    if not args.batches or min(args.batches) < 1 or args.rounds < 1 or args.calls < 1:
        parser.error("--batches, --rounds and --calls need positive values")
    if not set(args.dtypes) <= {"float32", "bfloat16"} or not args.dtypes:
        parser.error("--dtypes takes float32 and/or bfloat16")
    args.venv = args.venv.expanduser().resolve()
    return args


def run(args: argparse.Namespace, tmp: pathlib.Path) -> tuple[dict[str, Any], int]:
    plans = side_plans(args)
    shape = SHAPES[args.shape]
    print(f"writing random weights and inputs ({args.shape}: {shape}) to {tmp}", flush=True)
    files = {
        "params": str(write_params(tmp, shape)),
        "inputs": str(write_inputs(tmp / "inputs.npz", shape, max(args.batches))),
        "compile_cache": str(tmp / "xla"),
    }
    sides, errors = start_sides(plans, args, files, tmp)
    figures: dict[str, Any] = {"openpi": str(args.openpi_checkout), "shape": {"name": args.shape, **shape}}
    figures |= {"steps": STEPS, "new_tokens": NEW_TOKENS, "rounds": args.rounds, "calls": args.calls}
    try:
        if SUBJECT not in sides or "openpi" not in sides:
            figures["sides"] = describe_sides(sides, errors, {}, {})
            return figures, 1
        started = {name: side.cold_start_s for name, side in sides.items()}
        figures["cold_start_s"] = cold_start_figures(started, warm_cache_start(plans, args, files, tmp))
        print(f"cold start: {figures['cold_start_s']}", flush=True)
        configs = configurations(args.batches, args.dtypes)
        compile_s = warm_up(sides, configs)
        figures["parity"] = parity(sides, max(args.batches), args.dtypes)
        timings = run_rounds(sides, configs, args.rounds, args.calls)
        summaries = {label: summarize(rounds) for label, rounds in timings.items()}
        memory = {name: ask(side, "memory", op="memory") or {} for name, side in sides.items()}
        figures["sides"] = describe_sides(sides, errors, compile_s, memory)
        figures |= {"chunk": {k: v for k, v in summaries.items() if k.startswith("chunk")}}
        figures |= {"decode": {k: v for k, v in summaries.items() if k.startswith("decode")}}
        figures["roofline"] = roofline(sides[SUBJECT], summaries, configs, args.dtypes[0])
        figures["device"] = sides[SUBJECT].info["device"]
    finally:
        for side in sides.values():
            side.close()
    figures |= {"cpu_cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    return figures, 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.openpi_checkout = openpi_checkout(args.openpi)
    if args.openpi_checkout is None:
        print(json.dumps(not_given(args.openpi)))
        return 0
    with tempfile.TemporaryDirectory(prefix="vs-openpi-") as tmp:
        figures, status = run(args, pathlib.Path(tmp))
    print(json.dumps(figures))
    return status


if __name__ == "__main__":
    sys.exit(main())
