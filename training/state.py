"""The train state and the compiled train step.

Parameters are held as two nested dicts in openpi's layout: `trainable` (differentiated, in the optimizer)
and `frozen` (neither). Their union is the network's parameter tree. With EMA on, `ema` shadows `trainable`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from policy.checkpoint import flatten, unflatten
from training.losses import LossConfig, compute_losses
from training.samples import TrainBatch

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainState:
    step: jax.Array
    trainable: Params
    frozen: Params
    opt_state: optax.OptState
    ema: Params | None

    def params(self, *, use_ema: bool = True) -> Params:
        """The whole parameter tree (with the EMA weights when there are any and `use_ema`)."""
        live = self.ema if use_ema and self.ema is not None else self.trainable
        return merge(live, self.frozen)


jax.tree_util.register_dataclass(
    TrainState, data_fields=["step", "trainable", "frozen", "opt_state", "ema"], meta_fields=[]
)


def merge(*trees: Params) -> Params:
    combined: dict[str, Any] = {}
    for tree in trees:
        combined.update(flatten(tree))
    return unflatten(combined)


def split(params: Params, trainable_paths: set[str]) -> tuple[Params, Params]:
    flat = flatten(params)
    trainable = {k: v for k, v in flat.items() if k in trainable_paths}
    frozen = {k: v for k, v in flat.items() if k not in trainable_paths}
    return unflatten(trainable), unflatten(frozen)


def init_state(trainable: Params, frozen: Params, tx: optax.GradientTransformation, use_ema: bool) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        trainable=trainable,
        frozen=frozen,
        opt_state=tx.init(trainable),
        ema=jax.tree.map(jnp.copy, trainable) if use_ema else None,
    )


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_cfg: LossConfig,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    ema_decay: float | None,
    base_rng: jax.Array,
) -> Callable[[TrainState, TrainBatch], tuple[TrainState, dict[str, jax.Array]]]:
    """(state, batch) → (state after one update, metrics of this step). Pure; the caller jits it."""

    def loss_fn(trainable: Params, frozen: Params, batch: TrainBatch, rng: jax.Array):
        model = nnx.merge(graphdef, merge(trainable, frozen))
        return compute_losses(model, rng, batch, loss_cfg)

    def train_step(state: TrainState, batch: TrainBatch):
        rng = jax.random.fold_in(base_rng, state.step)
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable, state.frozen, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        ema = state.ema
        if ema is not None:
            assert ema_decay is not None  # a state has EMA weights only when the config sets ema_decay
            ema = jax.tree.map(lambda old, new: ema_decay * old + (1 - ema_decay) * new, ema, trainable)
        metrics = {
            "loss": loss,
            **terms,
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(trainable),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
        }
        new_state = dataclasses.replace(state, step=state.step + 1, trainable=trainable, opt_state=opt_state, ema=ema)
        return new_state, metrics

    return train_step
