"""ChunkEngine and post-processing: robot units in and out, RTC prefixes, and request checks."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from actor.engine import ChunkEngine, ChunkRequest, EngineConfig, InvalidRequest, RtcPrefix
from actor.postprocess import ActionLimits, to_model_actions, to_robot_actions
from policy.batching import Row
from policy.normalize import EPSILON, NormStats, normalize
from policy.prompts import tokenize_actor

ACTION_DIMS = 7
# Same bound as the sampler-level RTC test (measured worst 0.21 there), in normalized units.
PREFIX_TOLERANCE = 0.3


def _stats(dim: int, seed: int) -> NormStats:
    rng = np.random.default_rng(seed)
    q01 = rng.uniform(-2.0, -0.5, dim)
    return NormStats(rng.normal(size=dim), rng.uniform(0.5, 2.0, dim), q01, q01 + rng.uniform(0.5, 3.0, dim))


@pytest.fixture(scope="module")
def norm_stats(tiny_config):
    return {"state": _stats(tiny_config.action_dim, 1), "actions": _stats(tiny_config.action_dim, 2)}


def _request(seed: int, **changes) -> ChunkRequest:
    rng = np.random.default_rng(seed)
    request = ChunkRequest(
        images={
            "base_0_rgb": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
            "left_wrist_0_rgb": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
        },
        task="Put the red cube in the bowl",
        subtask=["pick up the red cube", "move to the bowl", "open the gripper", "lift the cube"][seed % 4],
        state=rng.normal(size=8).astype(np.float32),
        seed=seed,
    )
    return dataclasses.replace(request, **changes)


def test_to_robot_actions_unnormalizes_crops_and_clips(norm_stats):
    stats = norm_stats["actions"]
    chunk = np.random.default_rng(3).normal(size=(2, 10, 8)).astype(np.float32)
    quantile = (chunk + 1) / 2 * (stats.q99 - stats.q01 + EPSILON) + stats.q01
    zscore = chunk * (stats.std + EPSILON) + stats.mean
    out = to_robot_actions(chunk, stats, action_dims=ACTION_DIMS, use_quantiles=True)
    assert out.dtype == np.float32 and out.shape == (2, 10, ACTION_DIMS)
    np.testing.assert_allclose(out, quantile[..., :ACTION_DIMS], rtol=1e-6, atol=1e-6)
    by_zscore = to_robot_actions(chunk, stats, action_dims=ACTION_DIMS, use_quantiles=False)
    np.testing.assert_allclose(by_zscore, zscore[..., :ACTION_DIMS], rtol=1e-6, atol=1e-6)
    head = slice(0, ACTION_DIMS)
    narrow = NormStats(stats.mean[head], stats.std[head], stats.q01[head], stats.q99[head])
    by_narrow = to_robot_actions(chunk, narrow, action_dims=ACTION_DIMS, use_quantiles=True)
    np.testing.assert_allclose(by_narrow, out, rtol=1e-6)
    low, high = np.float32(-0.5), np.linspace(0.1, 0.7, ACTION_DIMS, dtype=np.float32)
    limits = ActionLimits(low, high)
    clipped = to_robot_actions(chunk, stats, action_dims=ACTION_DIMS, use_quantiles=True, limits=limits)
    np.testing.assert_array_equal(clipped, np.clip(out, low, high))


def test_robot_units_round_trip_through_the_model_space(norm_stats):
    robot = np.random.default_rng(4).normal(size=(6, ACTION_DIMS)).astype(np.float32)
    for use_quantiles in (True, False):
        model_space = to_model_actions(robot, norm_stats["actions"], use_quantiles=use_quantiles)
        padded = np.concatenate([model_space, np.zeros((6, 1), np.float32)], axis=-1)
        back = to_robot_actions(padded, norm_stats["actions"], action_dims=ACTION_DIMS, use_quantiles=use_quantiles)
        np.testing.assert_allclose(back, robot, rtol=1e-5, atol=1e-5)


def test_postprocessing_rejects_bad_settings(norm_stats):
    chunk = np.zeros((10, 8), np.float32)
    with pytest.raises(ValueError, match="action_dims must be in"):
        to_robot_actions(chunk, norm_stats["actions"], action_dims=9, use_quantiles=True)
    with pytest.raises(ValueError, match="limits low must be <= high"):
        ActionLimits(1.0, 0.0)
    with pytest.raises(ValueError, match="limits low has 3 dims and high 2"):
        ActionLimits(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="limits high has 3 dims, the actions have 7"):
        limits = ActionLimits(0, np.ones(3))
        to_robot_actions(chunk, norm_stats["actions"], action_dims=7, use_quantiles=True, limits=limits)
    with pytest.raises(ValueError, match="actions have 9 dims"):
        to_model_actions(np.zeros((2, 9)), norm_stats["actions"], use_quantiles=True)


def test_engine_matches_the_manual_pipeline(tiny_sampler, actor_tokenizer, norm_stats, tiny_config):
    limits = ActionLimits(-3.0, np.full(ACTION_DIMS, 2.5))
    config = EngineConfig(action_dims=ACTION_DIMS, state_in_prompt=True, limits=limits)
    engine = ChunkEngine(tiny_sampler, actor_tokenizer, norm_stats, config)
    requests = [_request(1), _request(2), _request(3)]
    results = engine.run(requests)

    rows = []
    for request in requests:
        state = normalize(request.state, norm_stats["state"], use_quantiles=True).astype(np.float32)
        prompt = tokenize_actor(
            actor_tokenizer, request.task, request.subtask, max_len=tiny_config.max_token_len, state=state
        )
        rows.append(Row(request.images, prompt, state))
    chunks = tiny_sampler.sample(rows, seed=[r.seed for r in requests])
    expected = to_robot_actions(
        chunks, norm_stats["actions"], action_dims=ACTION_DIMS, use_quantiles=True, limits=limits
    )
    for result, want in zip(results, expected, strict=True):
        assert result.actions.dtype == np.float32 and result.actions.shape == (tiny_config.action_horizon, ACTION_DIMS)
        np.testing.assert_allclose(result.actions, want, rtol=1e-6, atol=1e-6)
        assert result.actions.min() >= -3.0 and result.actions.max() <= 2.5
        timings = result.timings
        assert timings.batch_size == 3 and 0 < timings.prefill_ms and 0 < timings.denoise_ms
        assert timings.prefill_ms + timings.denoise_ms <= timings.total_ms
    assert not np.allclose(results[0].actions, results[1].actions)


def test_engine_rtc_continues_the_previous_chunk_in_robot_units(tiny_sampler, actor_tokenizer, norm_stats):
    engine = ChunkEngine(tiny_sampler, actor_tokenizer, norm_stats, EngineConfig(action_dims=ACTION_DIMS))
    first = engine.run([_request(seed) for seed in range(4)])
    executed = [3, 3, 5, 8]
    delays = [2, 0, 3, 5]
    prefixes = [RtcPrefix(r.actions[s:], d) for r, s, d in zip(first, executed, delays, strict=True)]
    guided = engine.run([_request(seed + 10, rtc=prefix) for seed, prefix in enumerate(prefixes)])
    unguided = engine.run([_request(seed + 10) for seed in range(4)])

    stats = norm_stats["actions"]
    for prefix, new, free in zip(prefixes, guided, unguided, strict=True):
        committed = min(prefix.inference_delay, len(prefix.queued_actions))
        if committed == 0:
            continue
        target = to_model_actions(prefix.queued_actions[:committed], stats, use_quantiles=True)
        gap = np.abs(to_model_actions(new.actions[:committed], stats, use_quantiles=True) - target).max()
        free_gap = np.abs(to_model_actions(free.actions[:committed], stats, use_quantiles=True) - target).max()
        assert gap <= PREFIX_TOLERANCE < free_gap


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task": "  "}, "task"),
        ({"subtask": "."}, "subtask"),
        ({"images": {}}, "images"),
        ({"images": {"top_cam": np.zeros((8, 8, 3), np.uint8)}}, "images['top_cam']"),
        ({"images": {"base_0_rgb": np.zeros((8, 8, 3), np.float32)}}, "images['base_0_rgb']"),
        ({"images": {"base_0_rgb": np.zeros((8, 8), np.uint8)}}, "images['base_0_rgb']"),
        ({"state": np.array([0.0, np.nan])}, "state"),
        ({"state": np.zeros(9)}, "state"),
        ({"state": np.zeros((2, 2))}, "state"),
        ({"state": None}, "state"),
        ({"rtc": RtcPrefix(np.zeros((3, 6)), 1)}, "rtc.queued_actions"),
        ({"rtc": RtcPrefix(np.zeros((11, 7)), 1)}, "rtc.queued_actions"),
        ({"rtc": RtcPrefix(np.full((3, 7), np.inf), 1)}, "rtc.queued_actions"),
        ({"rtc": RtcPrefix(np.zeros((3, 7)), -1)}, "rtc.inference_delay"),
        ({"rtc": RtcPrefix(np.zeros((3, 7)), 1.5)}, "rtc.inference_delay"),
    ],
)
def test_bad_requests_name_the_field(tiny_sampler, actor_tokenizer, norm_stats, changes, field):
    engine = ChunkEngine(
        tiny_sampler, actor_tokenizer, norm_stats, EngineConfig(action_dims=ACTION_DIMS, state_in_prompt=True)
    )
    compiles = tiny_sampler.compile_count
    with pytest.raises(InvalidRequest) as caught:
        engine.run([_request(0), _request(1, **changes)])
    assert caught.value.field == field and caught.value.index == 1
    assert str(caught.value).startswith(f"{field}: ")
    assert tiny_sampler.compile_count == compiles


def test_the_prompt_state_follows_the_checkpoint_unless_configured(tiny_sampler, actor_tokenizer, norm_stats):
    discrete = copy.copy(tiny_sampler)
    discrete.cfg = tiny_sampler.cfg.replace(discrete_state_input=True)
    assert ChunkEngine(discrete, actor_tokenizer, norm_stats, EngineConfig(action_dims=ACTION_DIMS)).state_in_prompt
    assert not ChunkEngine(
        tiny_sampler, actor_tokenizer, norm_stats, EngineConfig(action_dims=ACTION_DIMS)
    ).state_in_prompt
    forced = EngineConfig(action_dims=ACTION_DIMS, state_in_prompt=False)
    assert not ChunkEngine(discrete, actor_tokenizer, norm_stats, forced).state_in_prompt


def test_engine_config_errors(tiny_sampler, actor_tokenizer, norm_stats):
    with pytest.raises(ValueError, match="action_dims must be >= 1"):
        EngineConfig(action_dims=0)
    with pytest.raises(ValueError, match="max_guidance_weight"):
        EngineConfig(action_dims=7, max_guidance_weight=float("inf"))
    with pytest.raises(ValueError, match=r"action_dims must be in \[1, 8\]"):
        ChunkEngine(tiny_sampler, actor_tokenizer, norm_stats, EngineConfig(action_dims=9))
    with pytest.raises(ValueError, match="limits low has 3 dims, the actions have 7"):
        ChunkEngine(tiny_sampler, actor_tokenizer, norm_stats, EngineConfig(7, limits=ActionLimits(np.zeros(3), 1.0)))
    with pytest.raises(ValueError, match="'actions' entry"):
        ChunkEngine(tiny_sampler, actor_tokenizer, {"state": norm_stats["state"]}, EngineConfig(action_dims=7))


def test_noise_scale_narrows_the_flow_start_and_zero_makes_chunks_seed_free(tiny_sampler, actor_tokenizer, norm_stats):
    def chunks(scale: float, seed: int) -> np.ndarray:
        engine = ChunkEngine(tiny_sampler, actor_tokenizer, norm_stats, EngineConfig(ACTION_DIMS, noise_scale=scale))
        return engine.run([dataclasses.replace(_request(0), seed=seed)])[0].actions

    np.testing.assert_allclose(chunks(0.0, 1), chunks(0.0, 2), atol=1e-6)
    assert np.abs(chunks(1.0, 1) - chunks(1.0, 2)).max() > 1e-3
    spread_full = np.abs(chunks(1.0, 1) - chunks(1.0, 2)).mean()
    spread_narrow = np.abs(chunks(0.3, 1) - chunks(0.3, 2)).mean()
    assert spread_narrow < spread_full
    with pytest.raises(ValueError, match="noise_scale"):
        EngineConfig(ACTION_DIMS, noise_scale=-0.1)
