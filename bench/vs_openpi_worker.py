"""One side of `bench/vs_openpi.py`: a pi0.5 implementation (ours or openpi's) kept warm in its own process.

The parent starts one worker per side with that side's python: ours with this project's venv, openpi's with
the venv that holds openpi's pinned jax/flax (or with ours, for "openpi on our jax"). So this module imports
only the standard library at module level; each side imports its own stack when it is built.

The worker loads the shared weights (an orbax params dir in openpi's layout) and the shared inputs (an npz of
uint8 images, prompt tokens, state and flow noise that the parent wrote), samples one chunk at the first
batch and dtype (so the parent's clock from process start to the ready line is the cold start), then answers
JSON lines on stdin, one JSON line on stdout each (`--compile-cache DIR` puts our side's compilations in JAX's
persistent cache there, as `robot-runtime serve` does):

    {"op": "chunk", "batch": 1, "dtype": "float32", "calls": 20}  → {"ok": true, "ms": [...], "compile_s": ...}
    {"op": "decode", "dtype": "float32", "calls": 20}             → {"ok": true, "ms": [...], "compile_s": ...}
    {"op": "actions", "batch": 4, "dtype": "float32"}             → {"ok": true, "actions": [[[...]]]}
    {"op": "tokens", "dtype": "float32"}                          → {"ok": true, "tokens": [[...]]}
    {"op": "flops", "batches": [1, 4], "dtype": "float32"}        → {"ok": true, "chunk": {"1": ...}, "decode": ...}
    {"op": "peak", "n": 2048, "calls": 5}                         → {"ok": true, "flops_per_s": ...}
    {"op": "memory"}                                              → {"ok": true, "vmhwm_mb": ..., "vmrss_mb": ...}
    {"op": "quit"}

The first call of a (kind, batch, dtype) compiles and is not timed (`compile_s`); `calls` 0 only compiles.
Everything a library prints goes to stderr: the protocol owns stdout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import json
import os
import pathlib
import sys
import time
import types
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
# What openpi's Pi0 builds whatever the variant: SigLIP So400m/14 and the PaliGemma vocabulary.
OPENPI_VISION = "So400m/14"
OPENPI_VOCAB = 257_152

Runner = Callable[[], Any]


def read_inputs(path: str) -> dict[str, Any]:
    """The parent's npz as numpy arrays (both numpy 1.x and 2.x read the plain arrays it holds)."""
    import numpy as np

    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def images_in_model_range(inputs: dict[str, Any], batch: int) -> dict[str, Any]:
    """uint8 images → float32 in [-1, 1], the conversion both implementations apply (x / 255 * 2 - 1)."""
    import numpy as np

    return {k: inputs[f"image_{k}"][:batch].astype(np.float32) / 255.0 * 2.0 - 1.0 for k in IMAGE_KEYS}


def import_all(modules: tuple[str, ...]) -> None:
    """Imports a side's whole model stack up front, so that both sides' `import_s` cover the same ground."""
    for module in modules:
        importlib.import_module(module)


def our_model_config(shape: dict[str, Any], dtype: str):
    """This project's `ModelConfig` for the benchmark's shape (needs this project on sys.path)."""
    from policy.config import pi05_config

    return pi05_config(
        shape["gemma"],
        shape["gemma"],
        shape["vision"],
        vocab_size=shape["vocab"],
        max_token_len=shape["max_token_len"],
        action_horizon=shape["action_horizon"],
        action_dim=shape["action_dim"],
        dtype=dtype,
    )


