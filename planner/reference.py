"""A decoder without a KV cache: every new token re-runs the whole prefix plus the tokens generated so far.

It is the ground truth the cached decoder is checked against (the sequence layout is exactly training's: the
generated tokens appended to the prompt as a causal block) and the baseline of `bench/planner_decode.py`.
Trace it inside jit; it is slow by design.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from policy import masks
from policy.decoding import TokenChooser
from policy.observation import ModelInput
from policy.pi05 import Pi05


def full_recompute_generate(
    model: Pi05, obs: ModelInput, new_tokens: int, choose: TokenChooser, rng: jax.Array | None = None
) -> jax.Array:
    """Tokens [B,N], each chosen from a full pass over images + prompt + the tokens generated before it.

    No early exit: it always decodes N tokens (compare up to the first EOS). The prompt keeps its own ar mask
    (a reasoning think prompt ends in a causal `<bor>`); without one it is all bidirectional.
    """
    batch, prompt_slots = obs.tokens.shape
    tokens = jnp.concatenate([obs.tokens, jnp.zeros((batch, new_tokens), jnp.int32)], axis=1)
    token_mask = jnp.concatenate([obs.token_mask, jnp.zeros((batch, new_tokens), jnp.bool_)], axis=1)
    prompt_ar = jnp.zeros((batch, prompt_slots), jnp.bool_) if obs.token_ar_mask is None else obs.token_ar_mask
    ar_mask = jnp.concatenate([prompt_ar.astype(jnp.bool_), jnp.ones((batch, new_tokens), jnp.bool_)], axis=1)
    rows = jnp.arange(batch)
    rng = jax.random.key(0) if rng is None else rng

    def step(k, carry):
        tokens, token_mask = carry
        extended = dataclasses.replace(obs, tokens=tokens, token_mask=token_mask, token_ar_mask=ar_mask)
        hidden, _, input_mask = model.fill_prefix(extended)
        logits = model.logits(hidden[rows, masks.last_valid_index(input_mask)]).astype(jnp.float32)
        token = choose(logits, jax.random.fold_in(rng, k))
        slot = prompt_slots + k
        return tokens.at[:, slot].set(token), token_mask.at[:, slot].set(True)

    tokens, _ = jax.lax.fori_loop(0, new_tokens, step, (tokens, token_mask))
    return tokens[:, prompt_slots:]
