"""The LeRobot v2.1 recorder: layout, columns, videos, failed episodes."""

import itertools
import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

import sim.expert
from sim import tasks
from sim.recorder import record

IMG = 64


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    cap.release()
    return frames


def test_record_writes_a_lerobot_v21_dataset(tmp_path):
    out = tmp_path / "ds"
    summary = record(["pick_place", "two_stage"], 2, out, seed=0, image_size=IMG, progress=False)
    assert summary["episodes"] == 2 and summary["failed"] == 0

    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1"
    assert info["fps"] == 10
    assert info["total_episodes"] == 2 and info["total_videos"] == 4
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [8] and feats["observation.state"]["dtype"] == "float32"
    assert feats["action"]["shape"] == [7] and len(feats["action"]["names"]) == 7
    for cam in ("agentview", "wrist"):
        f = feats[f"observation.images.{cam}"]
        assert f["dtype"] == "video" and f["shape"] == [IMG, IMG, 3]
        assert f["names"] == ["height", "width", "channels"]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "subtask"):
        assert key in feats
    assert feats["subtask"]["dtype"] == "string"

    episodes = _read_jsonl(out / "meta" / "episodes.jsonl")
    assert [e["episode_index"] for e in episodes] == [0, 1]
    assert [e["task_name"] for e in episodes] == ["pick_place", "two_stage"]
    task_rows = _read_jsonl(out / "meta" / "tasks.jsonl")
    task_of = {t["task"]: t["task_index"] for t in task_rows}
    assert len(task_rows) == info["total_tasks"] == 2
    stats = _read_jsonl(out / "meta" / "episodes_stats.jsonl")
    assert len(stats) == 2
    assert np.array(stats[0]["stats"]["observation.images.agentview"]["mean"]).shape == (3, 1, 1)
    assert len(stats[0]["stats"]["action"]["max"]) == 7

    start = 0
    for ep in episodes:
        i, n = ep["episode_index"], ep["length"]
        table = pq.read_table(out / "data" / "chunk-000" / f"episode_{i:06d}.parquet")
        assert set(table.column_names) == {
            "observation.state",
            "action",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
            "subtask",
        }
        assert table.num_rows == n
        state = np.array(table.column("observation.state").to_pylist(), dtype=np.float32)
        action = np.array(table.column("action").to_pylist(), dtype=np.float32)
        assert state.shape == (n, 8) and action.shape == (n, 7)
        assert table.column("frame_index").to_pylist() == list(range(n))
        assert table.column("index").to_pylist() == list(range(start, start + n))
        assert set(table.column("episode_index").to_pylist()) == {i}
        assert set(table.column("task_index").to_pylist()) == {task_of[ep["tasks"][0]]}
        np.testing.assert_allclose(table.column("timestamp").to_numpy(), np.arange(n) / 10.0, atol=1e-5)
        subtasks = table.column("subtask").to_pylist()
        collapsed = [k for k, _ in itertools.groupby(subtasks)]
        assert collapsed[0].startswith("move to the ") and collapsed[-1].startswith("release the ")
        assert len(collapsed) == (5 if ep["task_name"] == "pick_place" else 10)
        start += n

        # The episode replays: same seed, same expert -> same states and first image.
        env = tasks.make(ep["task_name"], seed=ep["seed"], image_size=IMG)
        obs = env.reset()
        assert obs["task"] == ep["tasks"][0]
        np.testing.assert_array_equal(obs["state"], state[0])
        for cam in ("agentview", "wrist"):
            frames = _read_video(out / "videos" / "chunk-000" / f"observation.images.{cam}" / f"episode_{i:06d}.mp4")
            assert len(frames) == n
            assert frames[0].shape == (IMG, IMG, 3)
            err = np.abs(frames[0].astype(np.float32) - obs["images"][cam].astype(np.float32)).mean()
            assert err < 12, err  # lossy mp4 of the same picture
        env.close()
    assert info["total_frames"] == start


def test_failed_expert_episodes_are_dropped(tmp_path, monkeypatch):
    real_act = sim.expert.ScriptedExpert.act

    def act(self, env):  # sabotage the first seed: the expert never moves
        if env.episode_seed == 0:
            return np.zeros(7), "move to the nowhere"
        return real_act(self, env)

    monkeypatch.setattr(sim.expert.ScriptedExpert, "act", act)
    out = tmp_path / "ds"
    summary = record("pick_place", 2, out, seed=0, image_size=32, progress=False, max_steps=120)
    assert summary["episodes"] == 2 and summary["failed"] == 1 and summary["failed_seeds"] == [0]
    assert [e["seed"] for e in _read_jsonl(out / "meta" / "episodes.jsonl")] == [1, 2]
    assert len(list((out / "videos" / "chunk-000" / "observation.images.wrist").iterdir())) == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".recording")]

    with pytest.raises(FileExistsError):
        record("pick_place", 1, out, progress=False)
    with pytest.raises(RuntimeError):
        record(
            "pick_place",
            1,
            tmp_path / "never",
            seed=0,
            image_size=32,
            progress=False,
            max_steps=2,
            max_attempts=2,
            overwrite=True,
        )


