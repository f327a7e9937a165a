"""Options for small models trained from scratch: the state as reserved-id tokens, and a convolutional stem."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from policy.checkpoint import init_params, load_model, model_from_params, param_shapes, save_params
from policy.config import ModelConfig, get_model_config
from policy.keypoints import expected_places
from policy.pi05 import Pi05, state_token_ids
from policy.siglip import SiglipConfig

STEM_VISION = SiglipConfig(width=32, depth=1, mlp_dim=64, num_heads=2, patch=8, image_size=32, stem=(8, 16))


@pytest.fixture(scope="module")
def small_config() -> ModelConfig:
    return get_model_config("tiny").replace(vision=STEM_VISION, state_tokens=16)


def test_state_token_ids_bin_each_dimension_into_its_own_reserved_range(small_config):
    cfg = small_config
    state = jnp.array([[-1.5, -1.0, -0.99, 0.0, 0.124, 0.126, 0.99, 1.5]])
    ids = np.asarray(state_token_ids(state, cfg))[0]
    offset, bins = cfg.state_token_offset, cfg.state_tokens
    assert offset == cfg.vocab_size - 8 * 16
    assert (ids - offset - np.arange(8) * bins).tolist() == [0, 0, 0, 8, 8, 9, 15, 15]


def test_state_tokens_change_the_actions_and_a_missing_state_is_refused(small_config, make_input):
    model = model_from_params(small_config, init_params(small_config, seed=0, perturb_std=0.05))
    obs = make_input(small_config, 2, [6, 9])
    noise = jax.random.normal(jax.random.key(1), (2, small_config.action_horizon, small_config.action_dim))
    moved = dataclasses.replace(obs, state=obs.state.at[0, 2].add(0.5))
    base = np.asarray(model.sample_actions(obs, noise))
    other = np.asarray(model.sample_actions(moved, noise))
    assert np.abs(base[0] - other[0]).max() > 1e-4  # row 0 read its changed state
    np.testing.assert_allclose(base[1], other[1], atol=1e-6)  # row 1 did not change
    embedded, input_mask, _ = model.embed_prefix(obs)
    assert embedded.shape[1] == len(small_config.image_keys) * STEM_VISION.num_tokens + 8 + small_config.max_token_len
    with pytest.raises(ValueError, match="state as tokens"):
        model.embed_prefix(dataclasses.replace(obs, state=None))


def test_state_token_rows_start_as_a_number_line(small_config):
    table = np.asarray(Pi05(small_config, rngs=nnx.Rngs(0)).PaliGemma.llm.embedder.input_embedding[...])
    rows = table[small_config.state_token_offset :].reshape(8, 16, -1)
    near = np.linalg.norm(rows[:, 1:] - rows[:, :-1], axis=-1).mean()
    far = np.linalg.norm(rows[:, 15] - rows[:, 0], axis=-1).mean()
    assert near < 0.5 * far


def test_state_tokens_that_do_not_fit_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match="do not fit a vocabulary"):
        get_model_config("tiny").replace(state_tokens=64)  # 8 dims × 64 bins = the whole 512-id vocabulary


def test_conv_stem_keeps_the_token_grid_and_round_trips_through_a_checkpoint(small_config, tmp_path, make_input):
    shapes = param_shapes(small_config)
    assert shapes["PaliGemma/img/stem/Conv_0/kernel"] == (3, 3, 3, 8)
    assert shapes["PaliGemma/img/stem/Conv_1/kernel"] == (3, 3, 8, 16)
    assert shapes["PaliGemma/img/embedding/kernel"] == (2, 2, 16, 32)  # the rest of the 8-pixel patch
    assert shapes["PaliGemma/img/pos_embedding"] == (1, 16, 32)
    params = init_params(small_config, seed=0, perturb_std=0.05)
    save_params(tmp_path / "params", params)
    restored = load_model(small_config, tmp_path)
    obs = make_input(small_config, 1, [5])
    noise = jnp.ones((1, small_config.action_horizon, small_config.action_dim))
    np.testing.assert_allclose(
        model_from_params(small_config, params).sample_actions(obs, noise),
        restored.sample_actions(obs, noise),
        atol=1e-6,
    )
    again = ModelConfig.from_dict(small_config.to_dict())
    assert again == small_config and again.vision.stem == (8, 16)


def test_conv_stem_needs_a_patch_its_stride_divides():
    with pytest.raises(ValueError, match="not divisible"):
        SiglipConfig(width=32, depth=1, mlp_dim=64, num_heads=2, patch=6, image_size=36, stem=(8, 16))


def test_expected_places_find_a_peaked_channel_and_average_a_flat_one():
    logits = np.zeros((1, 16, 16, 2), np.float32)
    logits[0, 3, 12, 0] = 50.0  # channel 0: one hot spot at row 3, column 12; channel 1: flat
    places, peak = expected_places(jnp.asarray(logits))
    np.testing.assert_allclose(places[0, 0], [12.5 / 16 * 2 - 1, 3.5 / 16 * 2 - 1], atol=1e-5)
    np.testing.assert_allclose(places[0, 1], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(peak[0], [1.0, 1 / 256], rtol=1e-5)


def test_keypoint_tokens_follow_a_dot_across_the_image(small_config, tmp_path):
    vision = dataclasses.replace(STEM_VISION, keypoints=4)
    cfg = small_config.replace(vision=vision)
    assert vision.num_tokens == 16 + 4
    assert param_shapes(cfg)["PaliGemma/img/keypoints/detector/kernel"] == (16, 4)
    img = Pi05(cfg, rngs=nnx.Rngs(0)).PaliGemma.img
    dark = -np.ones((2, 32, 32, 3), np.float32)
    dark[0, 4:7, 4:7] = 1.0  # a white dot top left in image 0, bottom right in image 1
    dark[1, 24:27, 24:27] = 1.0
    tokens = np.asarray(img(jnp.asarray(dark)))
    assert tokens.shape == (2, 20, cfg.paligemma.width)
    places, _ = img.keypoints.places(img.stem(jnp.asarray(dark)))
    assert np.abs(places[0] - places[1]).max() > 0.05  # some detector's place moved with the dot
    params = init_params(cfg, seed=0, perturb_std=0.05)
    save_params(tmp_path / "params", params)
    np.testing.assert_allclose(  # the keypoint weights round-trip through a checkpoint
        load_model(cfg, tmp_path).PaliGemma.img(jnp.asarray(dark)),
        model_from_params(cfg, params).PaliGemma.img(jnp.asarray(dark)),
        atol=1e-6,
    )
    assert ModelConfig.from_dict(cfg.to_dict()).vision.keypoints == 4


def test_keypoints_need_a_conv_stem():
    with pytest.raises(ValueError, match="keypoints read the conv stem"):
        SiglipConfig(width=32, depth=1, mlp_dim=64, num_heads=2, patch=8, image_size=32, keypoints=4)


def _image_tokens(model: Pi05, obs) -> np.ndarray:
    embedded, _, _ = model.embed_prefix(obs)
    return np.asarray(embedded[:, : len(model.cfg.image_keys) * model.cfg.vision.num_tokens])


def test_film_conditions_the_images_on_the_prompt_but_not_on_the_answer(small_config, make_input):
    cfg = small_config.replace(vision=dataclasses.replace(STEM_VISION, film=True))
    assert param_shapes(cfg)["PaliGemma/img/film/kernel"] == (cfg.paligemma.width, 2 * 16)
    model = model_from_params(cfg, init_params(cfg, seed=0, perturb_std=0.05))
    obs = make_input(cfg, 1, [8])
    ar_mask = np.zeros((1, cfg.max_token_len), np.int32)
    ar_mask[0, 5] = 1  # tokens 5..7: an answer being trained on, after the prompt
    obs = dataclasses.replace(obs, token_ar_mask=jnp.asarray(ar_mask))
    other_word = dataclasses.replace(obs, tokens=obs.tokens.at[0, 2].add(1))
    other_answer = dataclasses.replace(obs, tokens=obs.tokens.at[0, 6].add(1))
    base = _image_tokens(model, obs)
    assert np.abs(_image_tokens(model, other_word) - base).max() > 1e-4
    np.testing.assert_allclose(_image_tokens(model, other_answer), base, atol=1e-6)

    plain = model_from_params(small_config, init_params(small_config, seed=0, perturb_std=0.05))
    np.testing.assert_allclose(_image_tokens(plain, other_word), _image_tokens(plain, obs), atol=1e-6)
    assert ModelConfig.from_dict(cfg.to_dict()).vision.film


def test_film_needs_a_conv_stem():
    with pytest.raises(ValueError, match="film conditions the conv stem"):
        SiglipConfig(width=32, depth=1, mlp_dim=64, num_heads=2, patch=8, image_size=32, film=True)
