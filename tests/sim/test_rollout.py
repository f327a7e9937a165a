"""The rollout runner with the scripted experts: success, results.json, videos, workers, CLI errors."""

import json

import cv2
import pytest

from app.cli import main as cli_main
from sim.envspec import EnvSpecError, parse_env
from sim.rollout_episodes import VIDEO_VIEW_SIZE, video_panels
from sim.rollout_report import latency_summary
from sim.tasks import list_tasks

EPISODE_FIELDS = {
    "task",
    "episode",
    "seed",
    "instruction",
    "success",
    "steps",
    "subtasks",
    "planner_updates",
    "video",
    "error",
    "wall_s",
    "worker",
}
STAGES = {"pick_place": 1, "two_stage": 2}


def _rollout(tmp_path, *args) -> tuple[int, dict | None]:
    out = tmp_path / "run"
    rc = cli_main(["rollout", "--out", str(out), *args])
    path = out / "results.json"
    return rc, json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("task", list_tasks())
def test_scripted_rollout_solves_each_builtin_task(tmp_path, capsys, task):
    rc, results = _rollout(
        tmp_path, "--env", f"builtin:{task}", "--policy", "scripted", "--episodes", "3", "--seed", "20"
    )
    assert rc == 0
    assert results["success_rate"] == 1.0
    assert set(results) >= {"success_rate", "episodes", "per_task", "latency_ms", "env_step_ms", "config"}
    assert results["per_task"] == {
        task: {
            "episodes": 3,
            "successes": 3,
            "success_rate": 1.0,
            "mean_steps": pytest.approx(results["per_task"][task]["mean_steps"]),
        }
    }
    assert {"count", "mean", "p50", "p90", "p99", "max"} <= set(results["latency_ms"])
    assert [e["seed"] for e in results["episodes"]] == [20, 21, 22]
    figure = cv2.imread(str(tmp_path / "run" / "summary.png"))
    assert figure is not None and figure.shape[1] >= 800 and figure.std() > 10
    for episode in results["episodes"]:
        assert set(episode) == EPISODE_FIELDS
        assert episode["success"] and episode["error"] is None and episode["video"] is None
        texts = [mark["text"] for mark in episode["subtasks"]]
        assert episode["subtasks"][0]["step"] == 0 and texts[0].startswith("move to the ")
        assert texts[-1].startswith("release the ") and len(texts) >= 5 * STAGES[task]
        steps = [mark["step"] for mark in episode["subtasks"]]
        assert steps == sorted(steps) and steps[-1] < episode["steps"]

    printed = capsys.readouterr().out
    first = results["episodes"][0]
    assert f"[{task} ep 0 seed 20] step   0: {first['subtasks'][0]['text']}" in printed
    assert f"[{task} ep 0 seed 20] success after {first['steps']} steps" in printed
    assert f"{task}  " in printed and "results: " in printed


def test_scripted_rollout_writes_captioned_videos_with_workers(tmp_path):
    rc, results = _rollout(
        tmp_path,
        "--env",
        "builtin:all",
        "--policy",
        "scripted",
        "--episodes",
        "1",
        "--video",
        "--workers",
        "2",
        "--image-size",
        "64",
        "--quiet",
    )
    assert rc == 0 and results["success_rate"] == 1.0
    assert sorted(results["per_task"]) == list_tasks()
    assert results["config"]["workers"] == 2
    for episode in results["episodes"]:
        path = tmp_path / "run" / episode["video"]
        assert path.is_file() and path.name.endswith("_success.mp4")
        capture = cv2.VideoCapture(str(path))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = capture.read()
        capture.release()
        assert ok and frames == episode["steps"] + 1
        # both cameras at viewing size, then the policy's two 64² inputs in one column, over a caption band
        assert frame.shape[1] == 2 * VIDEO_VIEW_SIZE + VIDEO_VIEW_SIZE // 2 and frame.shape[0] > VIDEO_VIEW_SIZE
    assert not list((tmp_path / "run" / "videos").glob(".w*"))


