"""What a model input must be, written once for the runtime, the planner, the actor and training.

Cameras, state, task text and the RTC fields are checked here, and the robot's state becomes the model's state
here (`model_state`), so a rule cannot differ between the process that trains a checkpoint and the ones that
serve it. Every refusal is an `InputError` naming the field; the engines add what their callers need (the
actor the request's index, the planner its own error type), the runtime sends it as INVALID_ARGUMENT.
Decoding bytes (image headers, tensor sizes) stays in `protos.wire`, which refuses what cannot be decoded.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence

import numpy as np

from policy.config import ModelConfig
from policy.errors import UserFacingError
from policy.normalize import NormStats, normalize
from policy.prompts import clean_instruction

# LIBERO's cameras (the built-in sim's too) → openpi's image keys: what openpi's LIBERO policies read.
LIBERO_CAMERAS = types.MappingProxyType({"agentview": "base_0_rgb", "wrist": "left_wrist_0_rgb"})
MAX_TASK_CHARS = 512


class InputError(UserFacingError, ValueError):
    """An input no model can take; `field` names it (`observation.state`, `images['base_0_rgb']`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def checked_image(image: object, field: str) -> np.ndarray:
    """A uint8 [H, W, 3] RGB frame with pixels in it."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise InputError(field, f"must be a uint8 [H, W, 3] RGB image, got {array.dtype} {list(array.shape)}")
    if 0 in array.shape[:2]:
        raise InputError(field, f"is empty: {array.shape[1]}x{array.shape[0]} pixels")
    return array


def checked_cameras(images: Mapping[str, object], known: Sequence[str], field: str) -> dict[str, np.ndarray]:
    """At least one camera, each one the model reads (`known`), each frame a `checked_image`."""
    if not images:
        raise InputError(field, f"is empty; give at least one of {list(known)}")
    checked = {}
    for key, image in images.items():
        if key not in known:
            raise InputError(f"{field}[{key!r}]", f"unknown camera; the model reads {list(known)}")
        checked[key] = checked_image(image, f"{field}[{key!r}]")
    return checked


def checked_task(task: object, field: str, *, allow_empty: bool = False) -> str:
    """The task, stripped; "" where `allow_empty` and nothing of it would reach a prompt (`clean_instruction`)."""
    text = _text(task, field)
    if len(text) > MAX_TASK_CHARS:
        raise InputError(field, f"has {len(text)} characters, more than {MAX_TASK_CHARS}")
    if not clean_instruction(text):
        if allow_empty:
            return ""
        raise InputError(field, "is empty; say what the robot should do")
    return text


def checked_text(text: object, field: str, needed_for: str) -> str:
    """A subtask or reasoning context, stripped: empty like a task, `needed_for` saying why it may not be."""
    stripped = _text(text, field)
    if not clean_instruction(stripped):
        raise InputError(field, f"is empty; {needed_for}")
    return stripped


def _text(text: object, field: str) -> str:
    if not isinstance(text, str):
        raise InputError(field, f"must be text, got {type(text).__name__}")
    return text.strip()


def checked_state(state: object, field: str, *, dims: int | None = None) -> np.ndarray:
    """A finite float vector (of exactly `dims` numbers when given), as float32."""
    array = np.asarray(state)
    vector = array.dtype.kind == "f" and array.ndim == 1 and len(array) > 0
    if not vector or (dims is not None and len(array) != dims):
        got = f"{array.dtype} {list(array.shape)}"
        raise InputError(field, f"must be a float vector of shape [{dims or 'N'}], got {got}")
    if not np.isfinite(array).all():
        raise InputError(field, "contains NaN or Inf")
    return array.astype(np.float32)


def model_state(state: object, stats: NormStats | None, cfg: ModelConfig, field: str) -> np.ndarray:
    """The robot's state → the model's: float32 and normalized as the checkpoint says (`cfg.use_quantiles`).

    Training computes it so, and a served state must land in the same bins of the prompt's discretized state
    (`policy.prompts.state_to_text`) as the states the model learned from.
    """
    if state is None:
        raise InputError(field, "is missing; this model reads the robot state in every request")
    values = checked_state(state, field)
    if stats is None:
        raise InputError(field, "was given but the checkpoint has no 'state' norm stats")
    if values.shape[0] > min(stats.dim, cfg.action_dim):
        held = f"the norm stats hold {stats.dim}, the model {cfg.action_dim}"
        raise InputError(field, f"has {values.shape[0]} dims; {held}")
    return normalize(values, stats, use_quantiles=cfg.use_quantiles).astype(np.float32)


def checked_rtc(
    queued_actions: object,
    inference_delay: object,
    execution_horizon: int | None,
    *,
    action_dims: int,
    horizon: int,
    field: str,
) -> np.ndarray | None:
    """Real-time chunking's fields (`field`.queued_actions, .inference_delay, .execution_horizon) → the queued
    actions as float32 [L, action_dims], or None when none are queued (nothing to continue)."""
    actions = np.asarray(queued_actions)
    if actions.dtype.kind != "f" or actions.ndim != 2 or actions.shape[1] != action_dims or len(actions) > horizon:
        shape = f"{actions.dtype} {list(actions.shape)}"
        raise InputError(
            f"{field}.queued_actions", f"must be float [steps <= {horizon}, {action_dims}] in robot units, got {shape}"
        )
    if not np.isfinite(actions).all():
        raise InputError(f"{field}.queued_actions", "contains NaN or Inf")
    delay = inference_delay
    if isinstance(delay, bool) or not isinstance(delay, int | np.integer) or delay < 0:
        raise InputError(f"{field}.inference_delay", f"must be a non-negative integer, got {delay!r}")
    if not len(actions):
        return None
    s = execution_horizon
    if s is not None and not (horizon - len(actions) <= s <= horizon):
        raise InputError(
            f"{field}.execution_horizon",
            f"must be in [{horizon - len(actions)}, {horizon}] for {len(actions)} queued actions, got {s}",
        )
    return actions.astype(np.float32)