def test_record_with_worker_processes_matches_single_process(tmp_path):
    a = record("pick_place", 2, tmp_path / "a", seed=10, image_size=32, progress=False)
    b = record("pick_place", 2, tmp_path / "b", seed=10, image_size=32, progress=False, workers=2)
    assert a["frames"] == b["frames"]
    for name in ("episodes.jsonl", "tasks.jsonl"):
        assert (tmp_path / "a" / "meta" / name).read_text() == (tmp_path / "b" / "meta" / name).read_text()
    for i in range(2):
        ta = pq.read_table(tmp_path / "a" / "data" / "chunk-000" / f"episode_{i:06d}.parquet")
        tb = pq.read_table(tmp_path / "b" / "data" / "chunk-000" / f"episode_{i:06d}.parquet")
        assert ta.equals(tb)


def test_action_noise_perturbs_the_motion_but_records_the_experts_clean_actions(tmp_path):
    clean_dir, noisy_dir = tmp_path / "clean", tmp_path / "noisy"
    record("pick_place", 1, clean_dir, seed=3, image_size=IMG, progress=False)
    record("pick_place", 1, noisy_dir, seed=3, image_size=IMG, progress=False, action_noise=0.1)
    clean = pq.read_table(clean_dir / "data/chunk-000/episode_000000.parquet").to_pydict()
    noisy = pq.read_table(noisy_dir / "data/chunk-000/episode_000000.parquet").to_pydict()
    assert json.loads((noisy_dir / "meta" / "info.json").read_text())["action_noise"] == 0.1

    np.testing.assert_array_equal(noisy["action"][0], clean["action"][0])
    assert not np.allclose(np.array(noisy["observation.state"][:20]), np.array(clean["observation.state"][:20]))
    # The expert caps its speed at 0.3 m/s (0.6 in action units per 10 Hz step); executed noise would exceed it.
    speeds = np.linalg.norm(np.array(noisy["action"])[:, :3], axis=1)
    assert speeds.max() <= 0.6 + 1e-5
    with pytest.raises(ValueError, match="action_noise"):
        record("pick_place", 1, tmp_path / "bad", image_size=IMG, progress=False, action_noise=-1.0)


def test_mistakes_miss_the_first_grasp_and_the_labels_show_the_recovery(tmp_path):
    """With mistakes=1 the executing expert closes its fingers away from the object while the clean expert's
    label still says "move to"; the episode then recovers and succeeds. Without mistakes that never happens."""

    def closed_while_moving(out):
        frames = pq.read_table(out / "data" / "chunk-000" / "episode_000000.parquet").to_pydict()
        return [
            i
            for i, (state, subtask) in enumerate(zip(frames["observation.state"], frames["subtask"]))
            if subtask.startswith("move to") and state[6] - state[7] < 0.06
        ]

    record("pick_place", 1, tmp_path / "miss", seed=3, image_size=IMG, progress=False, mistakes=1.0)
    record("pick_place", 1, tmp_path / "clean", seed=3, image_size=IMG, progress=False)
    assert closed_while_moving(tmp_path / "miss")
    assert not closed_while_moving(tmp_path / "clean")
    labels = pq.read_table(tmp_path / "miss" / "data" / "chunk-000" / "episode_000000.parquet")["action"].to_pylist()
    assert all(a[3:6] == [0.0, 0.0, 0.0] for a in labels)  # the built-in tasks need no wrist rotation


def test_same_scene_records_one_layout_with_different_perturbations(tmp_path):
    out = tmp_path / "ds"
    record("pick_place", 3, out, seed=5, image_size=IMG, progress=False, action_noise=0.1, same_scene=True)
    episodes = _read_jsonl(out / "meta" / "episodes.jsonl")
    assert {e["seed"] for e in episodes} == {5} and len({e["tasks"][0] for e in episodes}) == 1
    starts = [
        pq.read_table(out / "data" / "chunk-000" / f"episode_{i:06d}.parquet")["observation.state"].to_pylist()
        for i in range(3)
    ]
    assert starts[0][0] == starts[1][0]  # same scene, same start
    assert starts[0] != starts[1]  # different noise


def test_first_frames_keep_the_start_of_each_episode_from_the_reset_pose(tmp_path):
    full, short = tmp_path / "full", tmp_path / "short"
    record("two_stage", 1, full, seed=6, image_size=IMG, progress=False, locations=True)
    summary = record("two_stage", 2, short, seed=6, image_size=IMG, progress=False, locations=True, first_frames=2)
    assert summary["episodes"] == 2 and summary["frames"] == 4 and summary["failed"] == 0
    assert [e["length"] for e in _read_jsonl(short / "meta" / "episodes.jsonl")] == [2, 2]
    whole = pq.read_table(full / "data" / "chunk-000" / "episode_000000.parquet").to_pydict()
    start = pq.read_table(short / "data" / "chunk-000" / "episode_000000.parquet").to_pydict()
    for column in ("observation.state", "action", "subtask", "scene_locations"):
        assert start[column] == whole[column][:2], column
    video = "videos/chunk-000/observation.images.agentview/episode_000000.mp4"
    assert len(_read_video(short / video)) == 2
    np.testing.assert_array_equal(_read_video(short / video)[0], _read_video(full / video)[0])
    with pytest.raises(ValueError, match="first_frames"):
        record("pick_place", 1, tmp_path / "bad", image_size=IMG, progress=False, first_frames=0)