def test_video_panels_show_the_views_beside_the_policy_input():
    from sim.episode import BuiltinSim, Job

    sim = BuiltinSim(64, render=True, view_size=256)
    try:
        obs = sim.start(Job(0, "pick_place", 0, 4))
        plain = BuiltinSim(64, render=True)
        try:
            same = plain.start(Job(0, "pick_place", 0, 4))
        finally:
            plain.close()
    finally:
        sim.close()
    for camera, image in obs.images.items():  # a viewing render never changes what the policy sees
        assert image.shape == (64, 64, 3) and (image == same.images[camera]).all()
    panels = video_panels(obs)
    assert [p.shape for p in panels] == [(256, 256, 3), (256, 256, 3), (256, 128, 3)]
    top = panels[2][:128]
    assert (top[::2, ::2] == obs.images["agentview"]).all()


def test_same_scene_rollout_repeats_one_seed(tmp_path):
    rc, results = _rollout(
        tmp_path,
        "--env",
        "builtin:pick_place",
        "--policy",
        "scripted",
        "--episodes",
        "2",
        "--seed",
        "9",
        "--same-scene",
        "--quiet",
    )
    assert rc == 0 and [e["seed"] for e in results["episodes"]] == [9, 9]


def test_parse_env_selections():
    assert parse_env("builtin:all").tasks == tuple(list_tasks())
    assert parse_env("builtin:all", ["two_stage"]).tasks == ("two_stage",)
    assert parse_env("builtin:pick_place").label == "builtin:pick_place"
    libero = parse_env("libero:libero_goal", ["0,3", "5"])
    assert (libero.kind, libero.suite, libero.tasks) == ("libero", "libero_goal", ("0", "3", "5"))
    for bad in ("builtin", "builtin:", "mujoco:pick_place", "builtin:stack"):
        with pytest.raises(EnvSpecError):
            parse_env(bad)
    with pytest.raises(EnvSpecError):
        parse_env("builtin:pick_place", ["two_stage"])


def test_latency_summary_ignores_missing_samples():
    assert latency_summary([]) == {"count": 0}
    summary = latency_summary([1.0, 2.0, float("nan"), 3.0])
    assert summary["count"] == 3 and summary["p50"] == 2.0 and summary["max"] == 3.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "builtin:nope", "--policy", "scripted"], "unknown built-in task 'nope'"),
        (["--env", "gym:cartpole", "--policy", "scripted"], "expected builtin:TASK"),
        (["--env", "builtin:all"], "give exactly one of --server ADDR, --checkpoint DIR or --policy scripted"),
        (["--env", "builtin:all", "--policy", "scripted", "--server", "127.0.0.1:1"], "got --server and --policy"),
        (["--env", "builtin:all", "--policy", "random"], "only built-in policy is 'scripted'"),
        (["--env", "builtin:all", "--checkpoint", "/nonexistent/ckpt"], "no such directory"),
        (["--env", "builtin:all", "--policy", "scripted", "--episodes", "0"], "--episodes must be >= 1"),
        (["--env", "builtin:all", "--policy", "scripted", "--workers", "0"], "--workers must be >= 1"),
        (["--env", "libero:libero_spatial", "--policy", "scripted"], "built-in tasks only"),
        (["--env", "builtin:all", "--server", "127.0.0.1:1", "--timeout", "3"], "runtime at 127.0.0.1:1"),
    ],
)
def test_rollout_cli_rejects_bad_input_in_one_line(tmp_path, capsys, argv, message):
    rc, _ = _rollout(tmp_path, *argv)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("robot-runtime rollout: error: ") and message in err


@pytest.mark.slow
def test_scripted_experts_succeed_on_50_episodes_per_task(tmp_path):
    rc, results = _rollout(
        tmp_path, "--env", "builtin:all", "--policy", "scripted", "--episodes", "50", "--workers", "2", "--quiet"
    )
    assert rc == 0
    for task, row in results["per_task"].items():
        assert row["episodes"] == 50 and row["success_rate"] >= 0.95, (task, row)


def test_replan_steps_default_per_benchmark():
    import pathlib

    from sim.rollout import PolicySpec, RolloutConfig
    from sim.rollout_config import BUILTIN_REPLAN_STEPS, LIBERO_REPLAN_STEPS, effective_replan_steps

    def config(env: str, replan: int | None) -> RolloutConfig:
        return RolloutConfig(parse_env(env), 1, PolicySpec("scripted"), pathlib.Path("x"), replan_steps=replan)

    assert effective_replan_steps(config("builtin:all", None)) == BUILTIN_REPLAN_STEPS == 2
    assert effective_replan_steps(config("libero:libero_spatial", None)) == LIBERO_REPLAN_STEPS == 5
    assert effective_replan_steps(config("builtin:all", 7)) == 7
