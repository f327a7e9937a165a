"""Rows of (cameras, prompt, state) into one padded `ModelInput`, with batch buckets to bound recompilation.

Rows come checked (`policy.inputs`): the engines refuse a bad request, naming its field, before batching it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int, UInt8

from policy.config import ModelConfig
from policy.images import resize_with_pad
from policy.observation import ModelInput, uint8_to_model
from policy.prompts import TokenizedPrompt

# The batch sizes the planner and actor compile for (and the runtime warms up); more rows run in several batches.
BATCH_BUCKETS = (1, 2, 4, 8)


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding n rows."""
    for size in sorted(buckets):
        if n <= size:
            return size
    raise ValueError(f"batch of {n} rows exceeds the largest batch bucket {max(buckets)}")


@dataclasses.dataclass(frozen=True)
class Row:
    """One request: model camera key → an RGB frame of any size (absent keys are masked out), a prompt, a
    model-space state (cut or zero-padded to the model's action dims).

    ar_mask: 1 where a causal block starts (`masks.make_attn_mask`); None keeps the whole prompt bidirectional.
    Prompts with a causal part, such as the reasoning protocol's rows, need it to be run as they were trained.
    Axis names: `policy.observation`.
    """

    images: Mapping[str, UInt8[np.ndarray, "_height _width 3"]]
    prompt: TokenizedPrompt
    state: Float[np.ndarray, " _state_dims"] | None = None
    ar_mask: Int[np.ndarray, " l"] | None = None


def build_input(cfg: ModelConfig, rows: Sequence[Row], batch_size: int | None = None) -> ModelInput:
    """Stacks rows into a ModelInput of `batch_size` rows (extra rows are copies of the first, to be discarded)."""
    if not rows:
        raise ValueError("build_input needs at least one row")
    batch = batch_size or len(rows)
    if batch < len(rows):
        raise ValueError(f"batch_size {batch} is smaller than the {len(rows)} rows")
    padded = [*rows, *[rows[0]] * (batch - len(rows))]
    size = cfg.vision.image_size
    images, image_masks = {}, {}
    for key in cfg.image_keys:
        frames = np.zeros((batch, size, size, 3), np.uint8)
        present = np.zeros(batch, bool)
        for i, row in enumerate(padded):
            if key in row.images:
                frames[i] = resize_with_pad(row.images[key], size, size)
                present[i] = True
        images[key] = uint8_to_model(frames)
        image_masks[key] = jnp.asarray(present)
    tokens = np.stack([row.prompt.tokens for row in padded]).astype(np.int32)
    token_mask = np.stack([row.prompt.mask for row in padded]).astype(bool)
    if tokens.shape[1] != cfg.max_token_len:
        raise ValueError(f"prompt has {tokens.shape[1]} token slots, the model expects {cfg.max_token_len}")
    state = np.zeros((batch, cfg.action_dim), np.float32)
    for i, row in enumerate(padded):
        if row.state is not None:
            s = np.asarray(row.state, np.float32).reshape(-1)[: cfg.action_dim]
            state[i, : s.shape[0]] = s
    return ModelInput(
        images, image_masks, jnp.asarray(tokens), jnp.asarray(token_mask), jnp.asarray(state), _ar_mask(padded)
    )


def _ar_mask(rows: Sequence[Row]) -> Int[jax.Array, "b l"] | None:
    """The rows' ar masks stacked (zeros for rows without one), or None when no row has one."""
    if all(row.ar_mask is None for row in rows):
        return None
    length = rows[0].prompt.tokens.shape[0]
    stacked = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        if row.ar_mask is not None:
            if row.ar_mask.shape != (length,):
                raise ValueError(f"row {i} has an ar_mask of shape {row.ar_mask.shape}, its prompt {length} slots")
            stacked[i] = row.ar_mask
    return jnp.asarray(stacked)
