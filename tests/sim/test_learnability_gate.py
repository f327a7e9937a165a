"""The learnability gate (bundles/learnability_gate.sh): record one scene, train from scratch, serve, score."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GATE = ROOT / "bundles" / "learnability_gate.sh"


def _gate(tmp_path, **settings) -> dict:
    env = dict(os.environ, GATE_OUT=str(tmp_path / "gate"), GATE_PROGRESS="--no-progress",
               PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"), **{f"GATE_{k.upper()}": str(v) for k, v in settings.items()})
    done = subprocess.run(["bash", str(GATE)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp_path / "gate" / "rollout" / "results.json").read_text())


def test_a_short_gate_learns_to_move_to_the_object(tmp_path):
    """Ten demonstrations and a few hundred steps: not yet a grasp, but the policy served through the runtime has
    learnt the approach, so every episode's subtasks advance past "move to"."""
    results = _gate(tmp_path, demos=10, steps=250, episodes=2)
    assert len(results["episodes"]) == 2 and all(e["error"] is None for e in results["episodes"])
    for episode in results["episodes"]:
        texts = [mark["text"] for mark in episode["subtasks"]]
        assert any(not t.startswith("move to") for t in texts), texts
    assert results["planner_closed_loop"]["unknown_phrase_rate"] == 0.0


@pytest.mark.slow
def test_the_gate_solves_its_scene_nine_times_in_ten(tmp_path):
    results = _gate(tmp_path)
    assert len(results["episodes"]) == 10
    assert results["per_task"]["pick_place"]["successes"] >= 9, results["per_task"]
