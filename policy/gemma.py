"""Gemma as a mixture of experts sharing one attention: expert 0 is the PaliGemma LM, expert 1 the action expert.

Each expert has its own weights and width; their token sequences are concatenated for attention only
(multi-query: one kv head), so prefix and action tokens see each other exactly as the attention mask allows.
Parameter names and shapes are openpi's (`layers/attn/q_einsum_1/w`, `layers/pre_attention_norm_1/Dense_0`,
...), with a leading depth axis on every layer parameter (scanned layers).

Axis names used in einsums:
  B batch   T query tokens   S key tokens   D width   N query heads   K kv heads   G query heads per kv head
  H head dim   F mlp hidden   L layers
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from policy.lora import Einsum, LoRAConfig, lecun_normal

PALIGEMMA_VOCAB_SIZE = 257_152
ROPE_MAX_WAVELENGTH = 10_000
# Masked attention logit; a finite value keeps fully masked (padding) rows free of NaN, as in gemma.
BIG_NEG = -2.3819763e38


@dataclasses.dataclass(frozen=True)
class GemmaConfig:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    lora_attn: LoRAConfig | None = None
    lora_ffn: LoRAConfig | None = None


_VARIANTS = {
    "dummy": dict(width=64, depth=4, mlp_dim=128, num_heads=8, num_kv_heads=1, head_dim=16),
    "gemma_300m": dict(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256),
    "gemma_2b": dict(width=2048, depth=18, mlp_dim=16_384, num_heads=8, num_kv_heads=1, head_dim=256),
}
_LORA_VARIANTS = {"gemma_2b_lora": ("gemma_2b", 16), "gemma_300m_lora": ("gemma_300m", 32)}


def gemma_variants() -> list[str]:
    return sorted([*_VARIANTS, *_LORA_VARIANTS])


def get_gemma_config(variant: str, **overrides) -> GemmaConfig:
    """A named Gemma size (`gemma_2b`, `gemma_300m`, their `_lora` forms, `dummy`), fields overridable."""
    if variant in _LORA_VARIANTS:
        base, rank = _LORA_VARIANTS[variant]
        lora = LoRAConfig(rank=rank, alpha=float(rank))
        return GemmaConfig(**{**_VARIANTS[base], "lora_attn": lora, "lora_ffn": lora, **overrides})
    if variant not in _VARIANTS:
        raise ValueError(f"unknown Gemma variant {variant!r}; expected one of {gemma_variants()}")
    return GemmaConfig(**{**_VARIANTS[variant], **overrides})


def expert_name(name: str, expert: int) -> str:
    return name if expert == 0 else f"{name}_{expert}"


def apply_rope(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotary embedding of x [B,T,N,H] at integer positions [B,T]; computed in float32, returned in x's dtype."""
    half = x.shape[-1] // 2
    timescale = ROPE_MAX_WAVELENGTH ** ((2.0 / x.shape[-1]) * jnp.arange(half, dtype=jnp.float32))
    radians = (positions[..., None] / timescale)[..., None, :]
    sin, cos = jnp.sin(radians), jnp.cos(radians)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Dense(nnx.Module):
    """y = x W + b (`kernel`, `bias` as in flax)."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs, zero: bool = False):
        self.kernel = nnx.Param(jnp.zeros((d_in, d_out)) if zero else lecun_normal(rngs, (d_in, d_out), d_in))
        self.bias = nnx.Param(jnp.zeros((d_out,)))

    def __call__(self, x: jax.Array, dtype=None) -> jax.Array:
        """Computes in `dtype`, or in the promoted type of x and the weights (as nnx.Linear) when None."""
        kernel, bias = self.kernel[...], self.bias[...]
        dtype = dtype or jnp.result_type(x, kernel)
        return x.astype(dtype) @ kernel.astype(dtype) + bias.astype(dtype)


class RMSNorm(nnx.Module):
    """RMSNorm with `scale` (x·(1+scale)), or, when adaptive, a `Dense_0` from the condition to scale, shift, gate."""

    def __init__(self, width: int, adaptive: bool, *, rngs: nnx.Rngs):
        self.adaptive = adaptive
        if adaptive:
            self.Dense_0 = Dense(width, 3 * width, rngs=rngs, zero=True)
        else:
            self.scale = nnx.Param(jnp.zeros((width,)))

    def __call__(self, x: jax.Array, cond: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
        var = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
        normed = x * jnp.reciprocal(jnp.sqrt(var + 1e-6))
        if not self.adaptive:
            return (normed * (1 + self.scale[...])).astype(x.dtype), None
        if cond is None:
            raise ValueError("adaptive RMSNorm needs a condition (the time embedding)")
        scale, shift, gate = jnp.split(self.Dense_0(cond, x.dtype)[:, None, :], 3, axis=-1)
        return (normed * (1 + scale) + shift).astype(x.dtype), gate


def gated_residual(x: jax.Array, y: jax.Array, gate: jax.Array | None) -> jax.Array:
    return x + y if gate is None else x + y * gate


class FeedForward(nnx.Module):
    """GeGLU MLP (`gating_einsum` [2,D,F], `linear` [F,D]) with openpi's unscaled LoRA factors."""

    def __init__(self, cfg: GemmaConfig, *, rngs: nnx.Rngs):
        d, f, lora = cfg.width, cfg.mlp_dim, cfg.lora_ffn
        self.gating_einsum = nnx.Param(lecun_normal(rngs, (2, d, f), d))
        self.linear = nnx.Param(lecun_normal(rngs, (f, d), f))
        self.has_lora = lora is not None
        if lora is not None:
            std = lora.init_std
            self.gating_einsum_lora_a = nnx.Param(std * jax.random.normal(rngs.params(), (2, d, lora.rank)))
            self.gating_einsum_lora_b = nnx.Param(std * jax.random.normal(rngs.params(), (2, lora.rank, f)))
            self.linear_lora_a = nnx.Param(std * jax.random.normal(rngs.params(), (f, lora.rank)))
            self.linear_lora_b = nnx.Param(std * jax.random.normal(rngs.params(), (lora.rank, d)))

    def _dot(self, x: jax.Array, w: jax.Array, a: jax.Array | None, b: jax.Array | None) -> jax.Array:
        y = x @ w.astype(x.dtype)
        if a is None:
            return y
        assert b is not None  # LoRA factors come in pairs
        return y + (x @ a.astype(x.dtype)) @ b.astype(x.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.gating_einsum[...]
        gates: list[tuple[jax.Array | None, jax.Array | None]]
        if self.has_lora:
            ga, gb = self.gating_einsum_lora_a[...], self.gating_einsum_lora_b[...]
            la, lb = self.linear_lora_a[...], self.linear_lora_b[...]
            gates = [(ga[0], gb[0]), (ga[1], gb[1])]
        else:
            gates, la, lb = [(None, None), (None, None)], None, None
        hidden = jax.nn.gelu(self._dot(x, w[0], *gates[0])) * self._dot(x, w[1], *gates[1])
        return self._dot(hidden, self.linear[...], la, lb)


@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer, [L,B,S,K,H] each: the prefix once, or a preallocated decode buffer."""

    k: jax.Array
    v: jax.Array

    @property
    def length(self) -> int:
        return self.k.shape[2]

    def padded_to(self, length: int) -> KVCache:
        """The same cache with room for `length` keys, for writing decoded tokens in place."""
        pad = [(0, 0), (0, 0), (0, length - self.length), (0, 0), (0, 0)]
        return KVCache(jnp.pad(self.k, pad), jnp.pad(self.v, pad))


jax.tree_util.register_dataclass(KVCache, data_fields=["k", "v"], meta_fields=[])


class Attention(nnx.Module):
    """One attention over all experts' tokens; each expert projects its own q, k, v and output."""

    def __init__(self, configs: Sequence[GemmaConfig], *, rngs: nnx.Rngs):
        first = configs[0]
        for cfg in configs:
            if (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) != (first.num_heads, first.num_kv_heads, first.head_dim):
                raise ValueError("all experts must share num_heads, num_kv_heads and head_dim")
        self.num_kv_heads = first.num_kv_heads
        self.head_dim = first.head_dim
        for i, cfg in enumerate(configs):
            n, k, d, h = cfg.num_heads, cfg.num_kv_heads, cfg.width, cfg.head_dim
            setattr(self, expert_name("q_einsum", i), Einsum((n, d, h), d, cfg.lora_attn, rngs=rngs))
            setattr(self, expert_name("kv_einsum", i), Einsum((2, k, d, h), d, cfg.lora_attn, rngs=rngs))
            setattr(self, expert_name("attn_vec_einsum", i), Einsum((n, h, d), n * h, cfg.lora_attn, rngs=rngs))

    def __call__(
        self,
        xs: Sequence[jax.Array | None],
        positions: jax.Array,
        mask: jax.Array,
        cache: tuple[jax.Array, jax.Array] | None,
        cache_index: jax.Array | None,
    ) -> tuple[list[jax.Array | None], tuple[jax.Array, jax.Array]]:
        qs, ks, vs = [], [], []
        for i, x in enumerate(xs):
            if x is None:
                continue
            qs.append(getattr(self, expert_name("q_einsum", i))("BTD,NDH->BTNH", x))
            k, v = getattr(self, expert_name("kv_einsum", i))("BSD,2KDH->2BSKH", x)
            ks.append(k)
            vs.append(v)
        q = apply_rope(jnp.concatenate(qs, axis=1), positions) * self.head_dim**-0.5
        k = apply_rope(jnp.concatenate(ks, axis=1), positions)
        v = jnp.concatenate(vs, axis=1)
        dtype = q.dtype

        if cache is not None:
            cache_k, cache_v = cache
            if cache_index is None:
                k = jnp.concatenate([cache_k.astype(dtype), k], axis=1)
                v = jnp.concatenate([cache_v.astype(dtype), v], axis=1)
            else:
                k = jax.lax.dynamic_update_slice_in_dim(cache_k, k.astype(cache_k.dtype), cache_index, axis=1)
                v = jax.lax.dynamic_update_slice_in_dim(cache_v, v.astype(cache_v.dtype), cache_index, axis=1)

        batch, t = q.shape[:2]
        if mask.shape != (batch, t, k.shape[1]):
            raise ValueError(f"attention mask has shape {mask.shape}, expected {(batch, t, k.shape[1])}")
        q = q.reshape(batch, t, self.num_kv_heads, -1, self.head_dim)
        logits = jnp.einsum("BTKGH,BSKH->BKGTS", q, k.astype(dtype), preferred_element_type=jnp.float32)
        logits = jnp.where(mask[:, None, None, :, :], logits, BIG_NEG)
        probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
        encoded = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v.astype(dtype)).reshape(batch, t, -1, self.head_dim)

        out: list[jax.Array | None] = []
        start = 0
        for i, x in enumerate(xs):
            if x is None:
                out.append(None)
                continue
            end = start + x.shape[1]
            out.append(getattr(self, expert_name("attn_vec_einsum", i))("BTNH,NHD->BTD", encoded[:, start:end]))
            start = end
        return out, (k, v)


