"""The one input module: each check refuses with an `InputError` naming the field, and the state reaches the
model as training computes it."""

from __future__ import annotations

import numpy as np
import pytest

from policy.errors import UserFacingError
from policy.inputs import (
    MAX_TASK_CHARS,
    InputError,
    checked_cameras,
    checked_image,
    checked_rtc,
    checked_state,
    checked_task,
    checked_text,
    model_state,
)
from policy.normalize import NormStats, normalize

KEYS = ("base_0_rgb", "left_wrist_0_rgb")


def _refused(field: str, match: str):
    """pytest.raises for an InputError of `field` whose text is `field: …match…`."""
    return pytest.raises(InputError, match=rf"^{field}: .*{match}")


def test_an_input_error_is_a_user_facing_value_error_naming_its_field():
    err = InputError("observation.state", "contains NaN or Inf")
    assert isinstance(err, UserFacingError) and isinstance(err, ValueError)
    assert (err.field, err.message) == ("observation.state", "contains NaN or Inf")
    assert str(err) == "observation.state: contains NaN or Inf"


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), r"must be a uint8 \[H, W, 3\] RGB image, got float32 \[8, 8, 3\]"),
        (np.zeros((8, 8), np.uint8), r"got uint8 \[8, 8\]"),
        (np.zeros((8, 8, 4), np.uint8), r"got uint8 \[8, 8, 4\]"),
        (np.zeros((0, 8, 3), np.uint8), r"is empty: 8x0 pixels"),
    ],
)
def test_bad_images_are_refused(image, match):
    with _refused(r"images\['base_0_rgb'\]", match):
        checked_image(image, "images['base_0_rgb']")


def test_cameras_must_be_given_and_known():
    frame = np.zeros((4, 6, 3), np.uint8)
    assert checked_cameras({"base_0_rgb": frame}, KEYS, "images")["base_0_rgb"] is frame
    with _refused("images", r"is empty; give at least one of \['base_0_rgb', 'left_wrist_0_rgb'\]"):
        checked_cameras({}, KEYS, "images")
    with _refused(r"requests\[0\]\.cameras\['top'\]", "unknown camera; the model reads"):
        checked_cameras({"top": frame}, KEYS, "requests[0].cameras")


def test_task_text_is_stripped_bounded_and_not_empty_once_cleaned():
    assert checked_task("  put the cube away \n", "task") == "put the cube away"
    for empty in ("", "   ", ".", "_ !"):
        with _refused("task", "is empty; say what the robot should do"):
            checked_task(empty, "task")
        assert checked_task(empty, "open.task", allow_empty=True) == ""
    assert checked_task("x" * MAX_TASK_CHARS, "task")
    with _refused("observation.task", f"has {MAX_TASK_CHARS + 1} characters, more than {MAX_TASK_CHARS}"):
        checked_task("x" * (MAX_TASK_CHARS + 1), "observation.task")
    with _refused("task", "must be text, got int"):
        checked_task(3, "task")
    with _refused("subtask", "is empty; the actor needs it"):
        checked_text(" ; ", "subtask", "the actor needs it")


@pytest.mark.parametrize(
    ("state", "dims", "match"),
    [
        (np.zeros(3, np.int32), None, r"must be a float vector of shape \[N\], got int32 \[3\]"),
        (np.zeros((2, 2)), None, r"got float64 \[2, 2\]"),
        (np.zeros(0), None, r"got float64 \[0\]"),
        (np.zeros(7, np.float32), 8, r"must be a float vector of shape \[8\], got float32 \[7\]"),
        (np.array([0.0, np.inf]), None, "contains NaN or Inf"),
    ],
)
def test_bad_states_are_refused(state, dims, match):
    with _refused("state", match):
        checked_state(state, "state", dims=dims)


def test_the_model_state_is_normalized_in_float32_as_the_checkpoint_says(tiny_config):
    q01 = np.linspace(-2.0, -1.0, 8)
    stats = NormStats(np.full(8, 0.5), np.full(8, 2.0), q01, q01 + 3.0)
    state = np.linspace(-1.0, 1.0, 6)
    for cfg, quantiles in ((tiny_config, True), (tiny_config.replace(pi05=False), False)):
        expected = normalize(state.astype(np.float32), stats, use_quantiles=quantiles)
        got = model_state(state, stats, cfg, "state")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    quantile_pi0 = tiny_config.replace(pi05=False, quantile_norm=True)
    np.testing.assert_array_equal(
        model_state(state, stats, quantile_pi0, "state"), model_state(state, stats, tiny_config, "state")
    )
    with _refused("state", "is missing; this model reads the robot state"):
        model_state(None, stats, tiny_config, "state")
    with _refused("state", "no 'state' norm stats"):
        model_state(state, None, tiny_config, "state")
    with _refused("state", "has 9 dims; the norm stats hold 8, the model 8"):
        model_state(np.zeros(9), stats, tiny_config, "state")


def test_rtc_fields_are_checked_and_an_empty_queue_means_no_rtc():
    def rtc(actions, delay=1, s=None):
        return checked_rtc(actions, delay, s, action_dims=7, horizon=10, field="observation.rtc")

    queued = rtc(np.zeros((3, 7)), 2, 8)
    assert queued is not None and queued.dtype == np.float32 and queued.shape == (3, 7)
    assert rtc(np.zeros((0, 7))) is None
    bad = [
        (
            (np.zeros((3, 6)),),
            "queued_actions",
            r"must be float \[steps <= 10, 7\] in robot units, got float64 \[3, 6\]",
        ),
        ((np.zeros((11, 7)),), "queued_actions", r"\[11, 7\]"),
        ((np.zeros((3, 7), np.int64),), "queued_actions", r"got int64 \[3, 7\]"),
        ((np.full((3, 7), np.nan),), "queued_actions", "contains NaN or Inf"),
        ((np.zeros((3, 7)), -1), "inference_delay", "must be a non-negative integer, got -1"),
        ((np.zeros((3, 7)), 1.5), "inference_delay", "got 1.5"),
        ((np.zeros((3, 7)), True), "inference_delay", "got True"),
        ((np.zeros((3, 7)), 1, 6), "execution_horizon", r"must be in \[7, 10\] for 3 queued actions, got 6"),
    ]
    for args, field, match in bad:
        with _refused(rf"observation\.rtc\.{field}", match):
            rtc(*args)
