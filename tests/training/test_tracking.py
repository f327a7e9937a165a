"""Experiment tracking, validation split and dataset mixtures: a tiny run on a weighted mixture of two datasets
with half of each one's episodes held out writes validation losses into metrics.jsonl, the same numbers into
TensorBoard event files, and a matplotlib loss figure; the pieces underneath are checked on their own."""

from __future__ import annotations

import json
import pathlib
import shutil
import struct
import sys
import types

import cv2
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from app.cli import main
from training.config import get_config
from training.data import held_out_episodes, open_dataset
from training.mixture import DatasetMixture
from training.tracking import Tracker, tag

CONFIG = "pi05_subtask_hybrid_tiny"
VAL_KEYS = ("val_loss", "val_flow_mse", "val_subtask_ce", "val_fast_ce", "val_planner_exact_match")


def read_scalars(directory: pathlib.Path) -> dict[str, dict[int, float]]:
    """tag → {step: value} from every TensorBoard event file under `directory` (TFRecord framing)."""
    out: dict[str, dict[int, float]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


@pytest.fixture(scope="module")
def second_dataset(recorded_dataset, tmp_path_factory) -> pathlib.Path:
    """A copy of the recording under another path: a mixture's second part."""
    out = tmp_path_factory.mktemp("data") / "copy"
    shutil.copytree(recorded_dataset, out, ignore=shutil.ignore_patterns(".frame_cache"))
    return out


def _overrides(root: pathlib.Path, parts) -> list[str]:
    return [
        f"data.mixture={json.dumps([[str(p), w] for p, w in parts])}",
        "data.val_fraction=0.5",
        f"assets_dir={root / 'assets'}",
        f"checkpoint_dir={root / 'ckpt'}",
        "num_train_steps=6",
        "log_interval=1",
        "save_interval=3",
        "val_batches=1",
    ]


def test_mixture_run_logs_validation_to_jsonl_tensorboard_and_figure(recorded_dataset, second_dataset, tmp_path):
    overrides = _overrides(tmp_path, [(recorded_dataset, 3.0), (second_dataset, 1.0)])
    sets = [arg for o in overrides for arg in ("--set", o)]
    assert main(["compute-norm-stats", "--config", CONFIG, *sets, "--no-progress"]) == 0
    assert main(["train", CONFIG, "--exp-name", "mix", *sets, "--no-progress"]) == 0
    run = tmp_path / "ckpt" / CONFIG / "mix"

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(6))
    validated = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in validated] == [2, 5]  # at each checkpoint
    for record in validated:
        assert set(VAL_KEYS) <= set(record)
        assert 0.0 <= record["val_planner_exact_match"] <= 1.0
        assert all(np.isfinite(record[k]) and record[k] > 0 for k in VAL_KEYS[:4])

    scalars = read_scalars(run / "tensorboard")
    assert {"train/loss", "train/flow_mse", "val/flow_mse", "val/planner_exact_match"} <= set(scalars)
    assert sorted(scalars["train/loss"]) == list(range(6))
    for record in records:
        assert scalars["train/loss"][record["step"]] == pytest.approx(record["loss"], rel=1e-6)
    for record in validated:
        assert scalars["val/subtask_ce"][record["step"]] == pytest.approx(record["val_subtask_ce"], rel=1e-6)

    figure = cv2.imread(str(run / "loss_curve.png"))
    assert figure is not None and figure.shape[0] > 300 and figure.std() > 10


def test_validation_episodes_are_never_trained_on(recorded_dataset, second_dataset, tmp_path):
    overrides = _overrides(tmp_path, [(recorded_dataset, 1.0), (second_dataset, 1.0)])
    from training.config import set_field

    config = get_config(CONFIG)
    for item in overrides:
        key, _, value = item.partition("=")
        config = set_field(config, key, value)
    train, val, everything = (open_dataset(config, split) for split in ("train", "val", "all"))
    try:
        assert isinstance(train, DatasetMixture) and isinstance(val, DatasetMixture)
        for train_part, val_part, all_part in zip(train.parts, val.parts, everything.parts, strict=True):
            train_eps = {e.index for e in train_part.episodes}
            val_eps = {e.index for e in val_part.episodes}
            assert train_eps and val_eps and not train_eps & val_eps
            assert train_eps | val_eps == {e.index for e in all_part.episodes}
        assert len(train) + len(val) == len(everything)
    finally:
        for dataset in (train, val, everything):
            dataset.close()


def test_held_out_episodes_are_seeded_and_leave_training_data():
    episodes = list(range(100))
    first = held_out_episodes(episodes, 0.1, seed=3)
    assert len(first) == 10 and first == held_out_episodes(episodes, 0.1, seed=3)
    assert first != held_out_episodes(episodes, 0.1, seed=4)
    assert held_out_episodes(episodes, 0.0, seed=3) == []
    assert len(held_out_episodes([0, 1], 0.9, seed=0)) == 1  # never every episode


def test_mixture_draws_each_part_by_its_weight(recorded_dataset, second_dataset):
    from training.lerobot import LeRobotDataset

    small = LeRobotDataset(recorded_dataset, 10, episodes=[0])
    large = LeRobotDataset(second_dataset, 10)
    mixture = DatasetMixture([small, large], [0.8, 0.2])
    try:
        rows = mixture.sample_rows(np.random.default_rng(0), 20_000)
        part, local = mixture.locate(rows)
        assert abs(np.mean(part == 0) - 0.8) < 0.02  # by weight, although the first part is the smaller
        assert local[part == 0].max() < len(small) and local[part == 1].max() < len(large)
        assert len(np.unique(local[part == 1])) == len(large)  # uniform within a part: every row is reached
        frame = mixture.frame(len(small))
        assert frame.frame_index == 0 and frame.episode_index == large.episodes[0].index
        chunks, pad = mixture.action_chunks(np.array([len(small) + 1, 0]))
        np.testing.assert_array_equal(chunks[0], large.action_chunks(np.array([1]))[0][0])
        np.testing.assert_array_equal(chunks[1], small.action_chunks(np.array([0]))[0][0])
    finally:
        mixture.close()


def test_tracker_sends_the_same_scalars_to_wandb_and_resumes_its_run(tmp_path, monkeypatch):
    calls: list[tuple] = []

    class FakeRun:
        def log(self, scalars, step):
            calls.append(("log", dict(scalars), step))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    for start in (0, 5):
        tracker = Tracker(tmp_path, start_step=start, tensorboard=False, wandb_project="p", wandb_mode="offline")
        tracker.log({"step": start, "loss": 1.5, "val_flow_mse": 0.25})
        tracker.close()
    inits = [c[1] for c in calls if c[0] == "init"]
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"] and inits[0]["resume"] == "allow"
    assert inits[0]["project"] == "p" and inits[0]["mode"] == "offline"
    assert ("log", {"train/loss": 1.5, "val/flow_mse": 0.25}, 5) in calls
    assert tag("val_planner_exact_match") == "val/planner_exact_match"


def test_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    from policy.errors import UserFacingError

    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    with pytest.raises(UserFacingError, match=r"robot-runtime\[wandb\]"):
        Tracker(tmp_path, start_step=0, tensorboard=False, wandb_project="p")
    with pytest.raises(UserFacingError, match="wandb_mode"):
        Tracker(tmp_path, start_step=0, tensorboard=False, wandb_project="p", wandb_mode="sometimes")
