"""Fixtures shared by every suite: a tiny random pi0.5 and model inputs for it.

The servers and CLI commands that the tests start keep their persistent compilation cache in the temporary
directory (the one the training suite uses for its own compilations), never in the user's home: a second run
of the suite reads the executables the first one compiled.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

os.environ.setdefault("MUJOCO_GL", "osmesa")

import jax.numpy as jnp
import numpy as np
import pytest

from policy.compile_cache import ENV_VAR as COMPILE_CACHE_VAR

os.environ.setdefault(COMPILE_CACHE_VAR, os.path.join(tempfile.gettempdir(), "robot-runtime-xla-cache"))

SHARED_FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "openpi_pi05_dummy"


@pytest.fixture(scope="session")
def shared_fixture() -> pathlib.Path:
    """The openpi reference fixture in ../shared (outputs of openpi's own implementation)."""
    if not SHARED_FIXTURE.is_dir():
        pytest.fail(f"the openpi reference fixture is missing at {SHARED_FIXTURE}")
    return SHARED_FIXTURE


@pytest.fixture(scope="session")
def tiny_config():
    from policy.config import get_model_config

    return get_model_config("tiny")


@pytest.fixture(scope="session")
def tiny_params(tiny_config):
    from policy.checkpoint import init_params

    return init_params(tiny_config, seed=0, perturb_std=0.05)


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tiny_params):
    from policy.checkpoint import model_from_params

    return model_from_params(tiny_config, tiny_params)


@pytest.fixture(scope="session")
def make_input():
    return random_model_input


def random_model_input(cfg, batch: int, prompt_lengths, seed: int = 0, image_masks=None):
    """Random images, right-padded random tokens (BOS first) of the given lengths, random state."""
    from policy.observation import ModelInput, uint8_to_model

    rng = np.random.default_rng(seed)
    size = cfg.vision.image_size
    images = {k: uint8_to_model(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)) for k in cfg.image_keys}
    masks = image_masks or {k: np.ones(batch, bool) for k in cfg.image_keys}
    tokens = np.zeros((batch, cfg.max_token_len), np.int32)
    token_mask = np.zeros((batch, cfg.max_token_len), bool)
    for row, n in enumerate(prompt_lengths):
        tokens[row, :n] = rng.integers(4, cfg.vocab_size, n)
        tokens[row, 0] = 2
        token_mask[row, :n] = True
    return ModelInput(
        images=images,
        image_masks={k: jnp.asarray(v) for k, v in masks.items()},
        tokens=jnp.asarray(tokens),
        token_mask=jnp.asarray(token_mask),
        state=jnp.asarray(rng.normal(size=(batch, cfg.action_dim)), jnp.float32),
    )