class OursSide:
    """This project: `FlowSampler` for chunks, `policy.decoding.generate` (the planner's KV-cached path) for text."""

    def __init__(self, shape: dict[str, Any], params: str, inputs: dict[str, Any], steps: int, new_tokens: int):
        sys.path.insert(0, str(ROOT))
        import jax

        import_all(("actor.sampler", "policy.checkpoint", "policy.decoding"))
        self.jax = jax
        self.shape, self.params, self.inputs = shape, params, inputs
        self.steps, self.new_tokens = steps, new_tokens
        self._models: dict[str, tuple[Any, Any]] = {}

    @property
    def versions(self) -> dict[str, str]:
        import flax

        return {"jax": self.jax.__version__, "flax": flax.__version__}

    def model(self, dtype: str):
        """(config, model) with the weights cast to dtype, as openpi's policy restores them."""
        if dtype not in self._models:
            from policy.checkpoint import load_model

            cfg = our_model_config(self.shape, dtype)
            self._models[dtype] = cfg, load_model(cfg, self.params, dtype)
        return self._models[dtype]

    def observation(self, batch: int):
        import jax.numpy as jnp

        from policy.observation import ModelInput

        images = {k: jnp.asarray(v) for k, v in images_in_model_range(self.inputs, batch).items()}
        masks = {k: jnp.ones((batch,), jnp.bool_) for k in IMAGE_KEYS}
        return ModelInput(
            images,
            masks,
            jnp.asarray(self.inputs["tokens"][:batch]),
            jnp.asarray(self.inputs["token_mask"][:batch]),
            jnp.asarray(self.inputs["state"][:batch]),
        )

    def chunk(self, batch: int, dtype: str) -> Runner:
        from actor.sampler import FlowSampler

        cfg, model = self.model(dtype)
        sampler = FlowSampler(model, cfg, num_steps=self.steps, buckets=(batch,))
        obs, noise = self.observation(batch), self.inputs["noise"][:batch]
        return lambda: sampler.sample(obs, noise=noise)

    def decode(self, dtype: str) -> Runner:
        import numpy as np
        from flax import nnx

        from policy import decoding

        _, model = self.model(dtype)
        graphdef, state = nnx.split(model)
        new_tokens = self.new_tokens

        @self.jax.jit
        def generate(state, obs):
            return decoding.generate(nnx.merge(graphdef, state), obs, new_tokens)[0]

        obs = self.observation(1)
        return lambda: np.asarray(generate(state, obs))

    def flops(self, batches: list[int], dtype: str) -> dict[str, Any]:
        """XLA's FLOP count of one chunk per batch and of one decode.

        Cost analysis counts a while loop's body once, whatever its trip count, so the loops are counted here
        by hand: a chunk is the prefix pass + `steps` action-expert passes, a decode is the prefill +
        `new_tokens - 1` single-token steps.
        """
        return {
            "chunk": {str(batch): self._chunk_flops(batch, dtype) for batch in batches},
            "decode": self._decode_flops(dtype),
        }

    def _chunk_flops(self, batch: int, dtype: str) -> float:
        import dataclasses

        import jax.numpy as jnp
        from flax import nnx

        _, model = self.model(dtype)
        graphdef, state = nnx.split(model)
        obs = self.observation(batch)
        prefix = self.jax.jit(lambda s, o: nnx.merge(graphdef, s).fill_prefix(o)[1:])
        cache, prefix_mask = self.jax.eval_shape(prefix, state, obs)
        step = self.jax.jit(lambda s, o, c, m, x, t: nnx.merge(graphdef, s).velocity_from_cache(o, c, m, x, t))
        suffix_obs = dataclasses.replace(obs, images={}, image_masks={})
        noise = self.inputs["noise"][:batch]
        t = jnp.ones((batch,), jnp.float32)
        one_step = xla_flops(step, state, suffix_obs, cache, prefix_mask, noise, t)
        return xla_flops(prefix, state, obs) + self.steps * one_step

    def _decode_flops(self, dtype: str) -> float:
        import jax.numpy as jnp
        from flax import nnx

        from policy import decoding

        _, model = self.model(dtype)
        graphdef, state = nnx.split(model)
        obs, new_tokens = self.observation(1), self.new_tokens

        def prefill(s, o):
            start = decoding.prefill(nnx.merge(graphdef, s), o, new_tokens)
            return start.cache, start.key_mask

        prefill_jit = self.jax.jit(prefill)
        cache, key_mask = self.jax.eval_shape(prefill_jit, state, obs)
        step = self.jax.jit(lambda s, tok, pos, c, i, m: nnx.merge(graphdef, s).decode_step(tok, pos, c, i, m))
        one = jnp.zeros((1,), jnp.int32)
        one_step = xla_flops(step, state, one, one, cache, jnp.int32(0), key_mask)
        return xla_flops(prefill_jit, state, obs) + (new_tokens - 1) * one_step

    def peak(self, n: int, calls: int) -> float:
        """FLOP/s of the fastest of `calls` float32 n×n matmuls: the machine's practical matmul peak."""
        jnp = self.jax.numpy
        a = self.jax.random.normal(self.jax.random.key(0), (n, n), jnp.float32)
        matmul = self.jax.jit(lambda x: x @ x)
        matmul(a).block_until_ready()
        best = float("inf")
        for _ in range(calls):
            start = time.perf_counter()
            matmul(a).block_until_ready()
            best = min(best, time.perf_counter() - start)
        return 2.0 * n**3 / best


