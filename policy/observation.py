"""What the network reads: batched images, tokenized prompt and state, already preprocessed.

Shapes at the network boundary (`ModelInput`, `policy.pi05.Pi05`, `policy.batching.build_input`,
`actor.sampler.FlowSampler`) are written as jaxtyping annotations, `Float[jax.Array, "b h w c"]`, as openpi and
gemma write them. They document; nothing checks them at run time (no `@jaxtyped`), so the hot path pays nothing.
Axis names, one meaning each across these modules:

    b  batch (when serving: the rows of one call padded up to a batch bucket, `policy.batching.BATCH_BUCKETS`)
    n  rows a caller gave, before that padding (n <= b)
    h  image height, w image width: the model's `vision.image_size` (square, after `resize_with_pad`)
    c  image channels (3, RGB)
    l  prompt token slots (`max_token_len`), right-padded
    p  prefix tokens: every camera's image tokens, then state tokens if any, then the l prompt slots
    s  sequence slots of a KV cache (keys a decoded token may attend to: the prefix, then decoded tokens)
    t  action horizon (control steps in a chunk; not the flow time `t`, which is a float per row)
    a  action dims (the model's `action_dim`; the state is padded to it too)
    d  hidden width of a transformer expert
    v  vocabulary size
    *b any number of leading axes

Longer names say what they count (`suffix`: the action expert's tokens, t or pi0's t + 1; `width`). A name
written `_name` is an axis of any size that no other argument shares (a raw camera frame's `_height`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Bool, Float, Int, UInt8


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """A batch for the network.

    images: camera name → float in [-1, 1]; image_masks: camera name → False where the camera is absent.
    tokens / token_mask: int32 / bool, right-padded. token_ar_mask: optional int or bool (nonzero starts a causal
    block; training uses it for subtask and FAST tokens). state: float32, read as tokens when the model has
    `state_tokens` and by pi0's state token. Axis names: the module docstring.
    """

    images: dict[str, Float[jax.Array, "b h w c"]]
    image_masks: dict[str, Bool[jax.Array, " b"]]
    tokens: Int[jax.Array, "b l"]
    token_mask: Bool[jax.Array, "b l"]
    state: Float[jax.Array, "b a"] | None = None
    token_ar_mask: Int[jax.Array, "b l"] | Bool[jax.Array, "b l"] | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]


jax.tree_util.register_dataclass(
    ModelInput, data_fields=["images", "image_masks", "tokens", "token_mask", "state", "token_ar_mask"], meta_fields=[]
)


def uint8_to_model(
    images: UInt8[np.ndarray, "*b h w c"] | UInt8[jax.Array, "*b h w c"],
) -> Float[jax.Array, "*b h w c"]:
    """uint8 [..., 3] → float32 in [-1, 1], as openpi feeds images to SigLIP."""
    return jnp.asarray(images, jnp.float32) / 255.0 * 2.0 - 1.0