def test_locations_end_every_label_and_leave_the_episode_unchanged(tmp_path):
    """`locations` changes the labels only: the same states and actions, each move followed by where it goes."""
    from sim.locations import split_location

    record("two_stage", 1, tmp_path / "plain", seed=4, image_size=IMG, progress=False, action_noise=0.1)
    record("two_stage", 1, tmp_path / "loc", seed=4, image_size=IMG, progress=False, action_noise=0.1, locations=True)
    plain, loc = (
        pq.read_table(tmp_path / name / "data" / "chunk-000" / "episode_000000.parquet").to_pydict()
        for name in ("plain", "loc")
    )
    assert loc["action"] == plain["action"] and loc["observation.state"] == plain["observation.state"]
    split = [split_location(label) for label in loc["subtask"]]
    assert [words for words, _ in split] == plain["subtask"]
    assert all((where is not None) == words.startswith("move") for words, where in split)
    drops = {tuple(where) for (words, where) in split if words.startswith("move above")}
    assert len(drops) == 2  # two objects, two drop points
    assert json.loads((tmp_path / "loc" / "meta" / "info.json").read_text())["locations"] is True


def test_detours_head_over_a_distractor_while_every_label_names_the_target(tmp_path):
    """With detours=1 the recorded hand first passes over another object while the labels say "move to" the
    target; the episode still succeeds and is longer than the direct one."""
    out, direct = tmp_path / "detour", tmp_path / "direct"
    record("pick_place", 1, out, seed=3, image_size=IMG, progress=False, detours=1.0)
    record("pick_place", 1, direct, seed=3, image_size=IMG, progress=False)
    env = tasks.make("pick_place", seed=3, render=False)
    env.reset()
    target = env.object_spec(env.goal.stages[0][0])
    others = [o for o in env.layout.objects if o.name != target.name]
    frames = pq.read_table(out / "data" / "chunk-000" / "episode_000000.parquet").to_pydict()
    moving = [s for s, label in zip(frames["observation.state"], frames["subtask"]) if label.startswith("move to")]
    assert {label for label in frames["subtask"] if label.startswith("move to")} == {
        f"move to the {target.description}"
    }
    assert min(np.linalg.norm(np.subtract(s[:2], o.xy)) for s in moving for o in others) < 0.03
    lengths = [_read_jsonl(d / "meta" / "episodes.jsonl")[0]["length"] for d in (out, direct)]
    assert lengths[0] > lengths[1]
    assert json.loads((out / "meta" / "info.json").read_text())["detours"] == 1.0
    with pytest.raises(ValueError, match="detours"):
        record("pick_place", 1, tmp_path / "bad", image_size=IMG, progress=False, detours=2.0)


def test_locations_list_where_every_thing_is_on_every_frame(tmp_path):
    """With locations, each frame lists every object and container with its location symbols; the target's
    entry agrees with the label of the move towards it, and it follows the object as the hand carries it."""
    from sim.locations import SCENE_LOCATIONS, SCENE_SEPARATOR, split_location

    out = tmp_path / "loc"
    record("pick_place", 1, out, seed=3, image_size=IMG, progress=False, locations=True)
    frames = pq.read_table(out / "data" / "chunk-000" / "episode_000000.parquet").to_pydict()
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"][SCENE_LOCATIONS]["dtype"] == "string"
    env = tasks.make("pick_place", seed=3, render=False)
    env.reset()
    things = [o.description for o in env.layout.objects] + [c.description for c in env.layout.containers]
    scenes = [
        {words.strip(): xy for words, xy in map(split_location, scene.split(SCENE_SEPARATOR))}
        for scene in frames[SCENE_LOCATIONS]
    ]
    assert all(sorted(scene) == sorted(things) for scene in scenes)
    target = env.object_spec(env.goal.stages[0][0]).description
    words, where = split_location(frames["subtask"][0])
    assert words.strip() == f"move to the {target}"
    np.testing.assert_allclose(scenes[0][target], where)
    assert np.linalg.norm(scenes[-1][target] - scenes[0][target]) > 0.1  # carried into the container
    record("pick_place", 1, tmp_path / "plain", seed=3, image_size=IMG, progress=False)
    plain = pq.read_table(tmp_path / "plain" / "data" / "chunk-000" / "episode_000000.parquet")
    assert SCENE_LOCATIONS not in plain.column_names
