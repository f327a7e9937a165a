"""Multi-process training on jax.distributed: two CPU processes on localhost (gloo collectives), each reading its
half of every global batch, log the losses of one process reading the whole batch; the checkpoint they write
together resumes in a single process and continues that single-process run."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "pi05_subtask_hybrid_tiny"
TERMS = ("loss", "subtask_ce", "fast_ce", "flow_mse")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(overrides: list[str], exp: str, *extra: str) -> list[str]:
    sets = [arg for o in overrides for arg in ("--set", o)]
    return [sys.executable, "-m", "app.cli", "train", CONFIG, "--exp-name", exp, "--no-progress", *sets, *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
    return {**env, "JAX_PLATFORMS": "cpu", "MUJOCO_GL": env.get("MUJOCO_GL", "osmesa")}


def _records(run: pathlib.Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def _close(a: dict, b: dict, step: int) -> None:
    for term in TERMS:
        assert a[term] == pytest.approx(b[term], rel=2e-4, abs=1e-6), (step, term, a[term], b[term])


def test_two_processes_match_one_and_their_checkpoint_resumes_in_one(recorded_dataset, tmp_path):
    from app.cli import main

    base = [f"data.path={recorded_dataset}", f"assets_dir={tmp_path / 'assets'}", f"checkpoint_dir={tmp_path}"]
    schedule = ["log_interval=1", "save_interval=3", "batch_size=8"]
    sets = [arg for o in base for arg in ("--set", o)]
    assert main(["compute-norm-stats", "--config", CONFIG, *sets, "--no-progress"]) == 0

    one = subprocess.run(
        _command([*base, *schedule, "num_train_steps=6"], "one"), cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-3000:]

    coordinator = f"127.0.0.1:{_free_port()}"
    group = [
        subprocess.Popen(
            _command(
                [*base, *schedule, "num_train_steps=3"],
                "two",
                "--coordinator",
                coordinator,
                "--num-processes",
                "2",
                "--process-id",
                str(rank),
            ),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in group]
    for process, (_, err) in zip(group, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]

    reference, pair = _records(tmp_path / CONFIG / "one"), _records(tmp_path / CONFIG / "two")
    assert sorted(pair) == [0, 1, 2]  # written once, by process 0
    for step in pair:
        _close(pair[step], reference[step], step)

    resumed = subprocess.run(
        _command([*base, *schedule, "num_train_steps=6"], "two", "--resume"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    continued = _records(tmp_path / CONFIG / "two")
    assert sorted(continued) == list(range(6))
    for step in (3, 4, 5):
        _close(continued[step], reference[step], step)
