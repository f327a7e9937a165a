"""Low-rank adapters on einsum weights, parameter-compatible with openpi's LoRA checkpoints.

An adapted weight W of shape (..., A, B) carries `lora_a` (..., A, r) and `lora_b` (..., r, B); the einsum
runs once on W and once through the two factors. Attention einsums scale the adapter by alpha/rank; the MLP
adapters are unscaled, as in openpi, so fine-tuned openpi checkpoints give the same function here.
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

LORA_LABEL = "L"


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int
    alpha: float = 1.0
    rslora: bool = False
    init_std: float = 0.01

    @property
    def scaling(self) -> float:
        return self.alpha / math.sqrt(self.rank) if self.rslora else self.alpha / self.rank


def lora_equations(eqn: str) -> tuple[str, str]:
    """Splits `x,W->y` into `x,A->z` and `z,B->y`, the rank axis labelled L between A's last two axes."""
    if LORA_LABEL in eqn:
        raise ValueError(f"einsum {eqn!r} already uses the LoRA label {LORA_LABEL!r}")
    match = re.fullmatch(r"(.*),(.*)->(.*)", eqn)
    if match is None:
        raise ValueError(f"einsum {eqn!r} is not of the form 'x,w->y'")
    lhs, rhs, out = match.groups()
    a_label, b_label = rhs[-2], rhs[-1]
    mid = out.replace(b_label, LORA_LABEL)
    return f"{lhs},{rhs.replace(b_label, LORA_LABEL)}->{mid}", f"{mid},{rhs.replace(a_label, LORA_LABEL)}->{out}"


def _normal(rngs: nnx.Rngs, shape, std: float) -> jax.Array:
    return std * jax.random.normal(rngs.params(), shape, jnp.float32)


def lecun_normal(rngs: nnx.Rngs, shape, fan_in: int) -> jax.Array:
    """Truncated-normal-free LeCun init: openpi's exact init does not matter for loading, only the scale."""
    return _normal(rngs, shape, 1.0 / math.sqrt(max(fan_in, 1)))


class Einsum(nnx.Module):
    """A weight `w` applied with an einsum, plus optional `lora_a`/`lora_b` factors."""

    def __init__(self, shape: tuple[int, ...], fan_in: int, lora: LoRAConfig | None, *, rngs: nnx.Rngs):
        self.w = nnx.Param(lecun_normal(rngs, shape, fan_in))
        self.lora = lora
        if lora is not None:
            shape_a = (*shape[:-1], lora.rank)
            shape_b = (*shape[:-2], lora.rank, shape[-1])
            self.lora_a = nnx.Param(_normal(rngs, shape_a, lora.init_std))
            self.lora_b = nnx.Param(_normal(rngs, shape_b, lora.init_std))

    def __call__(self, eqn: str, x: jax.Array) -> jax.Array:
        y = jnp.einsum(eqn, x, self.w[...].astype(x.dtype))
        if self.lora is None:
            return y
        eqn_a, eqn_b = lora_equations(eqn)
        z = jnp.einsum(eqn_a, x, self.lora_a[...].astype(x.dtype))
        return y + jnp.einsum(eqn_b, z, self.lora_b[...].astype(x.dtype)) * self.lora.scaling
