"""A real `robot-runtime serve` (runtime + planner processes) on loopback, on a random tiny checkpoint."""

from __future__ import annotations

import pathlib

import pytest
from server_process import run_server

from app.cli import main as cli_main


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("runtime") / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(out), "--seed", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def runtime_server(tiny_checkpoint, tmp_path_factory):
    with run_server(tiny_checkpoint, tmp_path_factory.mktemp("serve")) as server:
        yield server
