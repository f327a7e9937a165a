"""Compiled stages on the CPU: a network with 16-bit weights runs without a float32 copy of them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import policy.compiled
from actor.sampler import FlowSampler
from policy.batching import Row
from policy.checkpoint import init_params, model_from_params
from policy.config import get_model_config
from policy.gemma import GemmaConfig
from policy.prompts import TokenizedPrompt


def _wide_model(dtype: str):
    """A small network whose language-model layers outweigh its activations."""
    llm = GemmaConfig(width=256, depth=2, mlp_dim=4096, num_heads=4, num_kv_heads=1, head_dim=16)
    cfg = get_model_config("tiny", dtype=dtype).replace(paligemma=llm)
    return cfg, model_from_params(cfg, init_params(cfg, seed=0), dtype)


def _sample(cfg, model) -> tuple[np.ndarray, int, int]:
    """(actions, the largest executable's scratch bytes, the bytes of the language model's layer weights)."""
    sampler = FlowSampler(model, cfg, num_steps=2, buckets=(1,))
    size, tokens = cfg.vision.image_size, cfg.max_token_len
    images = {key: np.zeros((size, size, 3), np.uint8) for key in cfg.image_keys}
    prompt = TokenizedPrompt(np.ones(tokens, np.int32), np.ones(tokens, bool))
    observation = [Row(images, prompt, np.zeros(cfg.action_dim, np.float32))]
    actions = sampler.sample(observation, seed=0)
    layers = nnx.state(model.PaliGemma.llm.layers)
    return actions, sampler.stages.scratch_bytes, sum(x.nbytes for x in jax.tree.leaves(layers))


def test_bfloat16_weights_are_converted_layer_by_layer_not_copied_whole(monkeypatch):
    cfg, model = _wide_model("bfloat16")
    assert policy.compiled.low_memory_options(nnx.state(model)) != {}
    actions, scratch, layers = _sample(cfg, model)
    _, float32_scratch, _ = _sample(*_wide_model("float32"))
    # as much as the same network with float32 weights, which need no conversion (measured: 0.3% more)
    assert scratch < float32_scratch + 0.1 * layers

    monkeypatch.setattr(policy.compiled, "low_memory_options", lambda state: {})
    hoisted_actions, hoisted_scratch, _ = _sample(cfg, model)
    assert hoisted_scratch - scratch > 1.5 * layers  # what XLA does without the option: the layers in float32
    np.testing.assert_allclose(actions, hoisted_actions, atol=2e-2)


def test_float32_weights_compile_with_default_options():
    cfg = get_model_config("tiny")
    assert policy.compiled.low_memory_options(nnx.state(model_from_params(cfg, init_params(cfg, seed=0)))) == {}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_any_16_bit_float_weight_asks_for_the_option(dtype):
    state = {"w": jnp.zeros((2, 2), dtype), "steps": jnp.zeros((), jnp.int16)}
    assert policy.compiled.low_memory_options(state) == {"xla_disable_hlo_passes": policy.compiled.HOISTING_PASS}
    assert policy.compiled.low_memory_options({"steps": jnp.zeros((), jnp.int16)}) == {}
