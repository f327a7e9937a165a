"""Real-time chunking (Black, Galliker, Levine 2025, "Real-Time Execution of Action Chunking Flow Policies").

While a new chunk is computed the robot keeps executing the previous one, so the new chunk must continue it:
its first d actions (the inference delay) are already committed, and the next ones should blend smoothly.
RTC treats this as inpainting: at every Euler step it pulls the predicted clean chunk towards the previous
chunk's remaining actions, with soft per-step weights, via a vector-Jacobian product (Pi-GDM guidance).

Sign derivation for openpi's time convention. The paper integrates tau from 0 (noise) to 1 (data):
    A^tau = tau*A + (1-tau)*eps,  u = A - eps,  A^{tau+D} = A^tau + D*(u + g * J^T (W*(Y - A1hat))),  D = 1/N,
    A1hat = A^tau + (1-tau)*u,  J = dA1hat/dA^tau.
openpi integrates t from 1 (noise) to 0 (data): t = 1 - tau, x_t = A^tau, v = eps - A = -u, dt = -D, so
    x0hat = x_t - t*v = A1hat   and   x_t + D*(u + g*J^T e) = x_t + dt*(v - g*J^T e),   e = W*(Y - x0hat).
So the guided openpi velocity is  v - g * J^T e  (J = dx0hat/dx_t), and the Euler step stays x_t + dt*v_guided.
With J ~ I this moves x_t by +D*g*e, i.e. towards Y, as it should.

Guidance weight: g = min(beta, (1-tau) / (tau * r^2)),  r^2 = (1-tau)^2 / (tau^2 + (1-tau)^2), which simplifies to
    (tau^2 + (1-tau)^2) / (tau*(1-tau)) = (t^2 + (1-t)^2) / (t*(1-t))
(symmetric in t and tau). It is infinite at t=1 (the first step, pure noise) and t=0, where the cap beta applies;
the denominator is floored so no inf or NaN is ever formed.

Shapes: B batch, H horizon, D action dim (the model's padded one).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

DEFAULT_MAX_GUIDANCE_WEIGHT = 5.0
_MIN_TIME_PRODUCT = 1e-12


@dataclasses.dataclass(frozen=True)
class NormalizedRtcPrefix:
    """One row's RTC prefix in the model's normalized action space (the engine normalizes an `RtcPrefix`).

    queued_actions [L,k]: the previous chunk's actions from the new chunk's step 0 on (those not yet executed
    when the observation was taken); k <= D, and only those k dims are guided (the rest are padding the robot
    never sees). inference_delay: actions that will execute while the new chunk is computed. execution_horizon s:
    defaults to H - L, so every given action is used; indices >= H - s are left to the model.
    """

    queued_actions: np.ndarray
    inference_delay: int
    execution_horizon: int | None = None
    max_guidance_weight: float = DEFAULT_MAX_GUIDANCE_WEIGHT


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Per-row guidance arrays for a batch: target Y [B,H,D], weights W [B,H,D], cap beta [B]."""

    target: jax.Array | np.ndarray
    weights: jax.Array | np.ndarray
    max_weight: jax.Array | np.ndarray


jax.tree_util.register_dataclass(Guidance, data_fields=["target", "weights", "max_weight"], meta_fields=[])


def prefix_weights(horizon: int, delay: int, execution_horizon: int) -> np.ndarray:
    """W [H]: 1 on the committed first d steps, exponential decay to 0 at index H-s, then 0 (paper eq. 5)."""
    overlap = horizon - execution_horizon
    if horizon <= 0:
        raise ValueError(f"horizon must be positive, got {horizon}")
    if not 0 <= execution_horizon <= horizon:
        raise ValueError(f"execution_horizon must be in [0, {horizon}], got {execution_horizon}")
    if not 0 <= delay <= overlap:
        raise ValueError(f"delay must be in [0, horizon - execution_horizon = {overlap}], got {delay}")
    index = np.arange(horizon, dtype=np.float64)
    c = np.clip((overlap - index) / (overlap - delay + 1), 0.0, 1.0)
    decay = c * np.expm1(c) / (math.e - 1.0)
    weights = np.where(index < delay, 1.0, np.where(index < overlap, decay, 0.0))
    return weights.astype(np.float32)


