"""The bench scripts are files, not a package: each test module gets its script loaded as a module."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cold_start() -> types.ModuleType:
    return _load("cold_start")


@pytest.fixture(scope="module")
def vs_openpi() -> types.ModuleType:
    return _load("vs_openpi")


@pytest.fixture(scope="module")
def multi_robot() -> types.ModuleType:
    return _load("multi_robot")


@pytest.fixture(scope="module")
def locate_probe() -> types.ModuleType:
    return _load("locate_probe")