class Block(nnx.Module):
    """One transformer layer for all experts: (ada)RMSNorm → shared attention → gated residual → (ada)RMSNorm → MLP."""

    def __init__(self, configs: Sequence[GemmaConfig], adarms: Sequence[bool], *, rngs: nnx.Rngs):
        self.attn = Attention(configs, rngs=rngs)
        for i, (cfg, ada) in enumerate(zip(configs, adarms, strict=True)):
            setattr(self, expert_name("pre_attention_norm", i), RMSNorm(cfg.width, ada, rngs=rngs))
            setattr(self, expert_name("pre_ffw_norm", i), RMSNorm(cfg.width, ada, rngs=rngs))
            setattr(self, expert_name("mlp", i), FeedForward(cfg, rngs=rngs))

    def __call__(self, xs, positions, mask, conds, cache, cache_index):
        normed, gates = [], []
        for i, x in enumerate(xs):
            y, gate = (
                getattr(self, expert_name("pre_attention_norm", i))(x, conds[i]) if x is not None else (None, None)
            )
            normed.append(y)
            gates.append(gate)
        attended, new_cache = self.attn(normed, positions, mask, cache, cache_index)
        xs = [None if x is None else gated_residual(x, y, g) for x, y, g in zip(xs, attended, gates, strict=True)]

        out = []
        for i, x in enumerate(xs):
            if x is None:
                out.append(None)
                continue
            y, gate = getattr(self, expert_name("pre_ffw_norm", i))(x, conds[i])
            out.append(gated_residual(x, getattr(self, expert_name("mlp", i))(y), gate))
        return out, new_cache


