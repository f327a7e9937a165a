"""`robot-runtime plan` on a checkpoint written by `robot-runtime init-checkpoint --config tiny`, in-process."""

from __future__ import annotations

import json
import pathlib
import re

import cv2
import numpy as np
import pytest

from app.cli import main
from planner.query import read_rgb

MAX_TOKENS = "6"  # the decoder tests' length, so the compiled decode loop is shared


@pytest.fixture(scope="session")
def camera_png(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("plan_images") / "cam0.png"
    image = np.random.default_rng(3).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def _plan(checkpoint: pathlib.Path, *extra: str) -> list[str]:
    return ["plan", "--checkpoint", str(checkpoint), "--max-tokens", MAX_TOKENS, *extra]


def test_plan_prints_one_json_object_with_the_subtask(tiny_checkpoint, camera_png, capsys):
    args = _plan(tiny_checkpoint, "--image", f"base_0_rgb={camera_png}", "--task", "put the red cube in the bowl")
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert {"subtask", "tokens", "prefill_ms", "decode_ms"} <= set(result)
    assert isinstance(result["subtask"], str) and result["subtask"] == result["subtask"].strip()
    assert all(isinstance(t, int) for t in result["tokens"]) and 1 <= len(result["tokens"]) <= int(MAX_TOKENS)
    assert result["prefill_ms"] > 0 and result["decode_ms"] > 0

    assert main([*args, "--tokenizer", str(tiny_checkpoint / "tokenizer.model")]) == 0
    assert capsys.readouterr().out == result["subtask"] + "\n"


def test_plan_reasoning_prints_think_or_act(tiny_checkpoint, camera_png, capsys):
    image = f"base_0_rgb={camera_png}"
    args = [*_plan(tiny_checkpoint, "--image", image, "--task", "Instruction: put the cup away"), "--reasoning"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decision"] in ("think", "act") and isinstance(result["margin"], float)
    assert result["prefill_ms"] > 0
    if result["decision"] == "act":
        assert result["text"] == "Instruction: put the cup away" and result["tokens"] == []
    else:
        assert 1 <= len(result["tokens"]) <= int(MAX_TOKENS) and result["decode_ms"] > 0

    assert main([*args, "--last-reasoning", "Next I grasp the cup"]) == 0
    assert re.fullmatch(r"(think|act): .*\n", capsys.readouterr().out, flags=re.DOTALL)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--last-reasoning", "Next I grasp the cup"], "--last-reasoning goes with --reasoning"),
        (["--reasoning", "--last-reasoning", " "], "--last-reasoning is empty"),
        (["--reasoning", "--server", "127.0.0.1:1"], "--reasoning decodes locally"),
    ],
)
def test_reasoning_flags_are_checked(tiny_checkpoint, camera_png, capsys, extra, expected):
    args = _plan(tiny_checkpoint, "--image", f"base_0_rgb={camera_png}", "--task", "lift the cup")
    assert main([*args, *extra]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("image_arg", "task", "expected"),
    [
        ("base_0_rgb={missing}", "pick up the mug", "image file .*missing.png does not exist"),
        ("top_camera={png}", "pick up the mug", "unknown camera 'top_camera'"),
        ("base_0_rgb={png}", "   ", "--task is empty"),
        ("{png}", "pick up the mug", "malformed; write CAMERA=PATH"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_2(tiny_checkpoint, camera_png, capsys, image_arg, task, expected):
    image = image_arg.format(png=camera_png, missing=camera_png.with_name("missing.png"))
    assert main(_plan(tiny_checkpoint, "--image", image, "--task", task)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and captured.out == ""
    assert lines[0].startswith("robot-runtime plan: error: ")
    assert re.search(expected, lines[0])


def test_a_missing_checkpoint_or_tokenizer_is_one_error_line(tmp_path, camera_png, capsys):
    image = f"base_0_rgb={camera_png}"
    assert main(_plan(tmp_path / "nowhere", "--image", image, "--task", "lift the cup")) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(_plan(tmp_path / "empty", "--image", image, "--task", "lift the cup", "--config", "tiny")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "has no tokenizer.model; pass --tokenizer" in err


def test_images_are_read_as_rgb(tmp_path):
    path = tmp_path / "red.png"
    bgr_red = np.zeros((4, 5, 3), np.uint8)
    bgr_red[..., 2] = 255
    cv2.imwrite(str(path), bgr_red)
    rgb = read_rgb(path)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 255).all() and (rgb[..., 1:] == 0).all()
