"""Localisation co-training: parsing a scene list, and samples whose text row asks where a thing is."""

import dataclasses

import numpy as np
import pytest

from policy import prompts
from policy.checkpoint import flatten, init_params, unflatten
from policy.normalize import RunningStats
from policy.tokenizer import TextTokenizer, train_tokenizer
from training import locate
from training.config import get_config
from training.lerobot import DatasetError, LeRobotDataset
from training.samples import SampleMaker
from training.weights import EMBEDDING, number_line_symbols

SCENE = "red cube <x04><y07>; white box <x19><y08>;  ; blue cylinder <x05><y34>"


def test_scene_entries_and_questions():
    assert locate.scene_entries(SCENE) == [
        ("red cube", "<x04><y07>"),
        ("white box", "<x19><y08>"),
        ("blue cylinder", "<x05><y34>"),
    ]
    assert locate.scene_entries("") == [] and locate.scene_entries("red cube") == []
    assert locate.questions([SCENE, "red cube <x01><y01>"]) == [
        "locate the blue cylinder",
        "locate the red cube",
        "locate the white box",
    ]
    drawn = {locate.locate_sample(SCENE, np.random.default_rng(seed)) for seed in range(30)}
    assert drawn == {
        ("locate the red cube", "<x04><y07>"),
        ("locate the white box", "<x19><y08>"),
        ("locate the blue cylinder", "<x05><y34>"),
    }
    assert locate.locate_sample("", np.random.default_rng(0)) is None


@pytest.fixture(scope="module")
def located(tmp_path_factory):
    from sim.recorder import record

    out = tmp_path_factory.mktemp("data") / "loc"
    record("pick_place", 1, out, image_size=64, progress=False, locations=True, object_kinds=("cylinder",))
    return out


@pytest.fixture(scope="module")
def located_parts(located, tmp_path_factory):
    """(config, dataset, tokenizer, norm stats) for SampleMakers over the located dataset."""
    config = get_config("pi05_subtask_hybrid_tiny", [f"data.path={located}"])
    ds = LeRobotDataset(located, config.model.action_horizon, scene_key=config.data.scene_key)
    texts = ds.texts()
    model_path = tmp_path_factory.mktemp("tokenizer") / "t.model"
    tokenizer = TextTokenizer(train_tokenizer(model_path, vocab_size=800, extra_text=texts))
    stats = {}
    for key, values in (("state", ds.states(np.arange(len(ds)))), ("actions", ds.action_chunks(np.arange(len(ds)))[0])):
        running = RunningStats()
        running.update(values)
        stats[key] = running.get_statistics()
    return config, ds, tokenizer, stats


def test_a_locate_sample_asks_where_a_thing_is_and_keeps_the_actor_row(located_parts):
    config, ds, tokenizer, stats = located_parts
    texts = ds.texts()
    things = [thing for thing, _ in locate.scene_entries(ds.frame(0, with_images=False).scene)]
    assert len(things) >= 3 and {f"locate the {thing}" for thing in things} <= set(texts)
    data = dataclasses.replace(config.data, locate_prob=1.0)
    maker = SampleMaker(config.model, data, tokenizer, stats, None, config.text_len)
    frame = ds.frame(5)
    entries = dict(locate.scene_entries(frame.scene))
    sample = maker(frame, np.random.default_rng(0))
    asked = [
        thing
        for thing, where in entries.items()
        if np.array_equal(
            sample["text_tokens"],
            prompts.tokenize_planner_example(tokenizer, f"locate the {thing}", where, max_len=config.text_len).tokens,
        )
    ]
    assert len(asked) == 1
    assert tokenizer.decode(sample["text_tokens"][sample["subtask_loss_mask"]]) == entries[asked[0]]
    actor = prompts.tokenize_actor(tokenizer, frame.task, frame.subtask, max_len=config.model.max_token_len)
    np.testing.assert_array_equal(sample["actor_tokens"], actor.tokens)
    assert sample["flow_mask"]
    assert not np.any(sample["text_state"]) and np.any(sample["state"])  # the question row hides the hand

    plain = SampleMaker(config.model, config.data, tokenizer, stats, None, config.text_len)(
        frame, np.random.default_rng(0)
    )
    assert tokenizer.decode(plain["text_tokens"][plain["subtask_loss_mask"]]) == prompts.clean_instruction(
        frame.subtask
    )
    np.testing.assert_array_equal(plain["text_state"], plain["state"])
    with pytest.raises(ValueError, match="locate_prob"):
        SampleMaker(config.model, dataclasses.replace(data, locate_prob=1.5), tokenizer, stats, None, config.text_len)


def test_locate_frames_asks_only_at_the_start_of_an_episode(located_parts):
    config, ds, tokenizer, stats = located_parts
    data = dataclasses.replace(config.data, locate_prob=1.0, locate_frames=2)
    maker = SampleMaker(config.model, data, tokenizer, stats, None, config.text_len)
    for row in range(4):
        frame = ds.frame(row)
        sample = maker(frame, np.random.default_rng(row))
        said = tokenizer.decode(sample["text_tokens"][sample["subtask_loss_mask"]])
        if frame.frame_index < 2:
            assert said in dict(locate.scene_entries(frame.scene)).values()
        else:
            assert said == prompts.clean_instruction(frame.subtask)
    with pytest.raises(ValueError, match="locate_frames"):
        SampleMaker(config.model, dataclasses.replace(data, locate_frames=0), tokenizer, stats, None, config.text_len)


def test_a_dataset_without_the_scene_column_is_refused_by_name(recorded_dataset):
    with pytest.raises(DatasetError, match="scene_locations"):
        LeRobotDataset(recorded_dataset, 10, scene_key="scene_locations")


def test_norm_stats_read_a_dataset_without_scenes_and_training_refuses_it(recorded_dataset):
    from training.data import open_dataset

    config = get_config("pi05_builtin", [f"data.path={recorded_dataset}"])
    assert config.data.locate_prob > 0
    assert len(open_dataset(config, "all")) > 0  # what compute-norm-stats opens
    with pytest.raises(DatasetError, match="locate_prob=0"):
        open_dataset(config)


def test_location_symbols_start_as_number_lines():
    config = get_config("pi05_builtin").model
    params = {k: np.asarray(v) for k, v in flatten(init_params(config, 0)).items()}
    pieces = ["<pad>", "red", *(f"<x{i:02d}>" for i in range(30)), "cube", *(f"<y{i:02d}>" for i in range(40))]
    smoothed, names = number_line_symbols(unflatten(params), pieces, seed=0)
    assert names == ["x", "y"]
    before, after = params[EMBEDDING], flatten(smoothed)[EMBEDDING]
    np.testing.assert_array_equal(after[:2], before[:2])  # other pieces keep their rows
    np.testing.assert_array_equal(after[32], before[32])
    xs, ys = after[2:32], after[33:73]
    near = np.linalg.norm(xs[1:] - xs[:-1], axis=1).mean()
    assert near < 0.5 * np.linalg.norm(xs[29] - xs[0])  # neighbouring bins start out alike
    assert np.linalg.norm(xs[10] - ys[10]) > 2 * near  # the two axes differ
    assert 0.5 < xs.std() / before.std() < 2  # and the rows keep the table's scale
    assert number_line_symbols(unflatten(params), ["<pad>", "red"], seed=0)[1] == []
