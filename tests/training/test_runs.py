"""Whole runs of the tiny twins (slow: each recipe compiles its own train step).

- a run killed with SIGKILL after a checkpoint and resumed logs the same losses, and ends with the same
  weights, as a run that never stopped;
- KI stage 1 leaves the action expert and stage 2 everything but the expert bit-identical, stage 2 starting
  from stage 1's weights and tokenizer;
- LoRA leaves every base language-model weight bit-identical; with EMA the served weights are the average;
- data parallel + FSDP over 4 CPU devices computes the same losses as one device;
- the reasoning LoRA twin trains on cot_simple.json-style annotations, and `serve --reasoning` streams chunks
  on its reasoning over loopback.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from app.cli import main
from policy.checkpoint import flatten, load_params

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
HYBRID = "pi05_subtask_hybrid_tiny"


@pytest.fixture(scope="module")
def workspace(recorded_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, [f"data.path={recorded_dataset}", f"assets_dir={root / 'assets'}", f"checkpoint_dir={root / 'ckpt'}"]


def _sets(overrides) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def _train(config: str, exp: str, overrides, *extra: str) -> pathlib.Path:
    assert main(["compute-norm-stats", "--config", config, *_sets(overrides), "--no-progress"]) == 0
    assert main(["train", config, "--exp-name", exp, *_sets(overrides), "--no-progress", *extra]) == 0
    return pathlib.Path(overrides[2].split("=", 1)[1]) / config / exp


def _records(run: pathlib.Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def _params(step_dir: pathlib.Path) -> dict[str, np.ndarray]:
    return flatten(load_params(step_dir / "params"))


def test_resume_after_kill_repeats_the_uninterrupted_run(workspace):
    root, base = workspace
    schedule = ["save_interval=20", "log_interval=5"]
    reference = _train(HYBRID, "straight", [*base, *schedule, "num_train_steps=60"])

    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "train",
        HYBRID,
        "--exp-name",
        "killed",
        "--no-progress",
        *_sets([*base, *schedule, "num_train_steps=1000"]),
    ]
    killed = root / "ckpt" / HYBRID / "killed"
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (killed / "20" / "tokenizer.model").exists():
            assert process.poll() is None, "training exited before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    assert (
        main(
            [
                "train",
                HYBRID,
                "--exp-name",
                "killed",
                "--resume",
                "--no-progress",
                *_sets([*base, *schedule, "num_train_steps=60"]),
            ]
        )
        == 0
    )
    straight, resumed = _records(reference), _records(killed)
    assert sorted(straight) == sorted(resumed)
    for step in sorted(straight):
        if step >= 20:
            for key in ("loss", "subtask_ce", "fast_ce", "flow_mse", "grad_norm"):
                assert resumed[step][key] == straight[step][key], (step, key)
    a, b = _params(reference / "60"), _params(killed / "60")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_ki_stages_freeze_exactly_what_they_say(workspace):
    from training.filters import KI_STAGE2_TRAINABLE, is_trainable
    from training.weights import initial_params

    _, base = workspace
    steps = ["num_train_steps=3", "save_interval=3", "log_interval=1"]
    stage1 = _train("pi05_subtask_fast_tiny", "ki", [*base, *steps])
    # a tokenizer of another size would be trained if stage 2 did not take stage 1's, whose ids its weights know
    stage2 = _train("pi05_action_expert_tiny", "ki", [*base, *steps, "tokenizer_vocab_size=300"])
    assert (stage2 / "3" / "tokenizer.model").read_bytes() == (stage1 / "3" / "tokenizer.model").read_bytes()

    from training.config import get_config

    init = flatten(initial_params(get_config("pi05_subtask_fast_tiny").model, 42, None))
    after1, after2 = _params(stage1 / "3"), _params(stage2 / "3")
    expert = {k for k in init if is_trainable(k, KI_STAGE2_TRAINABLE)}
    assert expert and len(expert) < len(init)
    for key in init:
        if key in expert:
            assert np.array_equal(after1[key], init[key]), f"stage 1 moved the expert's {key}"
            assert not np.array_equal(after2[key], after1[key]) or "lora" in key, f"stage 2 did not train {key}"
        else:
            assert np.array_equal(after2[key], after1[key]), f"stage 2 moved the VLM's {key}"
    assert any(not np.array_equal(after1[k], init[k]) for k in init if k not in expert)
    assert "subtask_ce" in _records(stage1)[0] and "flow_mse" not in _records(stage1)[0]
    assert "flow_mse" in _records(stage2)[0] and "subtask_ce" not in _records(stage2)[0]


def test_lora_keeps_base_weights_and_serves_ema(workspace):
    from training.filters import LORA_FROZEN, is_trainable

    _, base = workspace
    start = _train("pi05_subtask_fast_tiny", "lora_base", [*base, "num_train_steps=1", "save_interval=1"])
    run = _train(
        "pi05_custom_lora_tiny",
        "lora",
        [*base, "num_train_steps=3", "save_interval=3", "log_interval=1", f"init_from={start}", "ema_decay=0.5"],
    )
    loaded, after = _params(start / "1"), _params(run / "3")
    lora = [k for k in after if "lora" in k]
    assert lora and all(k not in loaded for k in lora)
    frozen = [k for k in after if not is_trainable(k, frozen=LORA_FROZEN)]
    assert frozen and all("llm" in k and "lora" not in k for k in frozen)
    for key in frozen:
        assert np.array_equal(after[key], loaded[key]), key
    assert any(not np.array_equal(after[k], loaded[k]) for k in after if k.startswith("PaliGemma/img"))

    import orbax.checkpoint as ocp

    with ocp.PyTreeCheckpointer() as checkpointer:
        raw = flatten(checkpointer.restore(run / "3" / "train_state")["trainable"])
    assert raw and set(raw) <= set(after) and not set(raw) & set(frozen)
    assert any(not np.array_equal(np.asarray(raw[k]), after[k]) for k in raw)


def test_data_parallel_fsdp_on_four_cpu_devices_matches_one_device(workspace):
    root, base = workspace
    steps = ["num_train_steps=3", "save_interval=3", "log_interval=1"]
    single = _train(HYBRID, "one_device", [*base, *steps])
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "MUJOCO_GL": "osmesa"}
    sets = [*base, *steps, "fsdp_devices=2", "fsdp_min_mb=0"]
    for command in (["compute-norm-stats", "--config", HYBRID], ["train", HYBRID, "--exp-name", "mesh"]):
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *command, *_sets(sets), "--no-progress"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        if command[0] == "train":
            assert "FSDP: " in result.stderr and "FSDP: 0 of" not in result.stderr
    one, mesh = _records(single), _records(root / "ckpt" / HYBRID / "mesh")
    for step in (0, 1, 2):
        for key in ("loss", "subtask_ce", "fast_ce", "flow_mse"):
            np.testing.assert_allclose(mesh[step][key], one[step][key], rtol=2e-3, err_msg=f"{key} at step {step}")


@pytest.fixture(scope="module")
def reasoning_run(workspace, recorded_dataset):
    """The reasoning LoRA twin trained 3 steps on the recording's cot_simple.json → run, dataset, annotations."""
    from lerobot_layouts import write_cot

    from training.lerobot import LeRobotDataset

    root, base = workspace
    cot = root / "cot_simple.json"
    dataset = LeRobotDataset(recorded_dataset, 10)
    document = write_cot(dataset, cot)
    run = _train(
        "pi05_reason_lora_tiny",
        "reason",
        [*base, "num_train_steps=3", "save_interval=3", "log_interval=1", f"data.reasoning_json={cot}"],
    )
    return run, dataset, document


