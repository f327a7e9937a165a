"""check-parity: the shared openpi fixture passes, and the tool generalizes to other fixtures of that format."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
from flax import nnx

from app.cli import main
from policy import decoding
from policy.checkpoint import save_params
from policy.parity import check_parity, config_from_meta


def test_shared_openpi_fixture_passes_through_the_console_script(shared_fixture):
    exe = pathlib.Path(sys.executable).with_name("robot-runtime")
    proc = subprocess.run([str(exe), "check-parity", str(shared_fixture)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "parity: PASS"
    for name in ("sample_actions", "v_t", "first_logits"):
        line = next(text for text in lines if text.startswith(name))
        assert float(line.split("max abs error")[1].split()[0]) <= 1e-4
    print(proc.stdout)


def _meta(cfg) -> dict:
    return {
        "model": {
            "pi05": cfg.pi05,
            "paligemma_variant": "small_llm",
            "action_expert_variant": "small_expert",
            "gemma_small_llm": {
                k: getattr(cfg.paligemma, k)
                for k in ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim")
            },
            "gemma_small_expert": {
                k: getattr(cfg.action_expert, k)
                for k in ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim")
            },
            "siglip": {
                "variant": "mu/14",
                "width": cfg.vision.width,
                "depth": cfg.vision.depth,
                "mlp_dim": cfg.vision.mlp_dim,
                "num_heads": cfg.vision.num_heads,
                "patch": cfg.vision.patch,
                "image_size": cfg.vision.image_size,
            },
            "vocab_size": cfg.vocab_size,
            "action_dim": cfg.action_dim,
            "action_horizon": cfg.action_horizon,
            "max_token_len": cfg.max_token_len,
            "dtype": "float32",
        },
        "image_keys": list(cfg.image_keys),
        "num_denoise_steps": 10,
    }


def _write_fixture(path, cfg, params, batch, lengths, decode_steps, masked_camera):
    """A fixture in the shared format, its expected outputs computed by our (openpi-verified) network."""
    from policy.checkpoint import model_from_params

    model = model_from_params(cfg, params)
    rng = np.random.default_rng(1)
    size = cfg.vision.image_size
    io = {}
    for key in cfg.image_keys:
        io[f"image/{key}"] = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        io[f"image_mask/{key}"] = np.ones(batch, bool)
    io[f"image_mask/{masked_camera}"][0] = False
    tokens = np.zeros((batch, cfg.max_token_len), np.int32)
    for row, n in enumerate(lengths):
        tokens[row, :n] = rng.integers(4, cfg.vocab_size, n)
        tokens[row, 0] = 2
    io["tokenized_prompt"], io["tokenized_prompt_mask"] = tokens, tokens > 0
    io["state"] = rng.normal(size=(batch, 32)).astype(np.float32)
    io["noise"] = rng.normal(size=(batch, cfg.action_horizon, cfg.action_dim)).astype(np.float32)
    io["x_t"] = rng.normal(size=io["noise"].shape).astype(np.float32)
    io["t"] = rng.uniform(size=batch).astype(np.float32)
    from policy.parity import _fixture_input

    obs = _fixture_input(io, cfg)
    io["sample_actions"] = np.asarray(
        nnx.jit(lambda m, o, n: m.sample_actions(o, n))(model, obs, jnp.asarray(io["noise"]))
    )
    io["v_t"] = np.asarray(
        nnx.jit(lambda m, o, x, t: m.velocity(o, x, t))(model, obs, jnp.asarray(io["x_t"]), jnp.asarray(io["t"]))
    )

    @nnx.jit(static_argnums=(2,))
    def greedy(m, o, n):
        return decoding.prefill(m, o, n).first_logits, decoding.generate(m, o, n)[0]

    first, gen = greedy(model, obs, decode_steps)
    io["first_logits"], io["greedy_tokens"] = np.asarray(first), np.asarray(gen)
    path.mkdir()
    (path / "meta.json").write_text(json.dumps(_meta(cfg)))
    np.savez(path / "io.npz", **io)
    save_params(path / "params", params)
    return io


def test_other_batch_sizes_horizons_token_lengths_and_masked_cameras(tmp_path, tiny_params, tiny_config, capsys):
    cfg = tiny_config
    fixture = tmp_path / "fixture"
    io = _write_fixture(
        fixture, cfg, tiny_params, batch=3, lengths=[5, 30, 48], decode_steps=4, masked_camera="left_wrist_0_rgb"
    )
    rebuilt = config_from_meta(json.loads((fixture / "meta.json").read_text()))
    assert dataclasses.replace(rebuilt, image_keys=cfg.image_keys) == cfg

    report = check_parity(fixture)
    assert report.ok and report.tokens.shape == (3, 4)
    assert main(["check-parity", str(fixture)]) == 0

    for name, change in [("sample_actions", 2e-4), ("first_logits", 2e-4)]:
        io_bad = dict(io)
        io_bad[name] = io[name] + change
        np.savez(fixture / "io.npz", **io_bad)
        bad = check_parity(fixture)
        assert not bad.ok and bad.errors[name] > 1e-4
    io_bad = dict(io)
    io_bad["greedy_tokens"] = io["greedy_tokens"].copy()
    io_bad["greedy_tokens"][2, 3] += 1
    np.savez(fixture / "io.npz", **io_bad)
    assert check_parity(fixture).token_mismatches == 1
    capsys.readouterr()
    assert main(["check-parity", str(fixture)]) == 1
    out = capsys.readouterr().out
    assert "parity: FAIL" in out and "1 differ" in out


def test_fixture_with_a_missing_file_is_one_line(tmp_path, capsys, shared_fixture):
    fixture = tmp_path / "f"
    fixture.mkdir()
    shutil.copy(shared_fixture / "meta.json", fixture / "meta.json")
    assert main(["check-parity", str(fixture)]) == 2
    assert "has no io.npz" in capsys.readouterr().err
