"""Location words: the built-in expert's labels end with its target's table position in 1-cm bins."""

import numpy as np
import pytest

from sim.expert import APPROACH, TRANSPORT, ScriptedExpert
from sim.locations import BIN, location_symbols, location_words, split_location
from sim.tasks import PLACE_X, PLACE_Y, make


def test_words_round_trip_to_the_bin_centre_and_clip_to_the_table():
    xy = np.array([0.0123, -0.0871])
    words, centre = split_location(f"move to the red cube {location_words(xy)}")
    assert words == "move to the red cube"
    assert np.all(np.abs(centre - xy) <= BIN / 2 + 1e-9)
    _, corner = split_location(location_words(np.array([-1.0, 1.0])))
    assert corner == pytest.approx([PLACE_X[0] + BIN / 2, PLACE_Y[1] - BIN / 2])
    assert split_location("move to the red cube") == ("move to the red cube", None)
    assert len(set(location_symbols())) == len(location_symbols()) == 30 + 42


def test_the_expert_names_where_each_move_goes_and_nothing_else():
    env = make("pick_place", seed=3, image_size=32)
    env.reset(seed=3)
    expert = ScriptedExpert(locations=True)
    seen: dict[str, np.ndarray] = {}
    try:
        for _ in range(env.max_steps):
            action, label = expert.act(env)
            words, centre = split_location(label)
            assert (centre is not None) == (expert.phase in (APPROACH, TRANSPORT)), label
            if centre is not None:
                seen.setdefault(expert.phase, centre)
            obj, con = env.goal.stages[0]
            if expert.phase == APPROACH:
                assert np.linalg.norm(centre - env.body_pos(obj)[:2]) <= BIN
            if expert.phase == TRANSPORT:
                assert np.linalg.norm(centre - env.body_pos(con)[:2]) <= 0.04  # drop point in the container
            _, done, info = env.step(action)
            if done:
                break
    finally:
        env.close()
    assert info["success"] and {APPROACH, TRANSPORT} <= set(seen)


def test_the_closed_loop_referee_measures_location_words_against_the_thing_named():
    from sim.episode import Judgement
    from sim.rollout_episodes import RefereeCount

    judged = Judgement(
        fitting=frozenset({"move to the red cube"}),
        phrases=frozenset({"move to the red cube", "move above the white bowl"}),
        places={"red cube": np.array([0.0, 0.0]), "white bowl": np.array([0.1, 0.1])},
    )
    count = RefereeCount()
    count.add(f"move to the red cube {location_words(np.array([0.03, 0.0]))}", judged)
    count.add("move above the white bowl", judged)  # no location words: judged on its words only
    count.add(f"move to the green ball {location_words(np.array([0.0, 0.0]))}", judged)  # names nothing here
    assert (count.steps, count.fit, count.unknown, count.located) == (3, 1, 1, 1)
    assert count.location_error_m == pytest.approx(0.03, abs=BIN)


def test_videos_mark_the_planners_target_on_the_agent_view():
    from sim.episode import BuiltinSim, Job

    sim = BuiltinSim(image_size=32, render=True, view_size=128)
    try:
        obs = sim.start(Job(0, "pick_place", 0, 3))
        env = sim.env
        obj = env.goal.stages[0][0]
        xy = env.body_pos(obj)[:2]
        marked = sim.mark_target(obs, xy)
        column, row = env.pixel("agentview", np.array([xy[0], xy[1], 0.0]), 128)
        changed = np.argwhere(np.any(marked.views["agentview"] != obs.views["agentview"], axis=-1))
        assert len(changed) and np.abs(changed.mean(axis=0) - [row, column]).max() < 2  # a ring around the spot
        assert marked.views["wrist"] is obs.views["wrist"] and marked.images is obs.images
    finally:
        sim.close()
    plain = BuiltinSim(image_size=32, render=True)
    try:
        obs = plain.start(Job(0, "pick_place", 0, 3))
        assert plain.mark_target(obs, xy) is obs
    finally:
        plain.close()
