"""The task registry and the LIBERO-style env interface of the built-in tasks."""

import numpy as np
import pytest

from sim import tasks
from sim.expert import ScriptedExpert


def test_registry():
    assert {"pick_place", "two_stage"} <= set(tasks.list_tasks())
    with pytest.raises(KeyError):
        tasks.make("no_such_task")


@pytest.mark.parametrize("name", ["pick_place", "two_stage"])
def test_observation_format(name):
    env = tasks.make(name, seed=0, image_size=64)
    obs = env.reset()
    assert set(obs) == {"images", "state", "task"}
    assert set(obs["images"]) == {"agentview", "wrist"}
    for img in obs["images"].values():
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 5  # a scene, not a blank frame
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert isinstance(obs["task"], str) and obs["task"].startswith("put the ")
    assert obs["task"] == env.instruction
    if name == "two_stage":
        assert ", then the " in obs["task"]
    assert env.max_steps > 50
    obs, done, info = env.step(np.zeros(7))
    assert not done and info["success"] is False
    env.close()


def test_rectangular_images_and_camera_choice():
    env = tasks.make("pick_place", seed=1, image_size=(48, 80), cameras=("wrist",))
    obs = env.reset()
    assert list(obs["images"]) == ["wrist"]
    assert obs["images"]["wrist"].shape == (48, 80, 3)
    env.close()


def test_actions_move_the_end_effector_like_libero():
    env = tasks.make("pick_place", seed=2, render=False)
    s0 = env.reset()["state"]
    assert np.allclose(s0[3:6], 0.0, atol=1e-6)  # home orientation is the identity
    assert np.allclose(s0[6:], [0.05, -0.05], atol=1e-3)  # open, LIBERO finger signs
    s1 = env.step([1, 0, -0.5, 0, 0, 0, -1])[0]["state"]
    assert np.allclose(s1[:3] - s0[:3], [0.05, 0.0, -0.025], atol=0.005)
    s2 = env.step([0, 0, 0, 0, 0, 1, -1])[0]["state"]
    assert np.allclose(s2[3:6], [0.0, 0.0, 0.5], atol=0.035)  # delta axis-angle 1 * 0.5 rad about z
    for _ in range(5):  # the fingers take about 0.4 s to close
        s3 = env.step([0, 0, 0, 0, 0, 0, 1])[0]["state"]
    assert s3[6] < 0.01 and s3[7] > -0.01  # closed
    for _ in range(5):
        s4 = env.step([0, 0, 0, 0, 0, 0, -1])[0]["state"]
    assert s4[6] > 0.035 and s4[7] < -0.035  # open again
    s5 = env.step([5, 0, 0, 0, 0, 0, -1])[0]["state"]  # clipped to 1
    assert s5[0] - s4[0] < 0.052


def test_bad_actions_are_rejected():
    env = tasks.make("pick_place", seed=0, render=False)
    env.reset()
    with pytest.raises(ValueError):
        env.step(np.zeros(6))
    with pytest.raises(ValueError):
        env.step([0, 0, np.nan, 0, 0, 0, 0])


def _rollout(seed, steps, image_size=48):
    env = tasks.make("two_stage", seed=seed, image_size=image_size)
    obs = env.reset()
    expert = ScriptedExpert()
    states, images = [obs["state"]], [obs["images"]["agentview"]]
    for _ in range(steps):
        a, _ = expert.act(env)
        obs, done, _ = env.step(a)
        states.append(obs["state"])
        images.append(obs["images"]["agentview"])
    env.close()
    return env.instruction, np.stack(states), np.stack(images)


def test_same_seed_same_episode():
    i1, s1, im1 = _rollout(7, 25)
    i2, s2, im2 = _rollout(7, 25)
    assert i1 == i2
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(im1, im2)
    i3, s3, _ = _rollout(8, 3)
    assert i3 != i1 or not np.array_equal(s3, s1[:4])


