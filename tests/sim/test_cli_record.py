"""`robot-runtime record`: a small LeRobot v2.1 dataset through the command line, and its input errors."""

import json

import pyarrow.parquet as pq
import pytest

from app.cli import main as cli_main

IMG = 48
COLUMNS = {"observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index", "subtask"}


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_record_cli_writes_a_dataset_with_the_lerobot_schema(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = cli_main(
        [
            "record",
            "--env",
            "builtin:all",
            "--episodes",
            "2",
            "--out",
            str(out),
            "--seed",
            "3",
            "--image-size",
            str(IMG),
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "recorded 2 episodes" in printed and "0 failed expert episodes dropped" in printed

    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["total_episodes"] == 2 and info["fps"] == 10
    features = info["features"]
    assert features["observation.state"]["shape"] == [8] and features["action"]["shape"] == [7]
    assert features["subtask"]["dtype"] == "string"
    for camera in ("agentview", "wrist"):
        assert features[f"observation.images.{camera}"]["shape"] == [IMG, IMG, 3]

    episodes = _jsonl(out / "meta" / "episodes.jsonl")
    assert [e["task_name"] for e in episodes] == ["pick_place", "two_stage"]
    assert [e["seed"] for e in episodes] == [3, 4]
    assert len(_jsonl(out / "meta" / "tasks.jsonl")) == info["total_tasks"]
    for e in episodes:
        i = e["episode_index"]
        table = pq.read_table(out / "data" / "chunk-000" / f"episode_{i:06d}.parquet")
        assert set(table.column_names) == COLUMNS and table.num_rows == e["length"]
        assert table.column("subtask").to_pylist()[0].startswith("move to the ")
        for camera in ("agentview", "wrist"):
            assert (out / "videos" / "chunk-000" / f"observation.images.{camera}" / f"episode_{i:06d}.mp4").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "builtin:nope", "--episodes", "1"], "unknown built-in task 'nope'"),
        (["--env", "libero:libero_spatial", "--episodes", "1"], "built-in tasks only"),
        (["--env", "pick_place", "--episodes", "1"], "expected builtin:TASK"),
        (["--env", "builtin:pick_place", "--episodes", "0"], "--episodes must be >= 1"),
        (["--env", "builtin:pick_place", "--episodes", "1", "--detours", "1.5"], "--detours must be a probability"),
        (["--env", "builtin:pick_place", "--episodes", "1", "--first-frames", "0"], "--first-frames must be >= 1"),
    ],
)
def test_record_cli_rejects_bad_input_in_one_line(tmp_path, capsys, argv, message):
    assert cli_main(["record", *argv, "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("robot-runtime record: error: ") and message in err


def test_record_cli_refuses_a_non_empty_output(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "something").write_text("x")
    assert cli_main(["record", "--env", "builtin:pick_place", "--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--overwrite" in err
