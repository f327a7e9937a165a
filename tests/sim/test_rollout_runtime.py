"""A rollout against a real `robot-runtime serve` on a random tiny checkpoint: the runner starts the server,
runs sessions from two worker processes, and stops it. Success is not expected; the plumbing is the point."""

import json

import pytest

from app.cli import main as cli_main

MAX_STEPS = 12
REPLAN = 4


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("rollout") / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(out), "--seed", "2"]) == 0
    return out


@pytest.mark.slow
def test_rollout_against_a_local_runtime_runs_end_to_end(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(
        [
            "rollout",
            "--env",
            "builtin:pick_place",
            "--episodes",
            "2",
            "--workers",
            "2",
            "--checkpoint",
            str(tiny_checkpoint),
            "--max-steps",
            str(MAX_STEPS),
            "--replan-steps",
            str(REPLAN),
            "--image-size",
            "96",
            "--out",
            str(out),
            "--video",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["policy"].startswith("runtime at 127.0.0.1:")
    assert [e["steps"] for e in results["episodes"]] == [MAX_STEPS, MAX_STEPS]
    assert {e["worker"] for e in results["episodes"]} <= {0, 1}
    for episode in results["episodes"]:
        assert episode["error"] is None and (out / episode["video"]).is_file()
    chunks = -(-MAX_STEPS // REPLAN)
    assert results["latency_ms"]["count"] == 2 * chunks
    assert results["server_ms"]["count"] == 2 * chunks and results["server_ms"]["p50"] > 0
    assert "runtime serving" in printed and "results: " in printed
    assert "runtime ready" in (out / "serve.log").read_text()
