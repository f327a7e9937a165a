"""The persistent compilation cache: where it goes, and that a fresh process reads an engine's executables back.

The cross-process checks run the engine in fresh interpreters (JAX reads the cache's settings once per process),
and assert on what the cache reports (hits, files), not on compile times, which a loaded machine blurs.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from policy.compile_cache import ENV_VAR, JAX_ENV_VAR, default_cache_dir, resolve_cache_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Builds the tiny actor sampler (one bucket) with the cache in argv[1] and samples once; prints what its
# compilations reported, the actions and the cache's files. With argv[2] == "again", it then checks, in the same
# process, that an unusable default directory leaves the cache off and that a stage compiled with the cache off,
# or on without a directory, says so.
ENGINE_SCRIPT = """
import json, pathlib, sys, tempfile

import jax
import jax.numpy as jnp
from flax import nnx

from actor.sampler import FlowSampler
from policy.checkpoint import init_params, model_from_params
from policy.compile_cache import enable_compile_cache
from policy.compiled import CompiledStages, CompileEvent
from policy.config import get_model_config
from policy.observation import ModelInput

cache = pathlib.Path(sys.argv[1])
assert enable_compile_cache(str(cache)) == cache
cfg = get_model_config("tiny")
sampler = FlowSampler(model_from_params(cfg, init_params(cfg, seed=0)), cfg, num_steps=2, buckets=(1,))
size, tokens = cfg.vision.image_size, cfg.max_token_len
observation = ModelInput(
    images={key: jnp.zeros((1, size, size, 3)) for key in cfg.image_keys},
    image_masks={key: jnp.ones(1, bool) for key in cfg.image_keys},
    tokens=jnp.ones((1, tokens), jnp.int32),
    token_mask=jnp.ones((1, tokens), bool),
    state=jnp.zeros((1, cfg.action_dim)),
)
actions = sampler.sample(observation, seed=0)
report = {"events": [[event.stage, event.cache_hit] for event in sampler.compiles], "actions": actions.tolist()}
report["files"] = sorted(path.name for path in cache.iterdir())

if sys.argv[2] == "again":
    not_a_dir = pathlib.Path(tempfile.mkdtemp()) / "file"
    not_a_dir.write_text("")
    report["unusable_default"] = enable_compile_cache(None, {"XDG_CACHE_HOME": str(not_a_dir)})
    stages = CompiledStages(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    stages.executable(CompileEvent("linear", 1), lambda model, x: model(x), (jnp.ones((1, 2)),))
    jax.config.update("jax_enable_compilation_cache", True)  # on, as JAX starts, but with no directory
    jax.config.update("jax_compilation_cache_dir", None)
    stages.executable(CompileEvent("linear", 2), lambda model, x: model(x), (jnp.ones((2, 2)),))
    report["off"] = [event.cache_hit for event in stages.events]
print(json.dumps(report))
"""


def run_engine(cache: pathlib.Path, which: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT, str(cache), which],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_the_engines_executables_from_the_cache(tmp_path):
    cache = tmp_path / "xla"
    first = run_engine(cache, "first")
    assert first["events"] == [["prefix", False], ["denoise", False]]
    assert len(first["files"]) >= 2  # the two stages, and the eager operations around them
    assert cache.stat().st_mode & 0o777 == 0o700

    second = run_engine(cache, "again")
    assert second["events"] == [["prefix", True], ["denoise", True]]
    assert second["actions"] == first["actions"]  # the executables read back compute what the compiled ones did
    assert second["files"] == first["files"]  # nothing compiled, nothing written
    assert second["unusable_default"] is None
    assert second["off"] == [None, None]


def test_the_setting_then_our_variable_then_jaxs_then_the_user_cache_dir(tmp_path, monkeypatch):
    both = {ENV_VAR: "/ours", JAX_ENV_VAR: "/jax", "XDG_CACHE_HOME": "/xdg"}
    assert resolve_cache_dir("/flag", both) == pathlib.Path("/flag")
    assert resolve_cache_dir(None, both) == pathlib.Path("/ours")
    assert resolve_cache_dir("", both) == pathlib.Path("/ours")
    assert resolve_cache_dir(None, {JAX_ENV_VAR: "/jax", "XDG_CACHE_HOME": "/xdg"}) == pathlib.Path("/jax")
    assert resolve_cache_dir(None, {"XDG_CACHE_HOME": "/xdg"}) == pathlib.Path("/xdg/robot-runtime/xla")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_cache_dir(None, {"XDG_CACHE_HOME": ""}) == tmp_path / ".cache" / "robot-runtime" / "xla"
    assert default_cache_dir({}) == tmp_path / ".cache" / "robot-runtime" / "xla"
    monkeypatch.chdir(tmp_path)
    assert resolve_cache_dir("relative", {}) == tmp_path / "relative"


@pytest.mark.parametrize(
    ("setting", "environ"),
    [("off", {ENV_VAR: "/ours"}), (None, {ENV_VAR: "OFF", JAX_ENV_VAR: "/jax"}), (None, {JAX_ENV_VAR: "off"})],
)
def test_off_anywhere_along_the_order_turns_it_off(setting, environ):
    assert resolve_cache_dir(setting, environ) is None


def test_the_suite_keeps_its_cache_out_of_the_users_cache_dir():
    assert resolve_cache_dir() != default_cache_dir()


def test_serve_passes_its_cache_to_the_planner_process():
    from runtime.serve import ModelSource, PlannerSupervisor, RuntimeOptions

    options = RuntimeOptions(ModelSource(pathlib.Path("ckpt")), compile_cache="/cache")
    assert PlannerSupervisor(options, "unix:/tmp/planner.sock").command()[-2:] == ["--compile-cache", "/cache"]
    plain = PlannerSupervisor(RuntimeOptions(ModelSource(pathlib.Path("ckpt"))), "x").command()
    assert "--compile-cache" not in plain


def test_a_cache_dir_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys):
    from app.cli import main

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    args = ["plan", "--checkpoint", str(tmp_path), "--image", f"base_0_rgb={not_a_dir}", "--task", "x"]
    args += ["--compile-cache", str(not_a_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robot-runtime plan: error: compilation cache") and str(not_a_dir) in err
    assert len(err.splitlines()) == 1
