"""Real-time chunking: prefix weights, guidance weight, the guided velocity's maths, and its effect on chunks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actor.rtc import Guidance, NormalizedRtcPrefix, guidance_for_rows, guidance_weight, guided_velocity, prefix_weights

# Measured on the tiny random model over 3 observations x 4 rows x 7 (d, s) settings: the committed prefix
# stayed within 0.21 of the previous chunk with RTC (normalized units; chunk values span about +-4), while
# without RTC the closest row was 1.55 away; past H-s the guided chunk stayed within 0.084 of the unguided one.
PREFIX_TOLERANCE = 0.3
UNGUIDED_PREFIX_MIN_GAP = 1.0
TAIL_TOLERANCE = 0.15


def _paper_weight(horizon: int, delay: int, execution_horizon: int, i: int) -> float:
    c = (horizon - execution_horizon - i) / (horizon - execution_horizon - delay + 1)
    return c * (math.exp(c) - 1) / (math.e - 1)


def test_prefix_weights_follow_the_paper():
    horizon, delay, execution_horizon = 10, 2, 3
    w = prefix_weights(horizon, delay, execution_horizon)
    assert w.dtype == np.float32 and w.shape == (horizon,)
    np.testing.assert_array_equal(w[:delay], 1.0)
    np.testing.assert_array_equal(w[horizon - execution_horizon :], 0.0)
    assert w[2] == pytest.approx(_paper_weight(10, 2, 3, 2), rel=1e-6)
    assert w[2] == pytest.approx((5 / 6) * math.expm1(5 / 6) / (math.e - 1), rel=1e-6)
    assert w[6] == pytest.approx(_paper_weight(10, 2, 3, 6), rel=1e-6)
    decay = w[delay : horizon - execution_horizon]
    assert np.all(np.diff(decay) < 0) and np.all((decay > 0) & (decay < 1))


def test_prefix_weights_edge_cases_and_errors():
    np.testing.assert_array_equal(prefix_weights(6, 4, 2), [1, 1, 1, 1, 0, 0])
    assert prefix_weights(6, 0, 0)[0] == pytest.approx(_paper_weight(6, 0, 0, 0), rel=1e-6)
    np.testing.assert_array_equal(prefix_weights(6, 0, 6), 0.0)
    with pytest.raises(ValueError, match="delay"):
        prefix_weights(10, 5, 6)
    with pytest.raises(ValueError, match="execution_horizon"):
        prefix_weights(10, 0, 11)


def test_guidance_weight_is_capped_finite_and_matches_the_paper():
    t = jnp.array([1.0, 1.0 - 1e-7, 0.7, 0.5, 1e-7, 0.0])
    g = np.asarray(guidance_weight(t, jnp.full(6, 5.0)))
    assert np.all(np.isfinite(g)) and np.all(g <= 5.0)
    tau = 1 - 0.7
    r2 = (1 - tau) ** 2 / (tau**2 + (1 - tau) ** 2)
    assert g[2] == pytest.approx((1 - tau) / (tau * r2), rel=1e-5)
    assert g[3] == pytest.approx(2.0, rel=1e-6)
    assert g[0] == g[1] == g[4] == g[5] == 5.0
    assert float(guidance_weight(jnp.float32(0.5), jnp.float32(1.0))) == 1.0


def _linear_velocity(horizon: int, dims: int, seed: int):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(horizon * dims, horizon * dims)).astype(np.float32) * 0.3
    offset = rng.normal(size=(horizon * dims,)).astype(np.float32)

    def velocity(x: jax.Array) -> jax.Array:
        return (x.reshape(x.shape[0], -1) @ matrix.T + offset).reshape(x.shape)

    return velocity, matrix, offset


def test_guided_velocity_is_v_minus_g_jacobian_transpose_error():
    horizon, dims, t = 4, 3, 0.7
    velocity, matrix, offset = _linear_velocity(horizon, dims, seed=0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, horizon, dims)).astype(np.float32)
    target = rng.normal(size=(1, horizon, dims)).astype(np.float32)
    weights = np.broadcast_to(prefix_weights(horizon, 1, 1)[None, :, None], (1, horizon, dims)).astype(np.float32)
    guided = guided_velocity(velocity, jnp.asarray(x), jnp.float32(t), Guidance(target, weights, np.array([5.0])))

    v = matrix @ x.ravel() + offset
    jacobian = np.eye(horizon * dims) - t * matrix
    error = weights.ravel() * (target.ravel() - (x.ravel() - t * v))
    g = min(5.0, (t**2 + (1 - t) ** 2) / (t * (1 - t)))
    np.testing.assert_allclose(np.asarray(guided).ravel(), v - g * jacobian.T @ error, rtol=1e-4, atol=1e-4)


def test_a_guided_euler_step_moves_towards_the_target():
    """openpi steps with dt < 0, so the correction must be subtracted from v for the step to approach Y."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(1, 5, 2)), jnp.float32)
    target = rng.normal(size=(1, 5, 2)).astype(np.float32)
    guidance = Guidance(target, np.ones((1, 5, 2), np.float32), np.array([5.0], np.float32))
    t, dt = jnp.float32(0.6), -0.1
    stepped = x + dt * guided_velocity(jnp.zeros_like, x, t, guidance)
    assert np.linalg.norm(stepped - target) < np.linalg.norm(np.asarray(x) - target)


