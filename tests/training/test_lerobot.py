import json

import numpy as np
import pytest

from training.lerobot import DatasetError, LeRobotDataset

HORIZON = 10
AGENTVIEW = "observation.images.agentview"
WRIST = "observation.images.wrist"


def _open(path, **kwargs):
    return LeRobotDataset(path, HORIZON, **kwargs)


def test_v21_frames_carry_task_subtask_state_and_chunks(recorded_dataset):
    ds = _open(recorded_dataset)
    episodes = [json.loads(line) for line in (recorded_dataset / "meta/episodes.jsonl").read_text().splitlines()]
    assert len(ds) == sum(e["length"] for e in episodes)
    assert ds.cameras == (AGENTVIEW, WRIST) and ds.state_dim == 8 and ds.action_dim == 7
    assert [e.length for e in ds.episodes] == [e["length"] for e in episodes]
    frame = ds.frame(3)
    assert frame.task == episodes[0]["tasks"][0]
    assert frame.subtask and frame.subtask != frame.task
    assert frame.images[AGENTVIEW].shape == (64, 64, 3) and frame.images[AGENTVIEW].dtype == np.uint8
    assert frame.actions.shape == (HORIZON, 7) and not frame.action_is_pad.any()
    assert set(ds.texts()) >= {frame.task, frame.subtask}


def test_action_chunks_clamp_and_flag_at_episode_end(recorded_dataset):
    ds = _open(recorded_dataset)
    first = ds.episodes[0]
    last_row = first.start + first.length - 1
    frame = ds.frame(last_row - 2)
    np.testing.assert_array_equal(frame.action_is_pad, [False] * 3 + [True] * (HORIZON - 3))
    np.testing.assert_array_equal(frame.actions[3:], np.repeat(frame.actions[2:3], HORIZON - 3, axis=0))
    following = ds.frame(last_row + 1)
    assert following.episode_index == ds.episodes[1].index and following.frame_index == 0


def test_video_reads_match_sequential_decoding_in_any_order(recorded_dataset):
    ds = _open(recorded_dataset)
    rows = list(range(len(ds)))
    sequential = [ds.image(r, WRIST) for r in rows]
    shuffled = np.random.default_rng(0).permutation(rows)
    fresh = _open(recorded_dataset)
    for row in shuffled[:25]:
        np.testing.assert_array_equal(fresh.image(int(row), WRIST), sequential[row])


def test_v30_layout_reads_the_same_frames(recorded_dataset, v3_dataset):
    v2, v3 = _open(recorded_dataset), _open(v3_dataset)
    assert v3.is_v3 and len(v3) == len(v2)
    assert [(e.index, e.length) for e in v3.episodes] == [(e.index, e.length) for e in v2.episodes]
    for row in (0, 5, len(v2) - 1, v2.episodes[1].start + 3):
        a, b = v2.frame(row), v3.frame(row)
        for field in ("task", "subtask", "episode_index", "frame_index"):
            assert getattr(a, field) == getattr(b, field)
        np.testing.assert_array_equal(a.state, b.state)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.action_is_pad, b.action_is_pad)
        for cam in (AGENTVIEW, WRIST):
            # re-encoded, so close rather than equal; a frame from the wrong episode or time differs far more
            assert np.abs(a.images[cam].astype(int) - b.images[cam]).mean() < 4


def test_v30_second_episode_seeks_past_the_first_in_the_concatenated_video(recorded_dataset, v3_dataset):
    v2, v3 = _open(recorded_dataset), _open(v3_dataset)
    start = v2.episodes[1].start
    own = np.abs(v3.image(start, AGENTVIEW).astype(int) - v2.image(start, AGENTVIEW)).mean()
    other = np.abs(v3.image(start, AGENTVIEW).astype(int) - v2.image(0, AGENTVIEW)).mean()
    assert own < 4 < other


def test_overall_task_column_wins_over_the_tasks_table(v3_dataset):
    ds = _open(v3_dataset)
    assert not any(t.startswith("unused") for t in ds.texts())
    assert ds.frame(0).task.startswith("put the")


def test_images_inside_parquet(recorded_dataset, image_dataset):
    video, images = _open(recorded_dataset), _open(image_dataset)
    assert images.cameras == video.cameras
    for row in (0, 17):
        np.testing.assert_array_equal(images.image(row, WRIST), video.image(row, WRIST))


def test_missing_subtask_column_falls_back_to_the_task(recorded_dataset):
    ds = _open(recorded_dataset, subtask_key="no_such_column")
    frame = ds.frame(4)
    assert frame.subtask == frame.task


def test_episode_selection_and_errors(recorded_dataset, tmp_path):
    ds = _open(recorded_dataset, episodes=[1])
    assert [e.index for e in ds.episodes] == [1] and ds.frame(0).episode_index == 1
    with pytest.raises(DatasetError, match="no meta/info.json"):
        _open(tmp_path)
    with pytest.raises(DatasetError, match="no camera"):
        _open(recorded_dataset, cameras=["observation.images.top"])
    with pytest.raises(DatasetError, match="no feature"):
        _open(recorded_dataset, state_key="observation.joints")
    with pytest.raises(IndexError):
        ds.frame(len(ds))
