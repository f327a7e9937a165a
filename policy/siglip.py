"""SigLIP vision transformer as pi0.5 uses it: patch embedding, learned position embedding, pre-norm encoder
blocks (scanned: leading depth axis), final LayerNorm, no pooling, and a Dense head to the LM width.

Parameter names are big_vision's as stored in openpi checkpoints (`img/Transformer/encoderblock/
MultiHeadDotProductAttention_0/query/kernel`, ...). Patch embedding and position embedding run in float32;
the encoder in the model dtype.

Axis names: B batch, P patches (tokens), D width, N heads, H head dim, F mlp hidden.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from policy.gemma import Dense
from policy.keypoints import Keypoints
from policy.lora import lecun_normal

_WIDTH = {"mu": 32, "Ti": 192, "S": 384, "M": 512, "B": 768, "L": 1024, "So400m": 1152}
_DEPTH = {"mu": 1, "Ti": 12, "S": 12, "M": 12, "B": 12, "L": 24, "So400m": 27}
_MLP = {"mu": 128, "Ti": 768, "S": 1536, "M": 2048, "B": 3072, "L": 4096, "So400m": 4304}
_HEADS = {"mu": 2, "Ti": 3, "S": 6, "M": 8, "B": 12, "L": 16, "So400m": 16}


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch: int = 14
    image_size: int = 224
    # Channels of 3×3 stride-2 convolutions run before the patch embedding (each halves the side); the patch
    # embedding then covers `patch / 2**len(stem)` feature-map pixels, so a token still spans `patch` pixels but
    # sees its neighbours too. Empty: SigLIP's plain patch embedding, as openpi's checkpoints have.
    stem: tuple[int, ...] = ()
    # Spatial-softmax keypoint tokens read off the stem's feature map (policy.keypoints), after the patches.
    keypoints: int = 0
    # FiLM: the prompt's mean token embedding scales and shifts the stem's feature channels (as RT-1 conditions
    # its image encoder on the instruction), so that what the words name stands out before the pooling.
    film: bool = False

    def __post_init__(self):
        object.__setattr__(self, "stem", tuple(int(c) for c in self.stem))
        if self.stem and self.patch % 2 ** len(self.stem):
            raise ValueError(f"patch {self.patch} is not divisible by 2**{len(self.stem)} (the conv stem's stride)")
        if self.keypoints < 0 or (self.keypoints and not self.stem):
            raise ValueError(f"keypoints={self.keypoints}: keypoints read the conv stem's features; set a stem")
        if self.film and not self.stem:
            raise ValueError("film conditions the conv stem's features; set a stem")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + self.keypoints


def get_siglip_config(variant: str, image_size: int = 224) -> SiglipConfig:
    """`So400m/14`, `mu/14`, `B/16`, ...: a size name and a patch size."""
    name, _, patch = variant.partition("/")
    if name not in _WIDTH or not patch.isdigit():
        raise ValueError(f"unknown SigLIP variant {variant!r}; expected NAME/PATCH with NAME in {sorted(_WIDTH)}")
    if image_size % int(patch):
        raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
    return SiglipConfig(_WIDTH[name], _DEPTH[name], _MLP[name], _HEADS[name], int(patch), image_size)


class LayerNorm(nnx.Module):
    def __init__(self, width: int):
        self.scale = nnx.Param(jnp.ones((width,)))
        self.bias = nnx.Param(jnp.zeros((width,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + 1e-6)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class HeadsDense(nnx.Module):
    """Projection D → (N, H) with bias, as flax's DenseGeneral for attention query/key/value."""

    def __init__(self, width: int, heads: int, head_dim: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(lecun_normal(rngs, (width, heads, head_dim), width))
        self.bias = nnx.Param(jnp.zeros((heads, head_dim)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("BPD,DNH->BPNH", x, self.kernel[...].astype(x.dtype)) + self.bias[...].astype(x.dtype)


class MergeHeadsDense(nnx.Module):
    def __init__(self, heads: int, head_dim: int, width: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(lecun_normal(rngs, (heads, head_dim, width), heads * head_dim))
        self.bias = nnx.Param(jnp.zeros((width,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("BPNH,NHD->BPD", x, self.kernel[...].astype(x.dtype)) + self.bias[...].astype(x.dtype)


class SelfAttention(nnx.Module):
    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
        head_dim = width // heads
        self.query = HeadsDense(width, heads, head_dim, rngs=rngs)
        self.key = HeadsDense(width, heads, head_dim, rngs=rngs)
        self.value = HeadsDense(width, heads, head_dim, rngs=rngs)
        self.out = MergeHeadsDense(heads, head_dim, width, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        q, k, v = self.query(x), self.key(x), self.value(x)
        q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
        weights = jax.nn.softmax(jnp.einsum("BPNH,BQNH->BNPQ", q, k), axis=-1).astype(x.dtype)
        return self.out(jnp.einsum("BNPQ,BQNH->BPNH", weights, v))


class MlpBlock(nnx.Module):
    def __init__(self, width: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.Dense_0 = Dense(width, mlp_dim, rngs=rngs)
        self.Dense_1 = Dense(mlp_dim, width, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.Dense_1(jax.nn.gelu(self.Dense_0(x, x.dtype)), x.dtype)


class EncoderBlock(nnx.Module):
    def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
        self.LayerNorm_0 = LayerNorm(cfg.width)
        self.MultiHeadDotProductAttention_0 = SelfAttention(cfg.width, cfg.num_heads, rngs=rngs)
        self.LayerNorm_1 = LayerNorm(cfg.width)
        self.MlpBlock_0 = MlpBlock(cfg.width, cfg.mlp_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.MultiHeadDotProductAttention_0(self.LayerNorm_0(x))
        return x + self.MlpBlock_0(self.LayerNorm_1(x))


class Encoder(nnx.Module):
    def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=cfg.depth)
        @nnx.vmap(in_axes=0, out_axes=0)
        def stacked_blocks(rngs: nnx.Rngs) -> EncoderBlock:
            return EncoderBlock(cfg, rngs=rngs)

        self.encoderblock = stacked_blocks(rngs)
        self.encoder_norm = LayerNorm(cfg.width)

    def __call__(self, x: jax.Array) -> jax.Array:
        graphdef, state = nnx.split(self.encoderblock)

        def layer(h, params):
            return nnx.merge(graphdef, params)(h), None

        x, _ = jax.lax.scan(layer, x, state)
        return self.encoder_norm(x)


def _conv(x: jax.Array, kernel: jax.Array, stride: int, padding: str) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel.astype(jnp.float32), (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class Conv3x3(nnx.Module):
    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(lecun_normal(rngs, (3, 3, c_in, c_out), 9 * c_in))
        self.bias = nnx.Param(jnp.zeros((c_out,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.gelu(_conv(x, self.kernel[...], 2, "SAME") + self.bias[...].astype(jnp.float32))


class ConvStem(nnx.Module):
    """3×3 stride-2 SAME convolutions with GELU (`Conv_0`, `Conv_1`, …): overlapping receptive fields for
    small images."""

    def __init__(self, channels: tuple[int, ...], *, rngs: nnx.Rngs):
        self.depth = len(channels)
        for i, (c_in, c_out) in enumerate(zip((3, *channels[:-1]), channels)):
            setattr(self, f"Conv_{i}", Conv3x3(c_in, c_out, rngs=rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = getattr(self, f"Conv_{i}")(x)
        return x


class PatchEmbedding(nnx.Module):
    """A stride-`p` VALID convolution (`kernel` [p,p,C,D]): p = patch over 3 image channels, or the rest of the
    patch over the conv stem's feature map."""

    def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
        p = cfg.patch // 2 ** len(cfg.stem)
        channels = cfg.stem[-1] if cfg.stem else 3
        self.kernel = nnx.Param(lecun_normal(rngs, (p, p, channels, cfg.width), p * p * channels))
        self.bias = nnx.Param(jnp.zeros((cfg.width,)))

    def __call__(self, images: jax.Array) -> jax.Array:
        y = _conv(images, self.kernel[...], self.kernel.shape[0], "VALID") + self.bias[...].astype(jnp.float32)
        return y.reshape(y.shape[0], -1, y.shape[-1])


class SigLIP(nnx.Module):
    """Images [B,S,S,3] in [-1,1] → tokens [B,P,out_width]."""

    def __init__(self, cfg: SiglipConfig, out_width: int, dtype: str, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dtype = dtype
        if cfg.stem:
            self.stem = ConvStem(cfg.stem, rngs=rngs)
        self.embedding = PatchEmbedding(cfg, rngs=rngs)
        self.pos_embedding = nnx.Param(
            jax.random.normal(rngs.params(), (1, cfg.num_patches, cfg.width)) / jnp.sqrt(cfg.width)
        )
        if cfg.keypoints:
            self.keypoints = Keypoints(cfg.stem[-1], cfg.keypoints, cfg.width, rngs=rngs)
        if cfg.film:
            self.film = Dense(out_width, 2 * cfg.stem[-1], rngs=rngs, zero=True)
        self.Transformer = Encoder(cfg, rngs=rngs)
        self.head = Dense(cfg.width, out_width, rngs=rngs)

    def __call__(self, images: jax.Array, words: jax.Array | None = None) -> jax.Array:
        """`words` [B,out_width]: what FiLM conditions on (the prompt's mean embedding), when `film` is on."""
        expected = (self.cfg.image_size, self.cfg.image_size, 3)
        if images.shape[1:] != expected:
            raise ValueError(f"images have shape {images.shape}, expected [B, {', '.join(map(str, expected))}]")
        x = images.astype(jnp.float32)
        if self.cfg.stem:
            x = self.stem(x)
        if self.cfg.film:
            if words is None:
                raise ValueError("this vision encoder is conditioned on the prompt (film); pass its embedding")
            scale, shift = jnp.split(self.film(words.astype(jnp.float32))[:, None, None, :], 2, axis=-1)
            x = x * (1 + scale) + shift
        features = x
        x = self.embedding(x) + self.pos_embedding[...].astype(jnp.float32)
        if self.cfg.keypoints:
            x = jnp.concatenate([x, self.keypoints(features)], axis=1)
        x = self.Transformer(x.astype(self.dtype))
        return self.head(x, x.dtype)
