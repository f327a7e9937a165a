"""Spatial-softmax keypoints: where each of K learned detectors fires on the conv stem's feature map, as tokens.

A vision tower trained from scratch on 64² images learns what a patch holds long before it learns where in
the patch it is, and the bundled policy needs places to about a centimetre (under a pixel of its agent view).
A spatial softmax (Levine et al., "End-to-End Training of Deep Visuomotor Policies", 2016) reads places off a
feature map exactly: detector k's softmax over positions gives an expected (x, y), where its feature is. Each
keypoint becomes one token: a sin-cos code of (x, y) and of how peaked the softmax is (one blob, or none),
plus a learned code of which detector it is. With one colour per object in a scene, a detector tuned to a
colour finds that object, and the language model only has to match the word to the detector.

Axis names: B batch, H W feature-map rows and columns, C channels, K keypoints, F code features, D width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Float

from policy.gemma import Dense

INITIAL_GAIN = 10.0  # detector logits start this much sharper than a unit-scale projection makes them
OCTAVES = 6  # periods 2·2^-o for o < OCTAVES: the whole image down to a sixteenth of it


def place_code(values: Float[jax.Array, "... n"]) -> Float[jax.Array, "... f"]:
    """Sin-cos features of values in [-1, 1], at periods from the whole range down to 1/16 of it."""
    frequencies = jnp.pi * 2.0 ** jnp.arange(OCTAVES)
    angle = values[..., :, None] * frequencies
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(*values.shape[:-1], -1)


def expected_places(logits: Float[jax.Array, "b h w k"]) -> tuple[jax.Array, jax.Array]:
    """(x, y) in [-1, 1] of each channel's softmax over positions [B,K,2], and its peak weight [B,K]."""
    b, h, w, k = logits.shape
    weights = jax.nn.softmax(logits.reshape(b, h * w, k), axis=1)
    rows = (jnp.arange(h) + 0.5) / h * 2 - 1
    cols = (jnp.arange(w) + 0.5) / w * 2 - 1
    grid = jnp.stack(jnp.meshgrid(cols, rows), axis=-1).reshape(h * w, 2)
    return jnp.einsum("bpk,pc->bkc", weights, grid), weights.max(axis=1)


class Keypoints(nnx.Module):
    """Feature map [B,H,W,C] → K keypoint tokens [B,K,D]."""

    def __init__(self, channels: int, count: int, width: int, *, rngs: nnx.Rngs):
        self.detector = Dense(channels, count, rngs=rngs)  # a 1×1 convolution
        # A learned log-gain per detector (the softmax's inverse temperature): near-flat softmaxes at
        # initialisation would all sit at the image centre and barely move.
        self.log_gain = nnx.Param(jnp.full((count,), jnp.log(INITIAL_GAIN)))
        self.code = Dense(2 * 2 * OCTAVES + 1, width, rngs=rngs)
        self.identity = nnx.Param(jax.random.normal(rngs.params(), (count, width)) / jnp.sqrt(width))

    def places(self, features: Float[jax.Array, "b h w c"]) -> tuple[jax.Array, jax.Array]:
        """(x, y) [B,K,2] and peak weight [B,K] of each detector (see `expected_places`)."""
        logits = self.detector(features, jnp.float32) * jnp.exp(self.log_gain[...].astype(jnp.float32))
        return expected_places(logits)

    def __call__(self, features: Float[jax.Array, "b h w c"]) -> Float[jax.Array, "b k d"]:
        places, peak = self.places(features)
        code = jnp.concatenate([place_code(places), peak[..., None]], axis=-1)
        return self.code(code, jnp.float32) + self.identity[...].astype(jnp.float32)
