"""`robot-runtime init-checkpoint` and reading a model directory back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli import main
from policy.checkpoint import CheckpointError, flatten, load_params
from policy.model_dir import ModelDir
from policy.tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-checkpoint", "--config", "tiny", "--out", str(out), "--seed", "3"]) == 0
    return out


def test_init_checkpoint_writes_openpi_layout(tiny_dir, tiny_config):
    assert (tiny_dir / "params" / "_METADATA").exists()
    stats = json.loads((tiny_dir / "assets" / "default" / "norm_stats.json").read_text())["norm_stats"]
    assert set(stats) == {"state", "actions"} and len(stats["actions"]["q99"]) == tiny_config.action_dim
    model_dir = ModelDir.open(tiny_dir)
    assert model_dir.config == tiny_config
    assert set(model_dir.norm_stats) == {"state", "actions"}
    tokenizer = TextTokenizer(model_dir.tokenizer_path)
    assert tokenizer.vocab_size <= tiny_config.vocab_size
    assert tokenizer.decode(tokenizer.encode("pick up the red cube")) == "pick up the red cube"
    params = flatten(load_params(tiny_dir))
    assert params["PaliGemma/llm/layers/pre_attention_norm_1/Dense_0/kernel"].std() > 0.01


def test_same_seed_same_weights_other_seed_other_weights(tiny_dir, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    assert main(["init-checkpoint", "--config", "tiny", "--out", str(again), "--seed", "3"]) == 0
    assert main(["init-checkpoint", "--config", "tiny", "--out", str(other), "--seed", "4"]) == 0
    key = "action_out_proj/kernel"
    first, second, third = (flatten(load_params(d))[key] for d in (tiny_dir, again, other))
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, third)


def test_init_checkpoint_refuses_bad_arguments(tiny_dir, capsys):
    assert main(["init-checkpoint", "--config", "tiny", "--out", str(tiny_dir)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["init-checkpoint", "--config", "huge", "--out", str(tiny_dir / "x")]) == 2
    assert "unknown --config 'huge'" in capsys.readouterr().err


def test_open_without_config_or_with_missing_tokenizer(tmp_path, tiny_dir):
    (tmp_path / "params").mkdir()
    with pytest.raises(CheckpointError, match="name the model config"):
        ModelDir.open(tmp_path)
    assert ModelDir.open(tmp_path, config_name="dummy").config.vocab_size == 1024
    with pytest.raises(CheckpointError, match="tokenizer .* does not exist"):
        ModelDir.open(tiny_dir, tokenizer=tmp_path / "missing.model")


def test_text_tokenizer_opens_the_bundled_model_or_says_what_is_missing(tmp_path, tiny_dir):
    assert isinstance(ModelDir.open(tiny_dir).text_tokenizer(), TextTokenizer)
    (tmp_path / "params").mkdir()
    with pytest.raises(CheckpointError, match="has no tokenizer.model; pass --tokenizer"):
        ModelDir.open(tmp_path, config_name="dummy").text_tokenizer()
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a sentencepiece model")
    with pytest.raises(CheckpointError, match="not a SentencePiece model"):
        ModelDir.open(tmp_path, config_name="dummy", tokenizer=junk).text_tokenizer()


def test_serving_defaults_come_from_serving_json_and_bad_ones_are_refused(tmp_path, tiny_dir):
    import shutil

    from policy.model_dir import SERVING_FILE, ServingDefaults

    assert ModelDir.open(tiny_dir).serving == ServingDefaults(noise_scale=1.0)  # openpi's sampling without the file
    copy = tmp_path / "tuned"
    shutil.copytree(tiny_dir, copy)
    ServingDefaults(noise_scale=0.4).write(copy / SERVING_FILE)
    assert ModelDir.open(copy).serving.noise_scale == 0.4
    for bad in ('{"noise_scale": -1}', '{"noise_scale": "x"}', '{"temperature": 1}', "not json"):
        (copy / SERVING_FILE).write_text(bad)
        with pytest.raises(CheckpointError, match=SERVING_FILE):
            ModelDir.open(copy)
