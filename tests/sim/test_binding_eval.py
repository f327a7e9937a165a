"""`python -m app.binding_eval`: the aim and nearest-object rules, and one run on a random tiny checkpoint."""

import json

import numpy as np

from app import binding_eval
from app.cli import main as cli_main
from sim import tasks
from sim.expert import ScriptedExpert


def test_aimed_object_is_the_one_the_move_points_at():
    hand = np.array([0.0, 0.0, 0.2])
    objects = np.array([[0.1, -0.14, 0.02], [0.1, 0.0, 0.02], [0.1, 0.14, 0.02]])
    for i, obj in enumerate(objects):
        assert binding_eval.aimed_object(0.5 * (obj - hand), hand, objects) == i
    assert binding_eval.aimed_object(np.array([0.0, 1.0, 0.0]), hand, objects) == 2
    assert binding_eval.nearest_object(np.array([0.09, 0.01]), objects) == 1


def test_the_experts_first_chunk_heads_for_the_target():
    # The rule scores the scripted expert perfectly, so a low actor figure is the actor's, not the rule's.
    for seed in range(10):
        env = tasks.make("pick_place", seed=seed, render=False)
        env.reset()
        hand = np.asarray(env.ee_pos())
        where = np.stack([np.asarray(env.body_pos(o.name)) for o in env.layout.objects])
        expert, move = ScriptedExpert(), np.zeros(3)
        for _ in range(10):
            action, _ = expert.act(env)
            move += action[:3]
            env.step(action)
        target = [o.name for o in env.layout.objects].index(env.goal.stages[0][0])
        assert binding_eval.aimed_object(move, hand, where) == target


def test_one_run_on_a_tiny_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(checkpoint), "--seed", "4"]) == 0
    code = binding_eval.main(
        ["--checkpoint", str(checkpoint), "--tasks", "pick_place", "--scenes", "2", "--no-progress"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["scenes"] == 2 and summary["locations"] is False and summary["planner_located"] is None
    assert summary["planner_locates"] is None
    assert 1 / 3 <= summary["chance"] <= 1 / 2
    for key in ("actor", "planner_words", "policy"):
        assert 0.0 <= summary[key] <= 1.0
    assert binding_eval.main(["--checkpoint", str(checkpoint), "--scenes", "0"]) == 2
    assert "--scenes must be at least 1" in capsys.readouterr().err