def guidance_weight(t: ArrayLike, max_weight: ArrayLike) -> jax.Array:
    """min(beta, (t^2+(1-t)^2)/(t(1-t))) in openpi time t; finite everywhere, beta at t in {0, 1}."""
    t = jnp.asarray(t, jnp.float32)
    ratio = (jnp.square(t) + jnp.square(1.0 - t)) / jnp.maximum(t * (1.0 - t), _MIN_TIME_PRODUCT)
    return jnp.minimum(jnp.asarray(max_weight, jnp.float32), ratio)


def guided_velocity(
    velocity_fn: Callable[[jax.Array], jax.Array], x_t: jax.Array, t: jax.Array, guidance: Guidance
) -> jax.Array:
    """v(x_t) - g * J^T (W*(Y - x0hat)), J = d x0hat / d x_t, x0hat = x_t - t*v(x_t) (see module docstring).

    `velocity_fn` maps x_t [B,H,D] to v [B,H,D] at the current t (e.g. the action expert against a cached
    prefix); rows are independent in it, so one batched VJP gives every row its own J^T e. t is a scalar.
    """

    def clean_estimate(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        v = velocity_fn(x)
        return x - t * v.astype(x.dtype), v

    x0_hat, pullback, v = jax.vjp(clean_estimate, x_t, has_aux=True)
    error = guidance.weights * (guidance.target - x0_hat)
    (correction,) = pullback(error.astype(x0_hat.dtype))
    g = guidance_weight(t, guidance.max_weight)[:, None, None]
    return v.astype(x_t.dtype) - g * correction


def guidance_for_rows(
    prefixes: Sequence[NormalizedRtcPrefix | None], batch: int, horizon: int, action_dim: int
) -> Guidance:
    """Host-side Guidance for a padded batch; rows without an RTC prefix (and padding rows) get W = 0."""
    if len(prefixes) > batch:
        raise ValueError(f"rtc has {len(prefixes)} entries for a batch of {batch} rows")
    target = np.zeros((batch, horizon, action_dim), np.float32)
    weights = np.zeros((batch, horizon, action_dim), np.float32)
    max_weight = np.zeros(batch, np.float32)
    for row, prefix in enumerate(prefixes):
        if prefix is None:
            continue
        prev = _checked_queued_actions(prefix, row, horizon, action_dim)
        steps, dims = prev.shape
        execution_horizon = horizon - steps if prefix.execution_horizon is None else prefix.execution_horizon
        if steps < horizon - execution_horizon:
            raise ValueError(
                f"rtc[{row}].queued_actions has {steps} steps; execution_horizon {execution_horizon} needs "
                f"at least {horizon - execution_horizon}"
            )
        try:
            w = prefix_weights(horizon, int(prefix.inference_delay), execution_horizon)
        except ValueError as err:
            raise ValueError(f"rtc[{row}]: {err}") from err
        beta = prefix.max_guidance_weight
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"rtc[{row}].max_guidance_weight must be finite and >= 0, got {beta}")
        target[row, :steps, :dims] = prev
        weights[row, :, :dims] = w[:, None]
        max_weight[row] = beta
    return Guidance(target, weights, max_weight)


def _checked_queued_actions(prefix: NormalizedRtcPrefix, row: int, horizon: int, action_dim: int) -> np.ndarray:
    prev = np.asarray(prefix.queued_actions, np.float32)
    if prev.ndim != 2:
        raise ValueError(f"rtc[{row}].queued_actions must be [steps, dims], got shape {list(prev.shape)}")
    if prev.shape[0] > horizon or prev.shape[1] > action_dim:
        raise ValueError(
            f"rtc[{row}].queued_actions has shape {list(prev.shape)}; at most [{horizon}, {action_dim}] fits the model"
        )
    if not np.isfinite(prev).all():
        raise ValueError(f"rtc[{row}].queued_actions holds NaN or inf")
    return prev
