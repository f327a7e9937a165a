"""What the network reads: batched images, tokenized prompt and state, already preprocessed."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """A batch for the network.

    images: name → float [B,S,S,3] in [-1, 1]; image_masks: name → bool [B] (False = camera absent).
    tokens / token_mask: int32 / bool [B,L], right-padded. token_ar_mask: optional int/bool [B,L] (True starts a
    causal block; training uses it for subtask and FAST tokens). state: float32 [B,action_dim], read by pi0 only.
    """

    images: dict[str, jax.Array]
    image_masks: dict[str, jax.Array]
    tokens: jax.Array
    token_mask: jax.Array
    state: jax.Array | None = None
    token_ar_mask: jax.Array | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]


jax.tree_util.register_dataclass(
    ModelInput, data_fields=["images", "image_masks", "tokens", "token_mask", "state", "token_ar_mask"], meta_fields=[]
)


def uint8_to_model(images: np.ndarray | jax.Array) -> jax.Array:
    """uint8 [..., 3] → float32 in [-1, 1], as openpi feeds images to SigLIP."""
    return jnp.asarray(images, jnp.float32) / 255.0 * 2.0 - 1.0
