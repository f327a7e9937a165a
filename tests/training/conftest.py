"""Training fixtures: one small recording of the built-in sim (2 pick-and-place episodes with cylinders at
64², about 75 frames), the same data in the other LeRobot layouts, and a persistent XLA cache.

Cylinders, because the expert turns the wrist only to align with a cube: with a cube the yaw actions are
rare outliers far outside their 1–99% quantiles, and the quantile-normalized flow targets spike on them.

The compilation cache is set before any test compiles, so a run that repeats an earlier run's train step
(the kill-and-resume test, a second `make test`) loads the executable instead of compiling it again.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import jax
import pytest

XLA_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "robot-runtime-xla-cache")
)
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)

EPISODES = 2
IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def recorded_dataset(tmp_path_factory) -> pathlib.Path:
    from sim.recorder import record

    out = tmp_path_factory.mktemp("data") / "sim_v21"
    record("pick_place", EPISODES, out, image_size=IMAGE_SIZE, progress=False, object_kinds=("cylinder",))
    return out


@pytest.fixture(scope="session")
def v3_dataset(recorded_dataset, tmp_path_factory) -> pathlib.Path:
    from lerobot_layouts import write_v3

    return write_v3(recorded_dataset, tmp_path_factory.mktemp("data") / "sim_v30", episodes_per_file=2)


@pytest.fixture(scope="session")
def image_dataset(recorded_dataset, tmp_path_factory) -> pathlib.Path:
    from lerobot_layouts import write_v21_images

    return write_v21_images(recorded_dataset, tmp_path_factory.mktemp("data") / "sim_v21_images")


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> pathlib.Path:
    from policy.tokenizer import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tiny.model", vocab_size=800)