def xla_flops(jitted, *args) -> float:
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0]
    return float(cost.get("flops", 0.0))


def install_openpi_stubs() -> None:
    """Empty modules for what openpi's model code imports at module level but its JAX sampling path never uses.

    `openpi.models.model` and `openpi.shared.{array_typing,image_tools}` import torch, safetensors, augmax and
    `openpi.models_pytorch` (for the PyTorch port and training augmentations); installing torch for that
    would cost gigabytes. `torch.Tensor` must be a class: array_typing builds `jax.Array | torch.Tensor`.
    """

    def stub(name: str, **attrs: Any) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    class TorchTensor:
        pass

    functional = stub("torch.nn.functional")
    stub("torch", Tensor=TorchTensor, uint8=object(), float32=object(), nn=stub("torch.nn", functional=functional))
    stub("safetensors", torch=stub("safetensors.torch"))
    stub("augmax")
    stub("openpi.models_pytorch", pi0_pytorch=stub("openpi.models_pytorch.pi0_pytorch"))


class OpenpiSide:
    """openpi's own code from the user's checkout: `Pi0.sample_actions` jitted as openpi's policy does it.

    For text there is no pi0.5 decoder in openpi's JAX code, so decoding is its prefix pass followed by
    single-token steps through its own Gemma module and its own KV cache (which grows by concatenation, so
    the steps are unrolled in one jitted function), greedy over the tied embedding (`Embedder.decode`).
    """

    def __init__(self, shape: dict[str, Any], params: str, inputs: dict[str, Any], steps: int, new_tokens: int):
        install_openpi_stubs()
        import jax
        from openpi.models import gemma, siglip

        import_all(("openpi.models.pi0", "openpi.models.pi0_config", "openpi.shared.nnx_utils"))
        self.jax = jax
        self.shape, self.params, self.inputs = shape, params, inputs
        self.steps, self.new_tokens = steps, new_tokens
        self._models: dict[str, Any] = {}
        self.patches = openpi_shape_patches(shape, gemma, siglip)

    @property
    def versions(self) -> dict[str, str]:
        import flax

        return {"jax": self.jax.__version__, "flax": flax.__version__}

    def model(self, dtype: str):
        if dtype not in self._models:
            from openpi.models import pi0_config

            config = pi0_config.Pi0Config(
                pi05=True,
                paligemma_variant=self.shape["gemma"],
                action_expert_variant=self.shape["gemma"],
                action_dim=self.shape["action_dim"],
                action_horizon=self.shape["action_horizon"],
                max_token_len=self.shape["max_token_len"],
                dtype=dtype,
            )
            self._models[dtype] = config.load(self.restore(dtype))
        return self._models[dtype]

    def restore(self, dtype: str) -> dict[str, Any]:
        """The weights through openpi's `restore_params`, or, where that fails (it indexes orbax's metadata as
        orbax 0.11 returns it, and newer orbax does not), through a plain orbax restore; the fallback is
        recorded in `patches`. Loading is outside every timed call either way."""
        import jax.numpy as jnp
        from openpi.models import model as _model

        try:
            return _model.restore_params(self.params, dtype=jnp.dtype(dtype))
        except Exception as err:
            note = f"weights loaded by plain orbax: openpi's restore_params failed ({type(err).__name__}: {err})"
            if note not in self.patches:
                self.patches.append(note)
        return self.jax.tree.map(jnp.asarray, plain_orbax_restore(self.params, dtype))

    def observation(self, batch: int):
        import jax.numpy as jnp
        from openpi.models import model as _model

        images = {k: jnp.asarray(v) for k, v in images_in_model_range(self.inputs, batch).items()}
        return _model.Observation(
            images=images,
            image_masks={k: jnp.ones((batch,), jnp.bool_) for k in IMAGE_KEYS},
            state=jnp.asarray(self.inputs["state"][:batch]),
            tokenized_prompt=jnp.asarray(self.inputs["tokens"][:batch]),
            tokenized_prompt_mask=jnp.asarray(self.inputs["token_mask"][:batch]),
        )

    def chunk(self, batch: int, dtype: str) -> Runner:
        import numpy as np
        from openpi.shared import nnx_utils

        model = self.model(dtype)
        sample_actions = nnx_utils.module_jit(model.sample_actions)
        obs, rng = self.observation(batch), self.jax.random.key(0)
        noise = self.jax.numpy.asarray(self.inputs["noise"][:batch])
        steps = self.steps
        return lambda: np.asarray(sample_actions(rng, obs, num_steps=steps, noise=noise))

    def decode(self, dtype: str) -> Runner:
        import numpy as np
        from flax import nnx

        graphdef, state = nnx.split(self.model(dtype))
        new_tokens = self.new_tokens

        @self.jax.jit
        def generate(state, obs):
            return openpi_greedy_decode(nnx.merge(graphdef, state), obs, new_tokens)

        obs = self.observation(1)
        return lambda: np.asarray(generate(state, obs))


