"""The pi0.5 network: openpi's parameter tree at full size, and the invariants its inference paths rely on."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from policy import decoding, masks
from policy.checkpoint import param_shapes
from policy.config import get_model_config
from policy.gemma import FeedForward, GemmaConfig, get_gemma_config
from policy.lora import Einsum, LoRAConfig

FULL_SIZE_SHAPES = {
    "PaliGemma/llm/embedder/input_embedding": (257152, 2048),
    "PaliGemma/llm/layers/attn/q_einsum/w": (18, 8, 2048, 256),
    "PaliGemma/llm/layers/attn/kv_einsum/w": (18, 2, 1, 2048, 256),
    "PaliGemma/llm/layers/attn/attn_vec_einsum_1/w": (18, 8, 256, 1024),
    "PaliGemma/llm/layers/mlp/gating_einsum": (18, 2, 2048, 16384),
    "PaliGemma/llm/layers/mlp_1/linear": (18, 4096, 1024),
    "PaliGemma/llm/layers/pre_attention_norm_1/Dense_0/kernel": (18, 1024, 3072),
    "PaliGemma/llm/layers/pre_attention_norm/scale": (18, 2048),
    "PaliGemma/llm/final_norm_1/Dense_0/kernel": (1024, 3072),
    "PaliGemma/llm/final_norm/scale": (2048,),
    "PaliGemma/img/embedding/kernel": (14, 14, 3, 1152),
    "PaliGemma/img/pos_embedding": (1, 256, 1152),
    "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel": (27, 1152, 16, 72),
    "PaliGemma/img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel": (27, 1152, 4304),
    "PaliGemma/img/Transformer/encoder_norm/scale": (1152,),
    "PaliGemma/img/head/kernel": (1152, 2048),
    "action_in_proj/kernel": (32, 1024),
    "time_mlp_in/kernel": (1024, 1024),
    "time_mlp_out/kernel": (1024, 1024),
    "action_out_proj/kernel": (1024, 32),
}


def test_full_size_pi05_has_openpi_keys_and_shapes():
    shapes = param_shapes(get_model_config("pi05"))
    for key, shape in FULL_SIZE_SHAPES.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith(("state_proj", "action_time_mlp")) for k in shapes)
    assert not any("lora" in k for k in shapes)
    assert sum(np.prod(s) for s in shapes.values()) == pytest.approx(3.3e9, rel=0.05)


def test_pi0_has_state_and_action_time_projections():
    shapes = param_shapes(get_model_config("pi0"))
    assert shapes["state_proj/kernel"] == (32, 1024)
    assert shapes["action_time_mlp_in/kernel"] == (2048, 1024)
    assert "PaliGemma/llm/layers/pre_attention_norm_1/scale" in shapes
    assert "time_mlp_in/kernel" not in shapes


def test_lora_variants_use_openpi_names_and_ranks():
    shapes = param_shapes(get_model_config("pi05_lora"))
    assert shapes["PaliGemma/llm/layers/attn/q_einsum/lora_a"] == (18, 8, 2048, 16)
    assert shapes["PaliGemma/llm/layers/attn/q_einsum/lora_b"] == (18, 8, 16, 256)
    assert shapes["PaliGemma/llm/layers/attn/kv_einsum/lora_a"] == (18, 2, 1, 2048, 16)
    assert shapes["PaliGemma/llm/layers/attn/attn_vec_einsum/lora_b"] == (18, 8, 16, 2048)
    assert shapes["PaliGemma/llm/layers/mlp/gating_einsum_lora_a"] == (18, 2, 2048, 16)
    assert shapes["PaliGemma/llm/layers/mlp/linear_lora_b"] == (18, 16, 2048)
    assert shapes["PaliGemma/llm/layers/attn/q_einsum_1/lora_a"] == (18, 8, 1024, 32)
    assert shapes["PaliGemma/llm/layers/mlp_1/gating_einsum_lora_b"] == (18, 2, 32, 4096)
    assert get_gemma_config("gemma_2b_lora").lora_attn == LoRAConfig(rank=16, alpha=16.0)
    assert get_gemma_config("gemma_300m_lora").lora_ffn == LoRAConfig(rank=32, alpha=32.0)


def test_arbitrary_gemma_sizes_and_unknown_variant():
    cfg = get_gemma_config("gemma_300m", depth=3, width=128)
    assert (cfg.depth, cfg.width, cfg.head_dim) == (3, 128, 256)
    with pytest.raises(ValueError, match="unknown Gemma variant 'gemma_7b'"):
        get_gemma_config("gemma_7b")


def test_attention_lora_is_scaled_and_mlp_lora_is_not():
    lora = LoRAConfig(rank=2, alpha=6.0)
    x = jax.random.normal(jax.random.key(1), (2, 3, 4))
    einsum = Einsum((5, 4, 6), 4, lora, rngs=nnx.Rngs(0))
    w, a, b = einsum.w[...], einsum.lora_a[...], einsum.lora_b[...]
    expected = jnp.einsum("BTD,NDH->BTNH", x, w) + 3.0 * jnp.einsum("BTD,NDL,NLH->BTNH", x, a, b)
    np.testing.assert_allclose(einsum("BTD,NDH->BTNH", x), expected, rtol=1e-5, atol=1e-6)

    cfg = GemmaConfig(width=4, depth=1, mlp_dim=8, num_heads=1, num_kv_heads=1, head_dim=4, lora_ffn=lora)
    ffn = FeedForward(cfg, rngs=nnx.Rngs(0))
    g, ga, gb = ffn.gating_einsum[...], ffn.gating_einsum_lora_a[...], ffn.gating_einsum_lora_b[...]
    lin, la, lb = ffn.linear[...], ffn.linear_lora_a[...], ffn.linear_lora_b[...]
    gate = jax.nn.gelu(x @ g[0] + x @ ga[0] @ gb[0])
    up = x @ g[1] + x @ ga[1] @ gb[1]
    hidden = gate * up
    np.testing.assert_allclose(ffn(x), hidden @ lin + hidden @ la @ lb, rtol=1e-5, atol=1e-6)


def test_attn_mask_semantics():
    input_mask = jnp.array([[True, True, True, True, False]])
    ar_mask = jnp.array([False, False, True, False, True])
    got = np.asarray(masks.make_attn_mask(input_mask, ar_mask))[0]
    expected = np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0],
        ],
        bool,
    )
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(masks.positions_from_mask(input_mask)[0], [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(
        masks.last_valid_index(jnp.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], bool)), [1, 2, -1]
    )


@nnx.jit
def _velocities(model, obs, x_t, t):
    _, cache, prefix_mask = model.fill_prefix(obs)
    return model.velocity(obs, x_t, t), model.velocity_from_cache(obs, cache, prefix_mask, x_t, t)


def test_cached_prefix_gives_the_joint_pass_velocity(tiny_model, tiny_config, make_input):
    obs = make_input(tiny_config, 2, [5, 17])
    x_t = jax.random.normal(jax.random.key(0), (2, tiny_config.action_horizon, tiny_config.action_dim))
    joint, cached = _velocities(tiny_model, obs, x_t, jnp.array([0.3, 0.9]))
    np.testing.assert_allclose(cached, joint, rtol=1e-4, atol=1e-5)


def test_one_euler_step_moves_noise_against_the_velocity(tiny_model, tiny_config, make_input):
    obs = make_input(tiny_config, 1, [9])
    noise = jax.random.normal(jax.random.key(3), (1, tiny_config.action_horizon, tiny_config.action_dim))
    x0 = nnx.jit(lambda m, o, n: m.sample_actions(o, n, num_steps=1))(tiny_model, obs, noise)
    v1 = nnx.jit(lambda m, o, n: m.velocity(o, n, jnp.ones(1)))(tiny_model, obs, noise)
    np.testing.assert_allclose(x0, noise - v1, rtol=1e-4, atol=1e-5)


@nnx.jit
def _sample_and_first_logits(model, obs, noise):
    return model.sample_actions(obs, noise), decoding.prefill(model, obs, 1).first_logits


def test_masked_camera_and_padding_do_not_leak(tiny_model, tiny_config, make_input):
    keys = tiny_config.image_keys
    image_masks = {keys[0]: np.ones(1, bool), keys[1]: np.ones(1, bool), keys[2]: np.zeros(1, bool)}
    obs = make_input(tiny_config, 1, [7], image_masks=image_masks)
    noise = jax.random.normal(jax.random.key(4), (1, tiny_config.action_horizon, tiny_config.action_dim))
    actions, logits = _sample_and_first_logits(tiny_model, obs, noise)

    changed_images = {**obs.images, keys[2]: -obs.images[keys[2]]}
    changed_tokens = obs.tokens.at[0, 7:].set(11)
    other = dataclasses.replace(obs, images=changed_images, tokens=changed_tokens)
    actions2, logits2 = _sample_and_first_logits(tiny_model, other, noise)
    np.testing.assert_allclose(actions2, actions, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-5)

    visible = dataclasses.replace(obs, images={**obs.images, keys[0]: -obs.images[keys[0]]})
    actions3, _ = _sample_and_first_logits(tiny_model, visible, noise)
    assert np.max(np.abs(np.asarray(actions3) - np.asarray(actions))) > 1e-3


@nnx.jit(static_argnums=(2,))
def _generate(model, obs, n):
    return decoding.generate(model, obs, n)[0]


@nnx.jit
def _full_logits(model, obs):
    hidden, _, _ = model.fill_prefix(obs)
    return model.logits(hidden)


@nnx.jit
def _prefill(model, obs, buffer):
    start = decoding.prefill(model, obs, buffer.shape[0])
    return start.first_logits, start.cache, start.key_mask, start.last_valid


@nnx.jit
def _decode_step(model, token, position, cache, slot, key_mask):
    return model.decode_step(token, position, cache, slot, key_mask)


def test_kv_cached_decode_steps_match_full_recomputation(tiny_model, tiny_config, make_input):
    n_prompt, forced = 6, np.array([17, 300, 5, 42], np.int32)
    obs = make_input(tiny_config, 1, [n_prompt], seed=5)
    first, cache, key_mask, last = _prefill(tiny_model, obs, jnp.zeros(len(forced)))
    prefix_len = key_mask.shape[1] - len(forced)
    step_logits = [np.asarray(first)[0]]
    for k, token in enumerate(forced[:-1]):
        key_mask = key_mask.at[:, prefix_len + k].set(True)
        logits, cache = _decode_step(tiny_model, jnp.array([token]), last + 1 + k, cache, prefix_len + k, key_mask)
        step_logits.append(np.asarray(logits)[0])

    tokens = np.asarray(obs.tokens).copy()
    tokens[0, n_prompt : n_prompt + len(forced)] = forced
    token_mask = np.zeros_like(tokens, bool)
    token_mask[0, : n_prompt + len(forced)] = True
    ar = np.zeros_like(tokens, bool)
    ar[0, n_prompt : n_prompt + len(forced)] = True
    full = dataclasses.replace(
        obs, tokens=jnp.asarray(tokens), token_mask=jnp.asarray(token_mask), token_ar_mask=jnp.asarray(ar)
    )
    logits = np.asarray(_full_logits(tiny_model, full))[0]
    at = len(tiny_config.image_keys) * tiny_config.vision.num_tokens + n_prompt - 1
    np.testing.assert_allclose(np.stack(step_logits), logits[at : at + len(forced)], rtol=1e-4, atol=1e-4)

    greedy = np.asarray(_generate(tiny_model, obs, 3))[0]
    assert greedy[0] == step_logits[0].argmax()


def test_batched_rows_decode_as_they_would_alone(tiny_model, tiny_config, make_input):
    both = make_input(tiny_config, 2, [4, 15], seed=6)
    together = np.asarray(_generate(tiny_model, both, 6))
    for row in range(2):
        alone = jax.tree.map(lambda x, r=row: x[r : r + 1], both)
        np.testing.assert_array_equal(np.asarray(_generate(tiny_model, alone, 6))[0], together[row])


def test_decoding_stops_rows_at_eos(tiny_model, tiny_config, make_input):
    obs = make_input(tiny_config, 1, [6], seed=5)
    greedy = np.asarray(_generate(tiny_model, obs, 5))[0]
    eos = int(greedy[2])

    @nnx.jit
    def run(model, obs):
        return decoding.generate(model, obs, 5, eos_id=eos, pad_id=0)

    tokens, steps = run(tiny_model, obs)
    first_eos = list(greedy).index(eos)
    np.testing.assert_array_equal(np.asarray(tokens)[0, : first_eos + 1], greedy[: first_eos + 1])
    assert np.all(np.asarray(tokens)[0, first_eos + 1 :] == 0)
    assert int(steps) == first_eos + 1


def test_compute_loss_is_flow_matching_and_trains_both_experts(tiny_model, tiny_config, make_input):
    obs = make_input(tiny_config, 2, [5, 9])
    actions = jax.random.normal(jax.random.key(7), (2, tiny_config.action_horizon, tiny_config.action_dim))
    rng = jax.random.key(8)

    @nnx.jit
    def loss_and_reference(model, obs, actions, rng):
        loss = model.compute_loss(rng, obs, actions)
        noise_rng, time_rng = jax.random.split(rng)
        noise = jax.random.normal(noise_rng, actions.shape)
        t = jax.random.beta(time_rng, 1.5, 1.0, (2,)) * 0.999 + 0.001
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        ref = jnp.mean((model.velocity(obs, x_t, t) - (noise - actions)) ** 2, axis=-1)
        return loss, ref, t

    loss, ref, t = loss_and_reference(tiny_model, obs, actions, rng)
    assert loss.shape == (2, tiny_config.action_horizon)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    assert np.all((np.asarray(t) > 0.001) & (np.asarray(t) <= 1.0))

    grads = nnx.grad(lambda m: jnp.mean(m.compute_loss(rng, obs, actions)))(tiny_model)
    llm = grads.PaliGemma.llm.layers.attn
    assert float(jnp.abs(llm.q_einsum_1.w[...]).sum()) > 0
    assert float(jnp.abs(llm.q_einsum.w[...]).sum()) > 0
    assert float(jnp.abs(grads.time_mlp_in.kernel[...]).sum()) > 0


def test_time_embedding_and_config_validation():
    from policy.pi05 import posemb_sincos

    emb = np.asarray(posemb_sincos(jnp.array([0.0, 0.5]), 8, 4e-3, 4.0))
    assert emb.shape == (2, 8)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    np.testing.assert_allclose(emb[1, 3], np.sin(0.5 * 2 * np.pi / 4.0), atol=1e-6)
    assert get_model_config("pi05").dtype == "bfloat16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_model_config("tiny", dtype="float16")
