"""Actor chunk latency: the KV-cached sampler vs recomputing the prefix at every Euler step.

For each config (random perturbed weights, one session, every camera present, a 20-token prompt):
- warm latency of `FlowSampler.sample` (prefix once + N action-expert steps), median and p99 over --calls,
  plus its prefill / denoise split and the latency with RTC guidance on;
- the naive baseline: N joint prefix+suffix passes (`Pi05.velocity`) from the same noise, over --naive-calls
  (it is ~N times slower, so fewer calls keep the run short); the two chunks must agree.
- the sampler's compilations (`FlowSampler.compiles`): compile_ms per stage (prefix, denoise, denoise_rtc).
The last line is one JSON object: {config: {p50_ms, p99_ms, ..., naive_p50_ms, cache_speedup}, "device": ...}.

    .venv/bin/python bench/actor_sample.py                       # tiny and dummy, CPU-friendly
    .venv/bin/python bench/actor_sample.py --configs pi05 --dtype bfloat16 --cameras 2   # full size, on a GPU
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from actor.rtc import NormalizedRtcPrefix  # noqa: E402
from actor.sampler import FlowSampler  # noqa: E402
from policy.checkpoint import init_params, model_from_params  # noqa: E402
from policy.config import ModelConfig, get_model_config  # noqa: E402
from policy.observation import ModelInput, uint8_to_model  # noqa: E402
from policy.pi05 import Pi05, euler_integrate  # noqa: E402

PROMPT_TOKENS = 20
WARMUP_CALLS = 1


def random_input(cfg: ModelConfig, cameras: int, seed: int = 0) -> ModelInput:
    """One session: random images (the first `cameras` present, the rest masked), a PROMPT_TOKENS prompt."""
    rng = np.random.default_rng(seed)
    size = cfg.vision.image_size
    images = {k: uint8_to_model(rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)) for k in cfg.image_keys}
    masks = {k: jnp.asarray([i < cameras]) for i, k in enumerate(cfg.image_keys)}
    tokens = np.zeros((1, cfg.max_token_len), np.int32)
    tokens[0, :PROMPT_TOKENS] = rng.integers(4, cfg.vocab_size, PROMPT_TOKENS)
    tokens[0, 0] = 2
    token_mask = tokens != 0
    state = jnp.asarray(rng.normal(size=(1, cfg.action_dim)), jnp.float32)
    return ModelInput(images, masks, jnp.asarray(tokens), jnp.asarray(token_mask), state)


def naive_sampler(model: Pi05, num_steps: int) -> Callable[[ModelInput, np.ndarray], np.ndarray]:
    """Euler integration where every step runs the joint prefix+suffix pass (no cache)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def integrate(state, obs: ModelInput, noise: jax.Array) -> jax.Array:
        net = nnx.merge(graphdef, state)

        def velocity(x_t: jax.Array, t: jax.Array) -> jax.Array:
            return net.velocity(obs, x_t, jnp.broadcast_to(t, (x_t.shape[0],)))

        return euler_integrate(velocity, noise, num_steps)

    return lambda obs, noise: np.asarray(integrate(state, obs, noise), np.float32)


def timed_ms(fn: Callable[[], object], calls: int) -> np.ndarray:
    for _ in range(WARMUP_CALLS):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def bench_config(name: str, args: argparse.Namespace) -> dict[str, float | int | str]:
    fields = {} if args.dtype is None else {"dtype": args.dtype}
    cfg = get_model_config(name, **fields)
    start = time.perf_counter()
    model = model_from_params(cfg, init_params(cfg, seed=0, perturb_std=0.05), cfg.dtype)
    print(f"[{name}] random weights ready in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    obs = random_input(cfg, min(args.cameras, len(cfg.image_keys)))
    sampler = FlowSampler(model, cfg, num_steps=args.steps, buckets=(1,))
    noise = np.random.default_rng(1).standard_normal((1, cfg.action_horizon, cfg.action_dim), np.float32)

    splits: list[tuple[float, float]] = []
    chunks: list[np.ndarray] = []

    def cached() -> None:
        sampled = sampler.run(obs, noise=noise)
        splits.append((sampled.timings.prefill_ms, sampled.timings.denoise_ms))
        chunks.append(sampled.actions)

    cached_ms = timed_ms(cached, args.calls)
    prefill_ms, denoise_ms = np.asarray(splits[WARMUP_CALLS:]).T
    overlap = cfg.action_horizon // 2
    previous = sampler.sample(obs, seed=2)[0, :overlap]
    rtc = [NormalizedRtcPrefix(previous, inference_delay=min(3, overlap))]
    rtc_ms = timed_ms(lambda: sampler.sample(obs, noise=noise, rtc=rtc), args.calls)

    naive = naive_sampler(model, args.steps)
    naive_chunks: list[np.ndarray] = []
    naive_ms = timed_ms(lambda: naive_chunks.append(naive(obs, noise)), args.naive_calls)
    disagreement = float(np.max(np.abs(naive_chunks[-1] - chunks[-1])))
    result = {
        "dtype": cfg.dtype,
        "p50_ms": round(float(np.median(cached_ms)), 3),
        "p99_ms": round(float(np.percentile(cached_ms, 99)), 3),
        "prefill_p50_ms": round(float(np.median(prefill_ms)), 3),
        "denoise_p50_ms": round(float(np.median(denoise_ms)), 3),
        "rtc_p50_ms": round(float(np.median(rtc_ms)), 3),
        "naive_p50_ms": round(float(np.median(naive_ms)), 3),
        "cache_speedup": round(float(np.median(naive_ms) / np.median(cached_ms)), 2),
        "calls": args.calls,
        "naive_calls": args.naive_calls,
        "max_abs_diff_vs_naive": float(f"{disagreement:.2e}"),
        "compile_ms": {
            event.stage + ("_rtc" if event.guided else ""): round(event.compile_ms, 1) for event in sampler.compiles
        },
    }
    print(f"[{name}] {result}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,dummy", help="comma-separated model config names")
    parser.add_argument("--calls", type=int, default=30, help="timed calls of the cached sampler (>= 30)")
    parser.add_argument("--naive-calls", type=int, default=10, help="timed calls of the naive baseline")
    parser.add_argument("--steps", type=int, default=10, help="Euler steps")
    parser.add_argument("--cameras", type=int, default=3, help="cameras present (the rest are masked)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="override the config's dtype")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {name: bench_config(name, args) for name in args.configs.split(",") if name}
    figures["device"] = jax.devices()[0].device_kind
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