def plain_orbax_restore(path: str, dtype: str) -> dict[str, Any]:
    """The `params` item of an orbax checkpoint as numpy arrays cast to dtype, with any orbax version."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    with ocp.PyTreeCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(path)
        item = {"params": getattr(metadata, "item_metadata", metadata)["params"]}
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray, dtype=dtype), item)
        return checkpointer.restore(path, ocp.args.PyTreeRestore(item=item, restore_args=restore_args))["params"]


def openpi_shape_patches(shape: dict[str, Any], gemma, siglip) -> list[str]:
    """Points openpi's Pi0 at the benchmark's vision variant and vocabulary when they differ from its built-ins.

    Pi0 hard-codes SigLIP So400m/14 and reads the vocabulary size from `gemma.PALIGEMMA_VOCAB_SIZE`; the small
    shape of this project's figures and openpi fixture (SigLIP mu/14, 1024 tokens) sets both module attributes
    here, which changes sizes only: every line of openpi's code runs as written.
    """
    patches = []
    if shape["vision"] != OPENPI_VISION:
        original = siglip.Module
        vision = shape["vision"]

        def module(num_classes=None, *, variant=None, **kw):
            return original(num_classes, variant=vision, **kw)

        siglip.Module = module
        patches.append(f"openpi.models.siglip.Module variant={vision}")
    if shape["vocab"] != OPENPI_VOCAB:
        gemma.PALIGEMMA_VOCAB_SIZE = shape["vocab"]
        patches.append(f"openpi.models.gemma.PALIGEMMA_VOCAB_SIZE={shape['vocab']}")
    return patches


def openpi_greedy_decode(model, obs, new_tokens: int):
    """Greedy tokens [B, new_tokens] from openpi's modules: the prefix pass, then new_tokens - 1 cached steps."""
    import jax.numpy as jnp
    from openpi.models import model as _model
    from openpi.models import pi0

    llm = model.PaliGemma.llm

    def logits(hidden):
        return llm(hidden, method=lambda module, x: module.embedder.decode(x)).astype(jnp.float32)

    obs = _model.preprocess_observation(None, obs, train=False)
    tokens, prefix_mask, prefix_ar = model.embed_prefix(obs)
    positions = jnp.cumsum(prefix_mask, axis=1) - 1
    (hidden, _), kv_cache = llm([tokens, None], mask=pi0.make_attn_mask(prefix_mask, prefix_ar), positions=positions)
    last = jnp.max(jnp.where(prefix_mask, jnp.arange(prefix_mask.shape[1]), -1), axis=1)
    token = jnp.argmax(logits(hidden[jnp.arange(hidden.shape[0]), last]), axis=-1)
    out, key_mask, position = [token], prefix_mask, jnp.sum(prefix_mask, axis=1)
    for _ in range(new_tokens - 1):
        key_mask = jnp.concatenate([key_mask, jnp.ones_like(key_mask[:, :1])], axis=1)
        embedded = llm(token[:, None], method="embed")
        (hidden, _), kv_cache = llm(
            [embedded, None], mask=key_mask[:, None, :], positions=position[:, None], kv_cache=kv_cache
        )
        token = jnp.argmax(logits(hidden[:, 0]), axis=-1)
        out.append(token)
        position = position + 1
    return jnp.stack(out, axis=1).astype(jnp.int32)