class Embedder(nnx.Module):
    def __init__(self, vocab_size: int, width: int, *, rngs: nnx.Rngs):
        self.input_embedding = nnx.Param(jax.random.normal(rngs.params(), (vocab_size, width)))

    def encode(self, tokens: jax.Array) -> jax.Array:
        table = self.input_embedding[...]
        return table[tokens] * jnp.sqrt(table.shape[-1]).astype(table.dtype)

    def decode(self, hidden: jax.Array) -> jax.Array:
        """Tied-embedding logits."""
        return hidden @ self.input_embedding[...].astype(hidden.dtype).T


class MixtureTransformer(nnx.Module):
    """The `llm` of pi0.5: embedder, scanned layers (leading depth axis on every parameter), per-expert final norms."""

    def __init__(
        self,
        configs: Sequence[GemmaConfig],
        adarms: Sequence[bool],
        vocab_size: int,
        dtype: str,
        *,
        rngs: nnx.Rngs,
    ):
        depth = configs[0].depth
        if any(cfg.depth != depth for cfg in configs):
            raise ValueError("all experts must have the same depth")
        self.num_experts = len(configs)
        self.dtype = dtype
        self.embedder = Embedder(vocab_size, configs[0].width, rngs=rngs)

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=0, out_axes=0)
        def stacked_layers(rngs: nnx.Rngs) -> Block:
            return Block(configs, adarms, rngs=rngs)

        self.layers = stacked_layers(rngs)
        for i, (cfg, ada) in enumerate(zip(configs, adarms, strict=True)):
            setattr(self, expert_name("final_norm", i), RMSNorm(cfg.width, ada, rngs=rngs))

    def embed(self, tokens: jax.Array) -> jax.Array:
        return self.embedder.encode(tokens).astype(self.dtype)

    def logits(self, hidden: jax.Array) -> jax.Array:
        return self.embedder.decode(hidden)

    def __call__(
        self,
        xs: Sequence[jax.Array | None],
        positions: jax.Array,
        mask: jax.Array,
        conds: Sequence[jax.Array | None] | None = None,
        cache: KVCache | None = None,
        cache_index: jax.Array | None = None,
    ) -> tuple[list[jax.Array | None], KVCache]:
        """Runs the experts' token streams [B,T_i,D_i] (None = absent) through all layers.

        mask is [B, T, S]: T = all present tokens, S = cached keys (if any) + T, or the buffer length when
        writing into a preallocated cache at `cache_index`.
        """
        xs = [None if x is None else x.astype(self.dtype) for x in xs]
        conds = list(conds) if conds is not None else [None] * self.num_experts
        graphdef, layer_state = nnx.split(self.layers)

        def layer(carry, scanned):
            params, layer_cache = scanned
            block = nnx.merge(graphdef, params)
            out, new_cache = block(carry, positions, mask, conds, layer_cache, cache_index)
            return out, new_cache

        scanned_cache = None if cache is None else (cache.k, cache.v)
        xs, (k, v) = jax.lax.scan(layer, xs, (layer_state, scanned_cache))
        outs = []
        for i, x in enumerate(xs):
            outs.append(None if x is None else getattr(self, expert_name("final_norm", i))(x, conds[i])[0])
        return outs, KVCache(k, v)
