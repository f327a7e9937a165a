"""Subtask decoding throughput: the KV-cached decoder vs re-running the whole sequence for every new token.

Both decode the same planner prompt (one row, the base camera only) on the same random-weight network (every
weight perturbed with std 1 so the tokens vary), greedily over the tokenizer's pieces except EOS (the ids the
planner itself may choose: the model's vocabulary is larger than the bench tokenizer's), so both always produce
exactly `--new-tokens` tokens. Each is one compiled call, compiled and run once before timing:
- kv:    `policy.decoding.generate`: the prefix once, then one token per step against a preallocated KV cache;
- naive: `planner.reference.full_recompute_generate`: for every token, `fill_prefix` (SigLIP included) on the
         prompt extended with the tokens generated so far (`token_ar_mask` True on them), logits read at the
         last valid token.
`decoder_*` fields time the planner engine itself (`SubtaskDecoder.decode`, the same mask as a vocab setting):
wall time per call including preprocessing, its own prefill/decode split, and its compilations
(`decoder_compile_ms` per stage, `SubtaskDecoder.compiles`).
`batched_*` fields compare the engine decoding `--sessions` different observations (one per robot session) in
one call, one prefill for all (what the planner process does with the runtime's batched `Link`), against the
same observations one call each: `batching_speedup` is the ratio of sessions decoded per second.
`same_tokens` says whether all three agree: exactly in float32 (`--dtype float32`, the default); in bfloat16
they may part ways where two logits nearly tie, since the paths round differently (`first_difference` says
at which token). Figures are medians over `--reps` calls;
`speedup_of_fastest` compares the fastest calls, which other load on a shared machine disturbs least.

    .venv/bin/python bench/planner_decode.py --config tiny
    .venv/bin/python bench/planner_decode.py --config dummy [--dtype bfloat16]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from planner.decoder import DecodeRequest, SubtaskDecoder
from planner.reference import full_recompute_generate
from planner.vocab import all_mask
from policy import decoding
from policy.batching import Row, build_input
from policy.checkpoint import init_params, model_from_params
from policy.config import get_model_config
from policy.observation import ModelInput
from policy.prompts import tokenize_planner
from policy.tokenizer import TextTokenizer, train_tokenizer

TASK = "put the red cube in the blue bowl"
TOKENIZER_VOCAB = 512


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    config: str
    new_tokens: int
    reps: int
    seed: int
    dtype: str = "float32"
    sessions: int = 4


def masked_greedy(allowed: np.ndarray) -> decoding.TokenChooser:
    """Greedy over the allowed ids only: the same choice the planner engine makes under that vocab mask."""
    allowed_ids = jnp.asarray(allowed)

    def choose(logits: jax.Array, rng: jax.Array) -> jax.Array:
        del rng
        return jnp.argmax(jnp.where(allowed_ids, logits, -jnp.inf), axis=-1).astype(jnp.int32)

    return choose


def first_difference(*token_rows: np.ndarray) -> int | None:
    """The first position at which the token rows disagree; None when they are equal."""
    rows = np.stack([np.ravel(r) for r in token_rows])
    differs = np.flatnonzero(np.any(rows != rows[0], axis=0))
    return int(differs[0]) if differs.size else None


def planner_request(cfg, seed: int) -> DecodeRequest:
    size = cfg.vision.image_size
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return DecodeRequest({cfg.image_keys[0]: image}, TASK)


def model_input(cfg, tokenizer: TextTokenizer, request: DecodeRequest) -> ModelInput:
    prompt = tokenize_planner(tokenizer, request.task, max_len=cfg.max_token_len)
    return build_input(cfg, [Row(dict(request.cameras), prompt)])


def wall_times(contenders: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Seconds per call of each contender; rounds interleave them so load drift on a shared machine hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return times


def run(bench: BenchConfig) -> dict[str, object]:
    cfg = get_model_config(bench.config).replace(dtype=bench.dtype)
    model = model_from_params(cfg, init_params(cfg, seed=bench.seed, perturb_std=1.0))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = TextTokenizer(train_tokenizer(Path(tmp) / "bench.model", vocab_size=TOKENIZER_VOCAB))
    request = planner_request(cfg, bench.seed)
    obs = model_input(cfg, tokenizer, request)
    never_eos = all_mask(tokenizer, cfg.vocab_size)
    never_eos[tokenizer.eos_id] = False
    choose = masked_greedy(never_eos)
    buckets = tuple(sorted({1, bench.sessions}))
    decoder = SubtaskDecoder(model, tokenizer, cfg, vocab=never_eos, max_new_tokens=bench.new_tokens, buckets=buckets)
    sessions = [planner_request(cfg, bench.seed + i) for i in range(bench.sessions)]
    decoder.decode(sessions)
    graphdef, state = nnx.split(model)

    @jax.jit
    def kv(state: nnx.State, obs: ModelInput) -> jax.Array:
        return decoding.generate(nnx.merge(graphdef, state), obs, bench.new_tokens, choose)[0]

    @jax.jit
    def naive(state: nnx.State, obs: ModelInput) -> jax.Array:
        return full_recompute_generate(nnx.merge(graphdef, state), obs, bench.new_tokens, choose)

    kv_tokens = np.asarray(kv(state, obs))
    naive_tokens = np.asarray(naive(state, obs))
    decoder_tokens = np.asarray([decoder.decode([request])[0].token_ids])
    times = wall_times(
        {
            "kv": lambda: kv(state, obs),
            "naive": lambda: naive(state, obs),
            "decoder": lambda: decoder.decode([request]),
            "sequential": lambda: [decoder.decode([one]) for one in sessions],
            "batched": lambda: decoder.decode(sessions),
        },
        bench.reps,
    )
    kv_s, naive_s, decoder_s = (statistics.median(times[name]) for name in ("kv", "naive", "decoder"))
    split = decoder.decode([request])[0]
    print(f"kv    {kv_s * 1e3:9.2f} ms for {bench.new_tokens} tokens: {kv_tokens[0].tolist()}")
    print(f"naive {naive_s * 1e3:9.2f} ms for {bench.new_tokens} tokens: {naive_tokens[0].tolist()}")
    return {
        "kv_tokens_per_s": round(bench.new_tokens / kv_s, 1),
        "naive_tokens_per_s": round(bench.new_tokens / naive_s, 1),
        "speedup": round(naive_s / kv_s, 2),
        "speedup_of_fastest": round(min(times["naive"]) / min(times["kv"]), 2),
        "config": bench.config,
        "new_tokens": bench.new_tokens,
        "reps": bench.reps,
        "kv_ms": round(kv_s * 1e3, 3),
        "naive_ms": round(naive_s * 1e3, 3),
        "decoder_tokens_per_s": round(bench.new_tokens / decoder_s, 1),
        "decoder_prefill_ms": round(split.prefill_ms, 3),
        "decoder_decode_ms": round(split.decode_ms, 3),
        "sessions": bench.sessions,
        "sequential_sessions_per_s": round(bench.sessions / statistics.median(times["sequential"]), 2),
        "batched_sessions_per_s": round(bench.sessions / statistics.median(times["batched"]), 2),
        "batching_speedup": round(statistics.median(times["sequential"]) / statistics.median(times["batched"]), 2),
        "decoder_compile_ms": {event.stage: round(event.compile_ms, 1) for event in decoder.compiles},
        "same_tokens": first_difference(kv_tokens, naive_tokens, decoder_tokens) is None,
        "first_difference": first_difference(kv_tokens, naive_tokens, decoder_tokens),
        "dtype": cfg.dtype,
        "prefix_tokens": int(cfg.vision.num_tokens * len(cfg.image_keys) + cfg.max_token_len),
        "device": jax.devices()[0].device_kind,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["tiny", "dummy"], default="tiny")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--sessions", type=int, default=4, help="observations decoded in one batched call")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error(f"--sessions must be >= 1, got {args.sessions}")
    result = run(BenchConfig(args.config, args.new_tokens, args.reps, args.seed, args.dtype, args.sessions))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