def test_guidance_rows_pad_dims_and_reject_bad_requests():
    prev = np.ones((6, 3), np.float32)
    guidance = guidance_for_rows([None, NormalizedRtcPrefix(prev, inference_delay=2)], batch=4, horizon=8, action_dim=5)
    assert guidance.weights.shape == (4, 8, 5)
    np.testing.assert_array_equal(guidance.weights[[0, 2, 3]], 0.0)
    np.testing.assert_array_equal(guidance.weights[1, :, 3:], 0.0)
    np.testing.assert_array_equal(guidance.weights[1, :, 0], prefix_weights(8, 2, 2))
    np.testing.assert_array_equal(guidance.target[1, :6, :3], prev)
    with pytest.raises(ValueError, match=r"rtc\[0\]\.queued_actions has shape \[6, 6\]"):
        guidance_for_rows([NormalizedRtcPrefix(np.ones((6, 6)), 1)], 1, 8, 5)
    with pytest.raises(ValueError, match=r"rtc\[0\]: delay must be in \[0, .* = 6\]"):
        guidance_for_rows([NormalizedRtcPrefix(prev, 7)], 1, 8, 5)
    with pytest.raises(ValueError, match=r"rtc\[0\]\.queued_actions holds NaN"):
        guidance_for_rows([NormalizedRtcPrefix(np.full((2, 2), np.nan), 1)], 1, 8, 5)
    with pytest.raises(ValueError, match="execution_horizon 1 needs at least 7"):
        guidance_for_rows([NormalizedRtcPrefix(prev, 1, execution_horizon=1)], 1, 8, 5)


def test_rtc_commits_the_prefix_and_leaves_the_tail_to_the_model(tiny_sampler, tiny_config, make_input):
    horizon = tiny_config.action_horizon
    delay, execution_horizon = 3, 3
    overlap = horizon - execution_horizon
    obs = make_input(tiny_config, 4, [5, 12, 20, 33], seed=1)
    seeds = [21, 22, 23, 24]
    unguided = tiny_sampler.sample(obs, seed=seeds)
    previous = tiny_sampler.sample(obs, seed=[s + 50 for s in seeds])[:, :overlap]
    rtc = [
        NormalizedRtcPrefix(previous[0], delay),
        None,
        NormalizedRtcPrefix(previous[2], delay),
        NormalizedRtcPrefix(previous[3], delay),
    ]
    guided = tiny_sampler.sample(obs, seed=seeds, rtc=rtc)

    rtc_rows = [0, 2, 3]
    guided_gap = np.abs(guided[rtc_rows, :delay] - previous[rtc_rows, :delay]).max()
    unguided_gap = np.abs(unguided[:, :delay] - previous[:, :delay]).max(axis=(1, 2))
    assert guided_gap <= PREFIX_TOLERANCE
    assert unguided_gap.min() > UNGUIDED_PREFIX_MIN_GAP
    assert np.abs(guided[rtc_rows, overlap:] - unguided[rtc_rows, overlap:]).max() <= TAIL_TOLERANCE
    np.testing.assert_allclose(guided[1], unguided[1], atol=1e-5, rtol=0)