def test_reset_without_seed_walks_the_seeds():
    env = tasks.make("pick_place", seed=5, render=False)
    env.reset()
    obs6 = env.reset()
    assert env.episode_seed == 6
    other = tasks.make("pick_place", seed=6, render=False)
    ref = other.reset()
    assert obs6["task"] == ref["task"]
    np.testing.assert_array_equal(obs6["state"], ref["state"])
    obs = env.reset(seed=6)
    np.testing.assert_array_equal(obs["state"], ref["state"])


def test_timeout_ends_the_episode():
    env = tasks.make("pick_place", seed=0, render=False, max_steps=3)
    env.reset()
    results = [env.step(np.zeros(7)) for _ in range(3)]
    assert [done for _, done, _ in results] == [False, False, True]
    info = results[-1][2]
    assert info["timeout"] and not info["success"] and info["step"] == 3


def test_layouts_vary_with_the_seed():
    instructions = set()
    for seed in range(12):
        env = tasks.make("pick_place", seed=seed, render=False)
        env.reset()
        instructions.add(env.instruction)
        assert 2 <= len(env.layout.objects) <= 4
    assert len(instructions) >= 8


def _slot_of(xy, slots, jitter):
    near = [i for i, centre in enumerate(slots) if np.max(np.abs(np.subtract(xy, centre))) <= jitter + 1e-9]
    assert len(near) == 1, f"{xy} is not within {jitter} m of exactly one slot of {slots}"
    return near[0]


@pytest.mark.parametrize("name", ["pick_place", "two_stage"])
def test_slots_layout_puts_each_thing_in_its_own_jittered_slot(name):
    target_slots, target_con_slots = set(), set()
    for seed in range(30):
        env = tasks.make(name, seed=seed, render=False)
        env.reset()
        objects = [_slot_of(o.xy, tasks.OBJECT_SLOTS, tasks.OBJECT_JITTER) for o in env.layout.objects]
        containers = [_slot_of(c.xy, tasks.CONTAINER_SLOTS, tasks.CONTAINER_JITTER) for c in env.layout.containers]
        assert len(set(objects)) == len(objects) and len(set(containers)) == len(containers)
        first_object, target_container = env.goal.stages[0]
        target_slots.add(objects[[o.name for o in env.layout.objects].index(first_object)])
        target_con_slots.add(containers[[c.name for c in env.layout.containers].index(target_container)])
    # The instruction, not a fixed place, decides where to go.
    assert target_slots == {0, 1, 2} and target_con_slots == {0, 1}


def test_scatter_layout_uses_the_whole_table_and_slots_refuse_too_many_objects():
    xs = []
    for seed in range(10):
        env = tasks.make("pick_place", seed=seed, render=False, layout="scatter")
        env.reset()
        xs += [o.xy[0] for o in env.layout.objects]
    assert max(xs) - min(xs) > 0.1  # the slots keep every object within 4 cm of x = -9 cm
    with pytest.raises(ValueError, match="slots layout holds 3 objects"):
        tasks.make("pick_place", seed=0, render=False, distractors=3).reset()
    with pytest.raises(ValueError, match="unknown layout"):
        tasks.make("pick_place", layout="grid")


@pytest.mark.parametrize("layout", tasks.LAYOUTS)
def test_every_object_and_every_container_of_a_scene_has_its_own_colour(layout):
    kinds_seen = set()
    for seed in range(40):
        env = tasks.make("two_stage", seed=seed, render=False, layout=layout, distractor_container=1.0)
        env.reset()
        colours = [o.color for o in env.layout.objects]
        assert len(set(colours)) == len(colours), f"seed {seed}: {colours}"
        con_colours = [c.color for c in env.layout.containers]
        assert len(set(con_colours)) == len(con_colours), f"seed {seed}: {con_colours}"
        kinds_seen |= {o.kind for o in env.layout.objects}
    assert kinds_seen == set(tasks.sc.OBJECT_KINDS)  # the kinds still vary
    with pytest.raises(ValueError, match="distinct colours"):
        tasks._distinct_colours([("red", "cube"), ("red", "cylinder")], 2, np.random.default_rng(0))
