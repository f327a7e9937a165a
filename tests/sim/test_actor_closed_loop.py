"""`python -m app.actor_closed_loop`: the episode loop with stand-in actors, and one run on a tiny checkpoint."""

import json

import numpy as np

from app import actor_closed_loop
from app.cli import main as cli_main
from sim import tasks
from sim.expert import ScriptedExpert


def test_an_actor_that_does_what_the_expert_does_succeeds_and_one_that_stands_still_does_not():
    env = tasks.make("pick_place", seed=0, render=False)
    shadow = ScriptedExpert()
    heard: list[str] = []

    def expert_actor(obs, subtask, step):
        heard.append(subtask)
        return np.stack([shadow.act(env)[0]] * 3)[:1]

    result = actor_closed_loop.run_episode(env, expert_actor, seed=3, replan_steps=1, locations=True)
    assert result["success"] and result["subtasks"] >= 5
    assert heard[0].startswith("move to the ") and heard[0].endswith(">")  # the words with their place

    still = actor_closed_loop.run_episode(
        env, lambda obs, s, t: np.zeros((4, 7)), seed=3, replan_steps=2, locations=False
    )
    assert not still["success"] and still["steps"] == env.max_steps and still["subtasks"] == 1


def test_one_run_on_a_tiny_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(checkpoint), "--seed", "4"]) == 0
    argv = ["--checkpoint", str(checkpoint), "--tasks", "pick_place", "--episodes", "1", "--no-progress"]
    assert actor_closed_loop.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 1 and summary["per_task"] == {"pick_place": 0} and summary["success"] == 0.0
    assert actor_closed_loop.main([*argv[:2], "--replan-steps", "0"]) == 2
    assert "--replan-steps must be at least 1" in capsys.readouterr().err
