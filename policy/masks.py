"""Attention masks and positions in openpi's `make_attn_mask` semantics.

A sequence is described by `input_mask` [B,N] (True = a real token) and `ar_mask` [B,N] or [N] (True = this
token starts a new causal block: it and the tokens after it are not visible to the tokens before it). Tokens
with ar_mask False share the block of the token before them and see each other fully.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def make_attn_mask(input_mask: jax.Array, ar_mask: jax.Array) -> jax.Array:
    """[B,N,N] bool: query i may attend to key j."""
    ar_mask = jnp.broadcast_to(ar_mask, input_mask.shape)
    block = jnp.cumsum(ar_mask, axis=1)
    causal = block[:, None, :] <= block[:, :, None]
    valid = input_mask[:, None, :] & input_mask[:, :, None]
    return causal & valid


def positions_from_mask(input_mask: jax.Array, offset: jax.Array | int = 0) -> jax.Array:
    """Token positions [B,N]: padding does not advance the position."""
    return jnp.cumsum(input_mask.astype(jnp.int32), axis=1) - 1 + jnp.asarray(offset, jnp.int32)


def cross_mask(query_len: int, key_mask: jax.Array) -> jax.Array:
    """[B,T,S]: every one of T queries sees the valid keys of key_mask [B,S]."""
    return jnp.broadcast_to(key_mask[:, None, :], (key_mask.shape[0], query_len, key_mask.shape[1]))


def last_valid_index(input_mask: jax.Array) -> jax.Array:
    """[B] index of the last True in each row (-1 for an empty row)."""
    idx = jnp.arange(input_mask.shape[1], dtype=jnp.int32)
    return jnp.max(jnp.where(input_mask, idx, -1), axis=1)
