import dataclasses

import numpy as np
import pytest

from policy import fast, prompts
from policy.images import resize_with_pad
from policy.normalize import RunningStats, normalize
from policy.tokenizer import TextTokenizer, train_tokenizer
from training.config import get_config
from training.lerobot import LeRobotDataset
from training.loader import BatchLoader, batch_rows
from training.samples import SampleMaker, collate


@pytest.fixture(scope="module")
def setup(recorded_dataset, tmp_path_factory):
    config = get_config("pi05_subtask_hybrid_tiny", [f"data.path={recorded_dataset}"])
    ds = LeRobotDataset(recorded_dataset, config.model.action_horizon)
    path = train_tokenizer(tmp_path_factory.mktemp("tok") / "t.model", vocab_size=800, extra_text=ds.texts())
    tokenizer = TextTokenizer(path)
    stats = {}
    for key, values in (("state", ds.states(np.arange(len(ds)))), ("actions", ds.action_chunks(np.arange(len(ds)))[0])):
        running = RunningStats()
        running.update(values)
        stats[key] = running.get_statistics()
    chunks = normalize(ds.action_chunks(np.arange(len(ds)))[0], stats["actions"], use_quantiles=True)
    fast_tok = fast.FastTokenizer.fit(list(np.clip(chunks, -1, 1)), vocab_size=512)
    return config, ds, tokenizer, stats, fast_tok


def test_sample_rows_are_exactly_the_runtime_layouts(setup):
    config, ds, tokenizer, stats, fast_tok = setup
    model = config.model
    maker = SampleMaker(model, config.data, tokenizer, stats, fast_tok, config.text_len)
    frame = ds.frame(len(ds) - 3)
    sample = maker(frame, np.random.default_rng(0))

    planner = prompts.tokenize_planner_example(tokenizer, frame.task, frame.subtask, max_len=config.text_len)
    n = int(planner.mask.sum())
    np.testing.assert_array_equal(sample["text_tokens"][:n], planner.tokens[:n])
    np.testing.assert_array_equal(sample["subtask_loss_mask"], planner.loss_mask)
    target = sample["text_tokens"][sample["subtask_loss_mask"]]
    assert tokenizer.decode(target) == prompts.clean_instruction(frame.subtask)
    actor = prompts.tokenize_actor(tokenizer, frame.task, frame.subtask, max_len=model.max_token_len)
    np.testing.assert_array_equal(sample["actor_tokens"], actor.tokens)
    np.testing.assert_array_equal(sample["actor_mask"], actor.mask)

    fast_ids = fast.from_text_ids(sample["text_tokens"][sample["fast_loss_mask"]][:-2], model.vocab_size)
    decoded = fast_tok.decode(fast_ids)
    expected = np.clip(normalize(frame.actions, stats["actions"], use_quantiles=True), -1, 1)
    assert decoded.valid and np.abs(decoded.actions - expected).max() < 0.2
    assert sample["text_tokens"][sample["fast_loss_mask"]][-1] == tokenizer.eos_id
    prompt_len = len(tokenizer.encode(prompts.planner_text(frame.task), add_bos=True))
    causal = (np.arange(config.text_len) >= prompt_len) & sample["text_mask"]
    np.testing.assert_array_equal(sample["text_ar_mask"], causal.astype(np.int32))


def test_sample_images_state_and_actions(setup):
    config, ds, tokenizer, stats, _ = setup
    model = config.model
    maker = SampleMaker(model, config.data, tokenizer, stats, None, config.text_len)
    frame = ds.frame(ds.episodes[0].length - 2)
    sample = maker(frame, np.random.default_rng(0))
    size = model.vision.image_size
    for dataset_key, model_key in config.data.cameras:
        expected = resize_with_pad(frame.images[dataset_key], size, size)
        np.testing.assert_array_equal(sample["images"][model_key], expected)
    assert all(sample["image_masks"].values())
    assert sample["actions"].shape == (model.action_horizon, model.action_dim)
    expected = normalize(frame.actions, stats["actions"], use_quantiles=True)
    np.testing.assert_allclose(sample["actions"][:, :7], expected, rtol=1e-6)
    assert not sample["actions"][:, 7:].any() and not sample["state"][8:].any()
    assert sample["action_is_pad"].tolist() == [False, False] + [True] * (model.action_horizon - 2)
    assert not sample["fast_loss_mask"].any()


def test_absent_cameras_are_masked_and_augmentation_is_seeded(setup):
    config, ds, tokenizer, stats, _ = setup
    data = dataclasses.replace(config.data, cameras=(("observation.images.wrist", "left_wrist_0_rgb"),), augment=True)
    maker = SampleMaker(config.model, data, tokenizer, stats)
    frame = ds.frame(10)
    a = maker(frame, np.random.default_rng(1))
    b = maker(frame, np.random.default_rng(1))
    c = maker(frame, np.random.default_rng(2))
    assert not a["image_masks"]["base_0_rgb"] and not a["images"]["base_0_rgb"].any()
    np.testing.assert_array_equal(a["images"]["left_wrist_0_rgb"], b["images"]["left_wrist_0_rgb"])
    assert not np.array_equal(a["images"]["left_wrist_0_rgb"], c["images"]["left_wrist_0_rgb"])
    batch = collate([a, b])
    assert batch.images["left_wrist_0_rgb"].shape[0] == 2 and batch.actions.shape[0] == 2


def test_batch_order_depends_only_on_seed_and_step():
    first = [batch_rows(s, 8, 75, seed=3) for s in range(20)]
    assert [batch_rows(s, 8, 75, seed=3).tolist() for s in (7, 3)] == [first[7].tolist(), first[3].tolist()]
    epoch = np.concatenate(first)[:75]
    assert sorted(epoch.tolist()) == list(range(75))
    assert not np.array_equal(batch_rows(0, 8, 75, seed=4), first[0])


def test_loader_batches_are_reproducible(setup):
    config, ds, tokenizer, stats, _ = setup
    maker = SampleMaker(config.model, config.data, tokenizer, stats, None, config.text_len)
    loader = BatchLoader(ds, maker, 4, seed=0, num_workers=2)
    try:
        streamed = dict(loader.iterate(2, 5))
        again = loader.batch(3)
    finally:
        loader.close()
    assert sorted(streamed) == [2, 3, 4]
    np.testing.assert_array_equal(streamed[3].text_tokens, again.text_tokens)
    np.testing.assert_array_equal(streamed[3].images["base_0_rgb"], again.images["base_0_rgb"])