def test_reasoning_config_trains_text_and_flow(workspace, reasoning_run, capsys):
    import cv2

    from actor.engine import ChunkEngine, ChunkRequest, EngineConfig
    from policy.model_dir import ModelDir

    root, _ = workspace
    run, dataset, document = reasoning_run
    records = _records(run)
    assert all(np.isfinite(r["subtask_ce"]) and np.isfinite(r["flow_mse"]) for r in records.values())
    assert (run / "3" / "params").is_dir()

    # Both halves of the protocol load the checkpoint as it stands: the planner chooses, the actor acts.
    frame = dataset.frame(0)
    image = frame.images["observation.images.agentview"]
    png = root / "agentview.png"
    assert cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    instruction = document[str(frame.episode_index)]["segments"][0]["content"]
    capsys.readouterr()
    assert (
        main(
            [
                "plan",
                "--checkpoint",
                str(run / "3"),
                "--reasoning",
                "--json",
                "--max-tokens",
                "8",
                "--image",
                f"base_0_rgb={png}",
                "--task",
                instruction,
            ]
        )
        == 0
    )
    step = json.loads(capsys.readouterr().out)
    assert step["decision"] in ("think", "act") and np.isfinite(step["margin"])
    engine = ChunkEngine.from_model_dir(ModelDir.open(run / "3"), EngineConfig(action_dims=7, reasoning=True))
    [chunk] = engine.run([ChunkRequest({"base_0_rgb": image}, frame.task, "Next I move", frame.state, seed=0)])
    assert chunk.actions.shape == (engine.model_config.action_horizon, 7) and np.isfinite(chunk.actions).all()


