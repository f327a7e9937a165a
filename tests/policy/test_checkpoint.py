"""openpi checkpoint I/O: both leaf forms, dtype casts, and one clear line for every way a checkpoint can be wrong."""

from __future__ import annotations

import logging
import pathlib
import shutil

import jax
import numpy as np
import pytest

from app.cli import main
from policy.checkpoint import CheckpointError, flatten, load_params, model_from_params, save_params, unflatten


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_params) -> pathlib.Path:
    return save_params(tmp_path_factory.mktemp("ckpt") / "params", tiny_params)


def test_round_trip_and_dtype_cast(saved, tiny_params):
    loaded = flatten(load_params(saved))
    expected = flatten(tiny_params)
    assert loaded.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(loaded[key], np.asarray(expected[key]), err_msg=key)
    as_bf16 = flatten(load_params(saved.parent, dtype="bfloat16"))
    assert {str(v.dtype) for v in as_bf16.values()} == {"bfloat16"}


def test_a_params_dir_without_step_metadata_loads_without_a_warning(tmp_path, saved, caplog):
    """Training keeps _CHECKPOINT_METADATA beside params/, so a copied params/ (a bundle) lacks it; orbax's
    warning about that is noise."""
    copied = shutil.copytree(saved, tmp_path / "params")
    (copied / "_CHECKPOINT_METADATA").unlink()
    with caplog.at_level(logging.WARNING):
        load_params(copied)
    assert not [r for r in caplog.records if "_CHECKPOINT_METADATA" in r.getMessage()]


def test_value_wrapped_leaves_load_like_pure_dict(tmp_path, tiny_params):
    wrapped = jax.tree.map(lambda x: {"value": np.asarray(x)}, tiny_params)
    path = save_params(tmp_path / "params", wrapped)
    loaded = flatten(load_params(path))
    assert "PaliGemma/llm/embedder/input_embedding" in loaded
    assert not any(k.endswith("/value") for k in loaded)


def test_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_params(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an orbax params directory"):
        load_params(tmp_path / "empty")


def test_truncated_checkpoint_is_one_clear_error(tmp_path, saved):
    broken = tmp_path / "params"
    shutil.copytree(saved, broken)
    for data_file in (broken / "ocdbt.process_0" / "d").iterdir():
        data_file.write_bytes(data_file.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_params(broken)
    assert "\n" not in str(info.value)


def test_mismatches_name_the_first_offending_key(tiny_config, tiny_params):
    flat = {k: np.asarray(v) for k, v in flatten(tiny_params).items()}
    missing = dict(flat)
    del missing["action_out_proj/bias"]
    with pytest.raises(CheckpointError, match="missing parameter action_out_proj/bias"):
        model_from_params(tiny_config, unflatten(missing))
    extra = {**flat, "state_proj/kernel": np.zeros((8, 32))}
    with pytest.raises(CheckpointError, match="unexpected parameter state_proj/kernel"):
        model_from_params(tiny_config, unflatten(extra))
    wrong = {**flat, "time_mlp_in/kernel": np.zeros((32, 16))}
    with pytest.raises(CheckpointError, match=r"time_mlp_in/kernel has shape \(32, 16\), the model expects \(32, 32\)"):
        model_from_params(tiny_config, unflatten(wrong))


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys, saved, shared_fixture):
    fixture = tmp_path / "fixture"
    shutil.copytree(shared_fixture, fixture)
    shutil.rmtree(fixture / "params")
    shutil.copytree(saved, fixture / "params")
    assert main(["check-parity", str(fixture)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robot-runtime check-parity: error: parameter ")
    assert "the model expects" in err
    assert "\n" not in err and "Traceback" not in err
