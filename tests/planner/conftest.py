"""Planner fixtures: one tiny checkpoint (made by the CLI), a livelier copy of its weights, a tokenizer with
non-ASCII pieces, and one shared decoder, so the whole suite compiles each executable once.

`init-checkpoint` perturbs weights by 0.05, and such a network mostly repeats the prompt's last token; with
std-1 noise on every weight its greedy output varies with the image and the task, which the tests need.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

NON_ASCII_TEXT = ("机器人拿起红色方块 🤖🦾 把杯子放进碗里", "抓住 杯子 碗 红色 方块 🤖", "Ünïcode ✓ café")
TOKENIZER_PIECES = 480
MAX_NEW_TOKENS = 6
BUCKETS = (1, 4)
TASKS = (
    "put the red cube in the bowl",
    "Open_the_drawer",
    "pick up the black bowl next to the ramekin and place it on the plate",
    "turn on the stove",
    "push the plate to the front of the stove",
)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from app.cli import main

    out = tmp_path_factory.mktemp("planner") / "tiny_ckpt"
    assert main(["init-checkpoint", "--config", "tiny", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def planner_config(tiny_checkpoint):
    from policy.model_dir import ModelDir

    return ModelDir.open(tiny_checkpoint).config


@pytest.fixture(scope="session")
def planner_params(tiny_checkpoint) -> dict:
    from policy.checkpoint import flatten, load_params

    noise = np.random.default_rng(1)
    flat = flatten(load_params(tiny_checkpoint / "params"))
    return {key: value + noise.normal(size=value.shape).astype(value.dtype) for key, value in flat.items()}


@pytest.fixture(scope="session")
def make_planner_model(planner_config):
    from policy.checkpoint import model_from_params, unflatten

    def make(flat_params: dict):
        return model_from_params(planner_config, unflatten(flat_params))

    return make


@pytest.fixture(scope="session")
def planner_model(make_planner_model, planner_params):
    return make_planner_model(planner_params)


@pytest.fixture(scope="session")
def cjk_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from policy.tokenizer import TextTokenizer, train_tokenizer

    path = tmp_path_factory.mktemp("planner_tokenizer") / "cjk.model"
    return TextTokenizer(train_tokenizer(path, vocab_size=TOKENIZER_PIECES, extra_text=NON_ASCII_TEXT))


@pytest.fixture(scope="session")
def make_decoder(planner_config, cjk_tokenizer):
    from planner.decoder import SubtaskDecoder

    def make(model, **options):
        settings = {"max_new_tokens": MAX_NEW_TOKENS, "buckets": BUCKETS, **options}
        return SubtaskDecoder(model, cjk_tokenizer, planner_config, **settings)

    return make


@pytest.fixture(scope="session")
def ascii_decoder(make_decoder, planner_model):
    return make_decoder(planner_model)


@pytest.fixture(scope="session")
def camera_images(planner_config) -> list[dict[str, np.ndarray]]:
    """One camera set per task: varied sizes, one to three cameras."""
    rng = np.random.default_rng(0)
    keys = planner_config.image_keys
    sizes = [(112, 112), (96, 128), (120, 80), (112, 112), (64, 64)]
    return [
        {key: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for key in keys[: 1 + i % len(keys)]}
        for i, size in enumerate(sizes)
    ]


@pytest.fixture(scope="session")
def requests(camera_images):
    from planner.decoder import DecodeRequest

    return [DecodeRequest(images, task) for images, task in zip(camera_images, TASKS, strict=True)]
