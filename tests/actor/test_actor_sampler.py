"""FlowSampler: openpi parity, batching, compile reuse, seeds and argument checks."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest

from actor.sampler import CompileEvent, FlowSampler

SHARED_FIXTURE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "openpi_pi05_dummy"

PARITY_TOLERANCE = 1e-4
BATCH_TOLERANCE = 1e-5


def _row(obs, index: int):
    return jax.tree.map(lambda x: x[index : index + 1], obs)


@pytest.mark.skipif(not (SHARED_FIXTURE / "io.npz").exists(), reason="openpi fixture not present")
def test_sampler_reproduces_openpi_sample_actions():
    from policy import checkpoint
    from policy.parity import _fixture_input, config_from_meta

    cfg = config_from_meta(json.loads((SHARED_FIXTURE / "meta.json").read_text()))
    model = checkpoint.load_model(cfg, SHARED_FIXTURE / "params", dtype=cfg.dtype)
    io = dict(np.load(SHARED_FIXTURE / "io.npz"))
    sampler = FlowSampler(model, cfg, num_steps=10, buckets=(io["noise"].shape[0],))
    actions = sampler.sample(_fixture_input(io, cfg), noise=io["noise"])
    assert actions.dtype == np.float32
    assert np.max(np.abs(actions - io["sample_actions"])) <= PARITY_TOLERANCE


def test_batched_rows_match_each_row_alone(tiny_sampler, tiny_config, make_input):
    obs = make_input(tiny_config, 3, [5, 17, 30], seed=4)
    seeds = [11, 12, 13]
    batched = tiny_sampler.run(obs, seed=seeds)
    assert batched.bucket == 4 and batched.actions.shape == (3, tiny_config.action_horizon, tiny_config.action_dim)
    for i, seed in enumerate(seeds):
        alone = tiny_sampler.sample(_row(obs, i), seed=[seed])
        np.testing.assert_allclose(batched.actions[i], alone[0], atol=BATCH_TOLERANCE, rtol=0)


def test_explicit_noise_equals_seeded_noise_and_seeds_differ(tiny_sampler, tiny_config, make_input):
    obs = make_input(tiny_config, 1, [9], seed=5)
    shape = (1, tiny_config.action_horizon, tiny_config.action_dim)
    noise = np.random.default_rng(7).standard_normal(shape, np.float32)
    from_noise = tiny_sampler.sample(obs, noise=noise)
    np.testing.assert_array_equal(from_noise, tiny_sampler.sample(obs, seed=7))
    assert np.max(np.abs(from_noise - tiny_sampler.sample(obs, seed=8))) > 0.1


def test_each_bucket_compiles_once_and_is_reused(tiny_sampler, tiny_config, make_input):
    obs4 = make_input(tiny_config, 4, [3, 8, 13, 21], seed=6)
    for rows in (1, 3, 4, 1, 4, 3):
        tiny_sampler.sample(jax.tree.map(lambda x, n=rows: x[:n], obs4), seed=rows)
    seen = list(tiny_sampler.compiles)
    for rows in (4, 1, 3):
        tiny_sampler.sample(jax.tree.map(lambda x, n=rows: x[:n], obs4), seed=rows + 10)
    assert tiny_sampler.compiles == seen
    assert len(set(seen)) == len(seen)
    for bucket in (1, 4):
        assert CompileEvent("prefix", bucket, guided=False) in seen
        assert CompileEvent("denoise", bucket, guided=False) in seen


def test_bad_arguments_name_what_is_wrong(tiny_sampler, tiny_model, tiny_config, make_input):
    obs = make_input(tiny_config, 2, [4, 6])
    with pytest.raises(ValueError, match="noise must have shape"):
        tiny_sampler.sample(obs, noise=np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="noise or a seed"):
        tiny_sampler.sample(obs)
    with pytest.raises(ValueError, match="seed has 1 entries for 2 rows"):
        tiny_sampler.sample(obs, seed=[1])
    with pytest.raises(ValueError, match="rtc has 1 entries for 2 rows"):
        tiny_sampler.sample(obs, seed=0, rtc=[None])
    too_many = make_input(tiny_config, 5, [4] * 5)
    with pytest.raises(ValueError, match="largest batch bucket 4"):
        tiny_sampler.sample(too_many, seed=0)
    with pytest.raises(ValueError, match="num_steps"):
        FlowSampler(tiny_model, tiny_config, num_steps=0)
