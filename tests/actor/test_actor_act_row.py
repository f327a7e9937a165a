"""The actor of a reasoning checkpoint runs the act row training built for the same frame: the same token ids,
mask and causal `<boa>`, and the same chunk as the training-side model input gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from actor.engine import ChunkEngine, ChunkRequest, EngineConfig, InvalidRequest
from policy.normalize import NormStats
from policy.prompts import reasoning_tokens
from training.config import DataConfig
from training.lerobot import Frame
from training.reasoning import ReasoningSampler, Segment
from training.samples import SampleMaker, collate

# Below the protocol's ids of the tiny 512-token vocabulary (380, 381, 382), as training requires.
TOKENIZER_PIECES = 360
INSTRUCTION = "Instruction: put the cup away"
REASONING = "Next I grasp the cup"
# The discretized state costs a few tokens a dim; four leave the act row inside the tiny model's 48 slots.
STATE_DIMS = 4


class _Recording:
    """Stands in for the engine's FlowSampler, keeping the rows the engine builds."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler
        self.cfg = sampler.cfg
        self.max_batch = sampler.max_batch
        self.rows = []

    def run(self, rows, **options):
        self.rows.extend(rows)
        return self.sampler.run(rows, **options)


@pytest.fixture(scope="module")
def act_sampler(tiny_model, tiny_config):
    """Its own sampler: prompts with an ar mask compile their own prefix pass, which the shared sampler's
    compile-once test would count against it."""
    from actor.sampler import FlowSampler

    return FlowSampler(tiny_model, tiny_config, buckets=(1,))


@pytest.fixture(scope="module")
def reasoning_tokenizer(tmp_path_factory):
    from policy.tokenizer import TextTokenizer, train_tokenizer

    path = tmp_path_factory.mktemp("act_row_tokenizer") / "tiny.model"
    return TextTokenizer(train_tokenizer(path, vocab_size=TOKENIZER_PIECES, extra_text=(INSTRUCTION, REASONING)))


def _stats(dim: int, seed: int) -> NormStats:
    rng = np.random.default_rng(seed)
    q01 = rng.uniform(-2.0, -0.5, dim)
    return NormStats(np.zeros(dim), np.ones(dim), q01, q01 + rng.uniform(0.5, 3.0, dim))


@pytest.fixture(scope="module")
def norm_stats(tiny_config):
    return {"state": _stats(STATE_DIMS, 0), "actions": _stats(tiny_config.action_dim, 1)}


@pytest.fixture(scope="module")
def frame(tiny_config) -> Frame:
    rng = np.random.default_rng(1)
    horizon, dim = tiny_config.action_horizon, tiny_config.action_dim
    return Frame(
        images={"agentview": rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)},
        state=rng.uniform(-1.5, 1.5, STATE_DIMS).astype(np.float32),
        actions=np.zeros((horizon, dim), np.float32),
        action_is_pad=np.zeros(horizon, bool),
        task="put the cup away",
        subtask="grasp the cup",
        episode_index=0,
        frame_index=4,
    )


def _training_act_sample(tiny_config, tokenizer, norm_stats, frame, state_in_prompt: bool) -> dict:
    data = DataConfig(cameras=(("agentview", "base_0_rgb"),), augment=False)
    model = tiny_config.replace(discrete_state_input=state_in_prompt)
    acting = ReasoningSampler({0: [Segment(INSTRUCTION, 0, 9, REASONING)]}, think_prob=0.0, outdated_prob=0.0)
    sample = SampleMaker(model, data, tokenizer, norm_stats, reasoning=acting)(frame, np.random.default_rng(0))
    assert sample["flow_mask"]
    return sample


def _served_row(act_sampler, tokenizer, norm_stats, frame, state_in_prompt: bool):
    recording = _Recording(act_sampler)
    config = EngineConfig(action_dims=7, state_in_prompt=state_in_prompt, reasoning=True)
    engine = ChunkEngine(recording, tokenizer, norm_stats, config)
    request = ChunkRequest({"base_0_rgb": frame.images["agentview"]}, frame.task, REASONING, frame.state, seed=0)
    engine.run([request])
    [row] = recording.rows
    return row


@pytest.mark.parametrize("state_in_prompt", [False, True])
def test_the_act_row_is_the_training_row_token_for_token(
    act_sampler, tiny_config, reasoning_tokenizer, norm_stats, frame, state_in_prompt
):
    sample = _training_act_sample(tiny_config, reasoning_tokenizer, norm_stats, frame, state_in_prompt)
    row = _served_row(act_sampler, reasoning_tokenizer, norm_stats, frame, state_in_prompt)
    np.testing.assert_array_equal(row.prompt.tokens, sample["actor_tokens"])
    np.testing.assert_array_equal(row.prompt.mask, sample["actor_mask"])
    np.testing.assert_array_equal(row.ar_mask, sample["actor_ar_mask"])
    special = reasoning_tokens(tiny_config.vocab_size)
    ids = row.prompt.tokens[row.prompt.mask]
    assert list(ids[-2:]) == [special.end_of_prefix, special.begin_action] and row.ar_mask.sum() == 1
    assert reasoning_tokenizer.decode(ids[1:-2]).startswith(REASONING)


def test_the_served_chunk_is_the_one_the_training_input_gives(
    act_sampler, tiny_config, reasoning_tokenizer, norm_stats, frame
):
    sample = _training_act_sample(tiny_config, reasoning_tokenizer, norm_stats, frame, False)
    row = _served_row(act_sampler, reasoning_tokenizer, norm_stats, frame, False)
    noise = np.random.default_rng(5).standard_normal((1, tiny_config.action_horizon, tiny_config.action_dim))
    noise = noise.astype(np.float32)
    trained = act_sampler.sample(collate([sample]).actor_input(), noise=noise)
    served = act_sampler.sample([row], noise=noise)
    np.testing.assert_allclose(served, trained, atol=1e-5)
    all_bidirectional = act_sampler.sample([dataclasses.replace(row, ar_mask=None)], noise=noise)
    assert np.abs(all_bidirectional - served).max() > 1e-4, "a bidirectional <boa> must change the chunk"


def test_a_reasoning_too_long_for_the_act_row_names_the_subtask(act_sampler, reasoning_tokenizer, norm_stats, frame):
    engine = ChunkEngine(act_sampler, reasoning_tokenizer, norm_stats, EngineConfig(action_dims=7, reasoning=True))
    request = ChunkRequest({"base_0_rgb": frame.images["agentview"]}, frame.task, "grasp the cup " * 30, seed=0)
    with pytest.raises(InvalidRequest, match="subtask: is too long for the act row") as caught:
        engine.run([request])
    assert caught.value.field == "subtask"
