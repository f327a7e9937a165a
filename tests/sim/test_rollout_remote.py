"""The rollout runner's robot-session path against an in-process fake runtime: what goes over the wire, how
chunks are replayed, how planner subtasks land in the timeline, and how an unfit runtime is refused.
(`test_rollout_runtime.py` does the same against a real `robot-runtime serve`, slowly.)"""

from __future__ import annotations

import json

import numpy as np
from fake_runtime import FakeRuntime
from grpc_serving import serving

from app.cli import main as cli_main
from protos.wire import image_to_numpy, tensor_to_numpy


def _rollout(address: str, out, *extra: str) -> int:
    return cli_main(
        [
            "rollout",
            "--env",
            "builtin:pick_place",
            "--server",
            address,
            "--out",
            str(out),
            "--image-size",
            "64",
            "--max-steps",
            "12",
            "--replan-steps",
            "5",
            "--timeout",
            "10",
            *extra,
        ]
    )


def test_each_episode_is_a_session_replanned_every_few_steps(tmp_path, capsys):
    fake = FakeRuntime()
    with serving(fake) as address:
        assert _rollout(address, tmp_path / "run", "--episodes", "2", "--seed", "5") == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())

    assert len(fake.sessions) == 2  # a fresh session (and planner state) per episode
    for observations in fake.sessions.values():
        assert [o.step for o in observations] == [0, 1, 2]  # env steps 0, 5, 10 with --replan-steps 5
        for o in observations:
            assert sorted(o.images) == ["agentview", "wrist"]
            assert image_to_numpy(o.images["wrist"], "wrist").shape == (64, 64, 3)
            assert tensor_to_numpy(o.state, "state").shape == (8,)
            assert o.task.startswith("put the ")
    first, second = results["episodes"]
    assert [first["seed"], second["seed"]] == [5, 6] and first["steps"] == second["steps"] == 12
    assert first["subtasks"] == [
        {"step": 0, "text": "reach for it", "version": 1},
        {"step": 10, "text": "grasp it", "version": 2},
    ]
    assert first["planner_updates"] == 2
    assert results["latency_ms"]["count"] == 6 and results["server_ms"]["p50"] == 2.0
    assert "[pick_place ep 0 seed 5] step   0: reach for it" in printed
    assert "[pick_place ep 0 seed 5] step  10: grasp it" in printed


def test_the_actions_of_the_chunks_reach_the_env(tmp_path):
    fake = FakeRuntime()
    with serving(fake) as address:
        assert _rollout(address, tmp_path / "run", "--episodes", "1") == 0
    states = [tensor_to_numpy(o.state, "state") for o in next(iter(fake.sessions.values()))]
    dx = np.diff([s[0] for s in states])
    assert np.all(dx > 0.02)  # five +0.2 x-moves (1 cm each) between two observations


def test_worker_processes_share_one_runtime(tmp_path):
    fake = FakeRuntime()
    with serving(fake) as address:
        assert (
            _rollout(address, tmp_path / "run", "--env", "builtin:all", "--episodes", "1", "--workers", "2", "--quiet")
            == 0
        )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(fake.sessions) == 2 and sorted(results["per_task"]) == ["pick_place", "two_stage"]
    assert all(e["error"] is None and e["steps"] == 12 for e in results["episodes"])


def test_a_runtime_with_other_action_dims_is_refused_in_one_line(tmp_path, capsys):
    with serving(FakeRuntime(action_dims=8)) as address:
        assert _rollout(address, tmp_path / "run", "--episodes", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "sends 8-D actions" in err and "--action-dims 7" in err


def test_episodes_are_shared_out_over_several_servers(tmp_path):
    first, second = FakeRuntime(), FakeRuntime()
    with serving(first) as a, serving(second) as b:
        assert _rollout(f"{a},{b}", tmp_path / "run", "--episodes", "4", "--workers", "2", "--quiet") == 0
        results = json.loads((tmp_path / "run" / "results.json").read_text())
        assert _rollout(f"{a},{b}", tmp_path / "one", "--episodes", "4", "--workers", "1") == 2
    assert results["config"]["servers"] == [a, b] and results["config"]["policy"] == f"runtimes at {a}, {b}"
    assert len(results["episodes"]) == 4 and all(e["error"] is None for e in results["episodes"])
    per_worker = {w: sum(e["worker"] == w for e in results["episodes"]) for w in (0, 1)}
    assert len(first.sessions) == per_worker[0] and len(second.sessions) == per_worker[1]
    assert len(first.sessions) + len(second.sessions) == 4
