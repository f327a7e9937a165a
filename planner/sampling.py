"""Choosing the next token from masked logits: greedy, or temperature + nucleus (top-p) sampling.

Temperature and top-p are traced scalars and the greedy/sampling switch is a `lax.cond`, so changing them
never recompiles the decode loop. Each row samples with its own key folded from the step key and its row
index, so a row's draw does not depend on how many rows share the batch bucket.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from planner.vocab import apply_mask


def nucleus_filter(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """Logits [B,V] with every id outside the smallest set holding `top_p` of the probability at -inf.

    The most likely id is always kept; ids tied with the last kept one are kept too.
    """
    ranked = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(ranked, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    kept = mass_before < top_p
    kept = kept.at[:, 0].set(True)
    cutoff = jnp.min(jnp.where(kept, ranked, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= cutoff, logits, -jnp.inf)


def sample(logits: jax.Array, rng: jax.Array, temperature: jax.Array, top_p: jax.Array) -> jax.Array:
    """One token per row [B] drawn from softmax(logits / temperature) restricted to the top-p nucleus.

    The row maximum is subtracted first, so even a tiny temperature gives -inf (never inf - inf = NaN).
    """
    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
    filtered = nucleus_filter(shifted / temperature, top_p)
    row_keys = jax.vmap(lambda row: jax.random.fold_in(rng, row))(jnp.arange(logits.shape[0]))
    return jax.vmap(jax.random.categorical)(row_keys, filtered).astype(jnp.int32)


def choose_token(
    logits: jax.Array, rng: jax.Array, *, allowed: jax.Array, temperature: jax.Array, top_p: jax.Array
) -> jax.Array:
    """Masks, then picks greedily when temperature is 0 and samples otherwise. logits [B,V] → tokens [B]."""
    masked = apply_mask(logits, allowed)
    return jax.lax.cond(
        temperature > 0,
        lambda: sample(masked, rng, temperature, top_p),
        lambda: jnp.argmax(masked, axis=-1).astype(jnp.int32),
    )
