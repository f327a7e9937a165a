"""Autoregressive text from the pi0.5 language model, with a preallocated KV cache inside one compiled loop.

The prefix (images + prompt) is run once; the first token is read at each row's LAST VALID prefix token
(reading a padded position drops words, openpi #701). Generated token k sits at buffer slot P+k and position
n_valid+k (n_valid = the row's valid prefix tokens: padding and absent cameras do not advance positions, as in
`masks.positions_from_mask`), and attends to the valid prefix and the tokens generated before it, so rows with
different prompt lengths or cameras decode exactly as the full sequence would.

Axis names: B batch, P prefix tokens, N new tokens, V vocabulary (lower case in annotations: `policy.observation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Bool, Float, Int

from policy import masks
from policy.gemma import KVCache
from policy.observation import ModelInput

# (logits [B,V] float32, rng) → tokens [B] int32
TokenChooser = Callable[[jax.Array, jax.Array], jax.Array]
# `fill_prefix`'s result: final hidden states [B,P,D], the prefix KV cache, the prefix input mask [B,P]
PrefixPass = tuple[Float[jax.Array, "b p d"], KVCache, Bool[jax.Array, "b p"]]


class TokenModel(Protocol):
    """What decoding calls after the prefix pass: `policy.pi05.Pi05` has it."""

    def logits(self, hidden: Float[jax.Array, "*b d"]) -> Float[jax.Array, "*b v"]: ...

    def decode_step(
        self,
        token: Int[jax.Array, " b"],
        position: Int[jax.Array, " b"],
        cache: KVCache,
        write_index: Int[jax.Array, ""],
        key_mask: Bool[jax.Array, "b s"],
    ) -> tuple[Float[jax.Array, "b v"], KVCache]: ...


class LanguageModel(TokenModel, Protocol):
    """A `TokenModel` that also runs the prefix pass itself."""

    def fill_prefix(self, obs: ModelInput) -> PrefixPass: ...


def greedy(logits: jax.Array, rng: jax.Array) -> jax.Array:
    del rng
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Prefill:
    first_logits: jax.Array  # [B,V] at the last valid prefix token
    cache: KVCache  # buffer with room for N new tokens
    key_mask: jax.Array  # [B,P+N], the valid prefix set
    last_valid: jax.Array  # [B]


def prefill(model: LanguageModel, obs: ModelInput, max_new_tokens: int) -> Prefill:
    return prefill_from(model, model.fill_prefix(obs), max_new_tokens)


def prefill_from(model: TokenModel, prefix: PrefixPass, max_new_tokens: int) -> Prefill:
    """`prefill` from a prefix pass that already ran."""
    hidden, cache, prefix_mask = prefix
    last = masks.last_valid_index(prefix_mask)
    rows = jnp.arange(hidden.shape[0])
    first_logits = model.logits(hidden[rows, last]).astype(jnp.float32)
    prefix_len = prefix_mask.shape[1]
    key_mask = jnp.concatenate([prefix_mask, jnp.zeros((prefix_mask.shape[0], max_new_tokens), jnp.bool_)], axis=1)
    return Prefill(first_logits, cache.padded_to(prefix_len + max_new_tokens), key_mask, last)


def generate(
    model: LanguageModel,
    obs: ModelInput,
    max_new_tokens: int,
    choose: TokenChooser = greedy,
    eos_id: int | None = None,
    pad_id: int = 0,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Tokens [B,N] (pad after a row's EOS, EOS kept) and the number of steps run (early exit when all rows ended).

    Trace it inside jit: the loop is a `lax.while_loop`, so nothing recompiles per token.
    """
    return generate_from(model, model.fill_prefix(obs), max_new_tokens, choose, eos_id, pad_id, rng)


def generate_from(
    model: TokenModel,
    prefix: PrefixPass,
    max_new_tokens: int,
    choose: TokenChooser = greedy,
    eos_id: int | None = None,
    pad_id: int = 0,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`generate` from a prefix pass that already ran: the planner compiles and times that pass on its own."""
    start = prefill_from(model, prefix, max_new_tokens)
    batch, prefix_len = start.first_logits.shape[0], start.key_mask.shape[1] - max_new_tokens
    first_position = jnp.sum(start.key_mask, axis=1, dtype=jnp.int32)
    rng = jax.random.key(0) if rng is None else rng
    eos = -1 if eos_id is None else eos_id

    rng, first_rng = jax.random.split(rng)
    first = choose(start.first_logits, first_rng)
    tokens = jnp.full((batch, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
    done = first == eos

    def keep_going(carry):
        k, _, done, _, _, _ = carry
        return (k < max_new_tokens) & ~jnp.all(done)

    def step(carry):
        k, tokens, done, cache, key_mask, rng = carry
        slot = prefix_len + k - 1
        key_mask = jax.lax.dynamic_update_slice_in_dim(key_mask, jnp.ones((batch, 1), jnp.bool_), slot, axis=1)
        prev = jax.lax.dynamic_index_in_dim(tokens, k - 1, axis=1, keepdims=False)
        logits, cache = model.decode_step(prev, first_position + k - 1, cache, slot, key_mask)
        rng, step_rng = jax.random.split(rng)
        token = jnp.where(done, pad_id, choose(logits.astype(jnp.float32), step_rng))
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], k, axis=1)
        return k + 1, tokens, done | (token == eos), cache, key_mask, rng

    carry = (jnp.int32(1), tokens, done, start.cache, start.key_mask, rng)
    steps, tokens, *_ = jax.lax.while_loop(keep_going, step, carry)
    return tokens, steps