def memory_mb() -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) resident memory of this process, from /proc/self/status."""
    fields = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[f"{key.lower()}_mb"] = round(int(value.split()[0]) / 1024, 1)
    return fields


class Worker:
    """Keeps one compiled runner per (kind, batch, dtype) and answers the parent's requests."""

    def __init__(self, side: OursSide | OpenpiSide):
        self.side = side
        self.runners: dict[tuple, Runner] = {}

    def runner(self, key: tuple) -> tuple[Runner, float | None]:
        """The runner for key, built, compiled and run once on first use (that run's seconds returned)."""
        if key in self.runners:
            return self.runners[key], None
        start = time.perf_counter()
        kind, *rest = key
        run = self.side.chunk(*rest) if kind == "chunk" else self.side.decode(*rest)
        run()
        self.runners[key] = run
        return run, time.perf_counter() - start

    def timed(self, key: tuple, calls: int) -> dict[str, Any]:
        run, compile_s = self.runner(key)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        return {"ms": times, "compile_s": compile_s}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "chunk":
            return self.timed(("chunk", request["batch"], request["dtype"]), request["calls"])
        if op == "decode":
            return self.timed(("decode", request["dtype"]), request["calls"])
        if op == "actions":
            return {"actions": self.runner(("chunk", request["batch"], request["dtype"]))[0]().tolist()}
        if op == "tokens":
            return {"tokens": self.runner(("decode", request["dtype"]))[0]().tolist()}
        if op in ("flops", "peak"):
            return self.roofline(request)
        if op == "memory":
            return memory_mb()
        raise ValueError(f"unknown op {op!r}")

    def roofline(self, request: dict[str, Any]) -> dict[str, Any]:
        side = self.side
        if not isinstance(side, OursSide):
            raise ValueError(f"{request['op']} is measured on our side only")
        if request["op"] == "flops":
            return side.flops(request["batches"], request["dtype"])
        return {"flops_per_s": side.peak(request["n"], request["calls"])}

    def serve(self, replies) -> None:
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "quit":
                return
            try:
                reply = {"ok": True, **self.handle(request)}
            except Exception as err:  # reported to the parent, which records it for this side and goes on
                reply = {"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0]}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()


def protocol_stdout():
    """A private copy of stdout for the replies; fd 1 then points at stderr, so stray prints cannot corrupt them."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("ours", "openpi"), required=True)
    parser.add_argument("--openpi-src", help="openpi's src/ directory (openpi side)")
    parser.add_argument("--params", required=True, help="orbax params dir in openpi's layout")
    parser.add_argument("--inputs", required=True, help="npz written by the parent")
    parser.add_argument("--shape", required=True, help="the model shape, JSON")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--first-batch", type=int, default=1)
    parser.add_argument("--first-dtype", default="float32")
    parser.add_argument("--compile-cache", metavar="DIR|off", help="ours: JAX's persistent compilation cache")
    args = parser.parse_args(argv)
    replies = protocol_stdout()
    try:
        start = time.perf_counter()
        if args.openpi_src:
            sys.path.insert(0, args.openpi_src)
        side_cls = OursSide if args.side == "ours" else OpenpiSide
        side = side_cls(json.loads(args.shape), args.params, read_inputs(args.inputs), args.steps, args.new_tokens)
        if args.compile_cache:
            from policy.compile_cache import enable_compile_cache

            enable_compile_cache(args.compile_cache)
        worker = Worker(side)
        imported = time.perf_counter()
        worker.runner(("chunk", args.first_batch, args.first_dtype))
        ready = {
            "ok": True,
            "ready": True,
            "import_s": imported - start,
            "first_chunk_s": time.perf_counter() - imported,
            "python": sys.version.split()[0],
            "device": side.jax.devices()[0].device_kind,
            "patches": getattr(side, "patches", []),
            **side.versions,
        }
    except Exception as err:
        replies.write(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0]}) + "\n")
        raise
    replies.write(json.dumps(ready) + "\n")
    worker.serve(replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
