"""A checkpoint says how its states and actions were normalized, and serving follows it: a pi0 trained with
quantiles serves with quantiles; openpi's rule (quantiles for pi0.5, z-scores for pi0) is only for checkpoints
that do not say."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from actor.engine import ChunkEngine, ChunkRequest, EngineConfig
from actor.postprocess import to_robot_actions
from planner.decoder import SubtaskDecoder
from policy.batching import Row
from policy.checkpoint import init_params
from policy.model_dir import CONFIG_FILE, ModelDir
from policy.normalize import NormStats, normalize
from policy.prompts import tokenize_actor
from policy.tokenizer import TextTokenizer, train_tokenizer
from training.checkpoints import Checkpoints
from training.config import DataConfig
from training.lerobot import Frame
from training.samples import SampleMaker
from training.state import TrainState

ACTION_DIMS = 7
TASK, SUBTASK = "put the red cube in the bowl", "pick up the red cube"


def _stats(dim: int, seed: int) -> NormStats:
    """Stats whose quantile and z-score normalizations differ everywhere."""
    rng = np.random.default_rng(seed)
    q01 = rng.uniform(-2.0, -0.5, dim)
    return NormStats(rng.normal(size=dim), rng.uniform(0.5, 2.0, dim), q01, q01 + rng.uniform(0.5, 3.0, dim))


@pytest.fixture(scope="module")
def pi0(tiny_config):
    return tiny_config.replace(pi05=False, quantile_norm=True)


@pytest.fixture(scope="module")
def norm_stats(pi0):
    return {"state": _stats(pi0.action_dim, 1), "actions": _stats(pi0.action_dim, 2)}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, pi0) -> TextTokenizer:
    path = tmp_path_factory.mktemp("tokenizer") / "tiny.model"
    return TextTokenizer(train_tokenizer(path, vocab_size=pi0.vocab_size, extra_text=(TASK, SUBTASK)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, pi0, norm_stats, tokenizer):
    """A pi0 checkpoint as training writes it."""
    params = init_params(pi0, seed=0, perturb_std=0.05)
    state = TrainState(step=jnp.zeros((), jnp.int32), trainable=params, frozen={}, opt_state=jnp.zeros(()), ema=None)
    checkpoints = Checkpoints(tmp_path_factory.mktemp("run"))
    try:
        out = checkpoints.save(
            1, state, model_config=pi0, tokenizer_path=tokenizer.path, norm_stats=norm_stats, asset_id="default"
        )
    finally:
        checkpoints.close()
    return out


def test_training_normalizes_a_pi0_with_the_quantiles_its_config_asks_for(pi0, norm_stats, tokenizer):
    rng = np.random.default_rng(0)
    frame = Frame(
        images={},
        state=rng.normal(size=8).astype(np.float32),
        actions=rng.normal(size=(pi0.action_horizon, ACTION_DIMS)).astype(np.float32),
        action_is_pad=np.zeros(pi0.action_horizon, bool),
        task=TASK,
        subtask=SUBTASK,
        episode_index=0,
        frame_index=0,
    )
    sample = SampleMaker(pi0, DataConfig(cameras=(), augment=False), tokenizer, norm_stats)(frame, rng)
    state = normalize(frame.state, norm_stats["state"], use_quantiles=True)
    actions = normalize(frame.actions, norm_stats["actions"], use_quantiles=True)
    np.testing.assert_allclose(sample["state"][:8], state, rtol=1e-6)
    np.testing.assert_allclose(sample["actions"][:, :ACTION_DIMS], actions, rtol=1e-6)


def test_a_pi0_checkpoint_trained_with_quantiles_serves_with_quantiles(checkpoint, norm_stats, tokenizer):
    assert json.loads((checkpoint / CONFIG_FILE).read_text())["quantile_norm"] is True
    model_dir = ModelDir.open(checkpoint)
    assert not model_dir.config.pi05 and model_dir.config.use_quantiles

    engine = ChunkEngine.from_model_dir(model_dir, EngineConfig(action_dims=ACTION_DIMS), buckets=(1,))
    rng = np.random.default_rng(1)
    request = ChunkRequest(
        images={"base_0_rgb": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)},
        task=TASK,
        subtask=SUBTASK,
        state=rng.normal(size=8).astype(np.float32),
        seed=3,
    )
    [result] = engine.run([request])
    state = normalize(request.state, norm_stats["state"], use_quantiles=True).astype(np.float32)
    prompt = tokenize_actor(tokenizer, TASK, SUBTASK, max_len=model_dir.config.max_token_len)
    chunk = engine.sampler.sample([Row(request.images, prompt, state)], seed=[3])
    expected = to_robot_actions(chunk, norm_stats["actions"], action_dims=ACTION_DIMS, use_quantiles=True)
    np.testing.assert_allclose(result.actions, expected[0], rtol=1e-5, atol=1e-5)
    by_zscore = to_robot_actions(chunk, norm_stats["actions"], action_dims=ACTION_DIMS, use_quantiles=False)
    assert not np.allclose(result.actions, by_zscore[0], atol=1e-2)

    decoder = SubtaskDecoder(
        model_dir.load_model(), tokenizer, model_dir.config, norm_stats=model_dir.norm_stats, use_state=True
    )
    np.testing.assert_array_equal(decoder.normalized_state(request.state, "request"), state)


@pytest.mark.parametrize(("pi05", "quantiles"), [(True, True), (False, False)])
def test_a_checkpoint_that_does_not_say_follows_openpi(checkpoint, pi05, quantiles, tmp_path):
    config = json.loads((checkpoint / CONFIG_FILE).read_text())
    del config["quantile_norm"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "pi05": pi05}))
    assert ModelDir.open(tmp_path).config.use_quantiles is quantiles
