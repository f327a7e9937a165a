"""`python -m app.planner_eval`: the exact-match metric, and one end-to-end run on a random tiny checkpoint."""

import json

import pytest

from app import planner_eval
from app.cli import main as cli_main
from sim.expert import run_episode
from sim.tasks import make

PREDICTIONS = [
    "move to the red cube",
    "grasp the red cube",
    "lift the blue cube",
    "",
    "release the red cube",
    "move above the white bowl",
    "grasp the red cube",
    "",
]
LABELS = [
    "move to the red cube",
    "Grasp the red cube.",  # compared as training's target: cleaned, lower-cased
    "lift the red cube",
    "move above the white bowl",
    "release the red cube",
    "move above the white bowl",
    "move to the red cube",
    "move above the white bowl",
]
TASKS = ["pick_place"] * 3 + ["two_stage"] * 5


def test_score_counts_exact_matches_overall_per_task_and_per_phase():
    result = planner_eval.score(PREDICTIONS, LABELS, TASKS)
    assert (result["frames"], result["correct"], result["exact_match"]) == (8, 4, 0.5)
    assert result["per_task"] == {
        "pick_place": {"frames": 3, "correct": 2, "exact_match": 2 / 3},
        "two_stage": {"frames": 5, "correct": 2, "exact_match": 2 / 5},
    }
    per_phase = {phase: (row["frames"], row["correct"]) for phase, row in result["per_phase"].items()}
    assert per_phase == {
        "move to": (2, 1),
        "grasp": (1, 1),
        "lift": (1, 0),
        "move above": (3, 1),
        "release": (1, 1),
    }
    assert list(result["per_phase"]) == list(planner_eval.PHASES)
    assert result["phase_match"] == 5 / 8  # "lift the blue cube" has the right verb; "" and "grasp" do not
    assert result["mismatches"] == [
        {"expected": "move above the white bowl", "got": "", "count": 2},
        {"expected": "lift the red cube", "got": "lift the blue cube", "count": 1},
        {"expected": "move to the red cube", "got": "grasp the red cube", "count": 1},
    ]


def test_score_refuses_ragged_or_empty_input():
    with pytest.raises(ValueError, match="7 predictions, 8 labels"):
        planner_eval.score(PREDICTIONS[:-1], LABELS, TASKS)
    with pytest.raises(ValueError, match="no frames"):
        planner_eval.score([], [], [])


def test_phase_of_tells_move_to_from_move_above():
    assert planner_eval.phase_of("move to the white box") == "move to"
    assert planner_eval.phase_of("move above the white box") == "move above"
    assert planner_eval.phase_of("movement") == planner_eval.phase_of("wave") == "other"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("planner_eval") / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(out), "--seed", "4"]) == 0
    return out


def test_one_episode_end_to_end(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--tokenizer",
        str(tiny_checkpoint / "tokenizer.model"),
    ]
    args += [
        "--tasks",
        "pick_place",
        "--episodes",
        "1",
        "--every",
        "5",
        "--batch",
        "4",
        "--json",
        str(out),
    ]
    assert planner_eval.main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads(printed[-1])
    assert any(line.startswith("exact match: ") for line in printed)
    assert {
        "frames",
        "exact_match",
        "phase_match",
        "per_task",
        "per_phase",
        "mismatches",
        "latency_ms",
    } <= set(summary)

    env = make("pick_place", seed=planner_eval.DEFAULT_SEED, render=False)
    expert_labels = run_episode(env, seed=planner_eval.DEFAULT_SEED)["subtasks"][::5]
    rows = json.loads(out.read_text())["frames_detail"]
    assert summary["frames"] == len(rows) == len(expert_labels) > 1
    assert [row["label"] for row in rows] == expert_labels
    assert [row["step"] for row in rows] == list(range(0, 5 * len(rows), 5))
    assert summary["correct"] == sum(row["label"] == row["prediction"] for row in rows)
    assert summary["image_size"] == 112 and summary["per_task"]["pick_place"]["frames"] == len(rows)
    assert sum(row["frames"] for row in summary["per_phase"].values()) == len(rows)
    latency = summary["latency_ms"]
    assert latency["batched"] and latency["per_frame"]["count"] == len(rows)
    assert latency["per_call"]["count"] == -(-len(rows) // 4) and latency["per_frame"]["p50"] > 0


def test_a_wrong_checkpoint_dir_is_one_error_line(tmp_path, capsys):
    assert planner_eval.main(["--checkpoint", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m app.planner_eval: error: ") and "missing does not exist" in err
    assert planner_eval.main(["--checkpoint", str(tmp_path), "--tasks", "stack"]) == 2
    assert "unknown task 'stack'" in capsys.readouterr().err
    assert planner_eval.main(["--checkpoint", str(tmp_path), "--config", "huge"]) == 2
    assert "unknown --config 'huge'" in capsys.readouterr().err


def test_location_words_are_scored_apart_from_the_subtask():
    """The words decide exact match; the location's error is measured on frames whose words match."""
    labels = ["move to the red cube <x10><y10>", "move to the red cube <x10><y10>", "lift the red cube <x10><y10>"]
    predictions = ["move to the red cube <x11><y10>", "move to the red cube", "lift the blue cube <x10><y10>"]
    result = planner_eval.score(predictions, labels, ["pick_place"] * 3)
    assert result["exact_match"] == 2 / 3
    assert result["location"] == {
        "frames": 2,
        "missing": 1,
        "median_cm": 1.0,
        "within_grasp_tolerance": 0.5,
    }
    assert planner_eval.score(PREDICTIONS, LABELS, TASKS)["location"] == {"frames": 0}


def test_a_tokenizer_with_some_location_bins_speaks_locations():
    # A slots-layout dataset names only the bins around its slots, never the whole table.
    assert planner_eval.speaks_locations(["▁move", "<x06>", "<y07>", "<y21>"])
    assert not planner_eval.speaks_locations(["▁move", "▁to", "<unk>", "<pad>"])