def test_serve_reasoning_streams_chunks_on_the_first_context_or_a_thought(reasoning_run, tmp_path):
    """`robot-runtime serve --reasoning` (runtime + planner processes) over loopback: every chunk is conditioned
    on the first-step context (version 0) or on a reasoning the planner sent, and versions move only with those."""
    import grpc

    from policy.prompts import reasoning_first_context
    from protos.robot_runtime.v1 import runtime_pb2 as pb
    from protos.wire import numpy_to_image, numpy_to_tensor, tensor_to_numpy

    sys.path.insert(0, str(ROOT / "tests" / "runtime"))
    from server_process import Stream, run_server, runtime_stats, wait_until

    run, dataset, document = reasoning_run
    first = dataset.frame(0)
    context = reasoning_first_context(first.task)
    assert context == document[str(first.episode_index)]["segments"][0]["content"]
    with (
        run_server(run / "3", tmp_path, "--reasoning", "--max-tokens", "8") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stream = Stream(channel, task=first.task, session_id="arm")
        chunks = []

        def planned(answers: int) -> bool:
            """Sends one more observation (the link drops one the planner was not up for), then: enough answers?"""
            step = len(chunks) + 1
            frame = dataset.frame(step % len(dataset))
            images = {c: numpy_to_image(frame.images[f"observation.images.{c}"]) for c in ("agentview", "wrist")}
            chunks.append(stream.chunk(pb.Observation(step=step, images=images, state=numpy_to_tensor(frame.state))))
            return runtime_stats(channel).latency["planner_decode"].count >= answers

        wait_until(lambda: planned(4), 240, "four planner answers")
        stats = runtime_stats(channel)
        stream.close()

    thoughts = {update.version: update.text for update in stream.subtasks}
    assert sorted(thoughts) == list(range(1, len(stream.subtasks) + 1)) and all(thoughts.values())
    assert len(thoughts) <= stats.counters["subtask_updates"] <= stats.latency["planner_decode"].count
    texts = {0: context, **thoughts}
    for chunk in chunks:
        actions = tensor_to_numpy(chunk.actions, "actions")
        assert actions.shape == (10, 7) and np.isfinite(actions).all()
        assert chunk.subtask == texts[chunk.subtask_version]
    versions = [c.subtask_version for c in chunks]
    assert versions == sorted(versions)
