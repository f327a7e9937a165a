"""Between the robot's units and the model's normalized, padded action space, both ways.

Out: unnormalize the chunk with the checkpoint's action stats (quantile or z-score), crop the model's padded
dims to the robot's, optionally clip to user limits (openpi's order: Unnormalize, then the robot's output
transform). In: RTC queued actions arrive in robot units and are normalized the same way so guidance
compares like with like.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from policy.normalize import NormStats, normalize, unnormalize


@dataclasses.dataclass(frozen=True, eq=False)
class ActionLimits:
    """Per-dim bounds in robot units; low/high are vectors of the robot's action dims (or scalars)."""

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.array(self.low, np.float32, ndmin=1)
        high = np.array(self.high, np.float32, ndmin=1)
        if low.ndim != 1 or high.ndim != 1:
            raise ValueError(f"limits low/high must be vectors, got shapes {list(low.shape)} and {list(high.shape)}")
        if np.isnan(low).any() or np.isnan(high).any():
            raise ValueError("limits hold NaN")
        if low.shape != high.shape and 1 not in (low.size, high.size):
            raise ValueError(f"limits low has {low.size} dims and high {high.size}; give the same number (or a scalar)")
        if (low > high).any():
            raise ValueError("limits low must be <= high in every dim")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def clip(self, actions: np.ndarray) -> np.ndarray:
        dims = actions.shape[-1]
        for name, bound in (("low", self.low), ("high", self.high)):
            if bound.shape[0] not in (1, dims):
                raise ValueError(f"limits {name} has {bound.shape[0]} dims, the actions have {dims}")
        return np.clip(actions, self.low, self.high)


def to_robot_actions(
    chunk: npt.ArrayLike,
    stats: NormStats,
    *,
    action_dims: int,
    use_quantiles: bool,
    limits: ActionLimits | None = None,
) -> np.ndarray:
    """Model chunk [..., H, D] (normalized, padded) → float32 [..., H, action_dims] in robot units."""
    values = np.asarray(chunk, np.float32)
    model_dims = values.shape[-1]
    if not 0 < action_dims <= model_dims:
        raise ValueError(f"action_dims must be in [1, {model_dims}] (the model's action dim), got {action_dims}")
    if stats.dim > model_dims:
        raise ValueError(f"action norm stats have {stats.dim} dims, more than the model's {model_dims}")
    robot = unnormalize(values, stats, use_quantiles=use_quantiles)[..., :action_dims].astype(np.float32)
    return robot if limits is None else limits.clip(robot)


def to_model_actions(actions: npt.ArrayLike, stats: NormStats, *, use_quantiles: bool) -> np.ndarray:
    """Robot-unit actions [..., k] → normalized float32 [..., k] (the first k dims of the stats)."""
    values = np.asarray(actions, np.float32)
    if values.shape[-1] > stats.dim:
        raise ValueError(f"actions have {values.shape[-1]} dims, the action norm stats only {stats.dim}")
    return normalize(values, stats, use_quantiles=use_quantiles).astype(np.float32)
