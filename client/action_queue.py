"""The robot side of chunk execution: which action runs at each control step, and when to ask for a new chunk.

A chunk answers an observation taken some control steps ago; by the time it arrives the robot has moved on,
so its first k actions describe the past and are skipped. Two modes:
- "replace": the new chunk (minus its first k actions) replaces whatever is queued;
- "rtc" (real-time chunking): the same on arrival, but each request also reports the actions still queued
  and the expected inference delay d, so the server can make the new chunk continue them smoothly.
Pure Python + numpy: no sockets, no clock the caller cannot replace, so every rule is unit-testable.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

Mode = Literal["replace", "rtc"]
MODES: tuple[str, ...] = ("replace", "rtc")
DEFAULT_DELAY_WINDOW = 10


@dataclasses.dataclass(frozen=True)
class RtcPrefix:
    """What the server needs to continue the queued actions (they run while the new chunk is computed); sent as
    the observation's `rtc` (`RealTimeChunking`). execution_horizon 0: the server's default."""

    queued_actions: np.ndarray
    inference_delay: int
    execution_horizon: int = 0


@dataclasses.dataclass(frozen=True)
class Applied:
    """How a received chunk changed the queue; `stale` chunks answer an older request and are ignored."""

    skipped: int
    queued: int
    stale: bool = False


@dataclasses.dataclass(frozen=True)
class QueueStats:
    chunks: int
    stale_chunks: int
    requests: int
    actions_popped: int
    actions_skipped: int
    starved_steps: int
    inference_delay: int


@dataclasses.dataclass(frozen=True)
class _Request:
    control_step: int
    sent_at: float


class ActionQueue:
    """Queued actions of the latest chunk, advanced one per control step.

    `key` ties a chunk to its request: any increasing integer, e.g. the client's observation step.
    A new chunk is needed when no request is in flight and fewer than `refill_below` actions remain, or
    `replan_steps` control steps have passed since the last request. The RTC delay is `inference_delay` when
    given; else the recent worst latency times `control_hz` when that is given; else the recent worst count of
    control steps that passed between a request and its chunk (0 in a loop that blocks on inference).
    """

    def __init__(
        self,
        mode: Mode = "replace",
        *,
        refill_below: int = 1,
        replan_steps: int | None = None,
        inference_delay: int | None = None,
        control_hz: float | None = None,
        execution_horizon: int = 0,
        delay_window: int = DEFAULT_DELAY_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if refill_below < 0:
            raise ValueError(f"refill_below must be >= 0, got {refill_below}")
        if replan_steps is not None and replan_steps < 1:
            raise ValueError(f"replan_steps must be >= 1, got {replan_steps}")
        if inference_delay is not None and inference_delay < 0:
            raise ValueError(f"inference_delay must be >= 0, got {inference_delay}")
        if control_hz is not None and control_hz <= 0:
            raise ValueError(f"control_hz must be > 0, got {control_hz}")
        if delay_window < 1:
            raise ValueError(f"delay_window must be >= 1, got {delay_window}")
        self.mode = mode
        self.refill_below = refill_below
        self.replan_steps = replan_steps
        self.execution_horizon = execution_horizon
        self._fixed_delay = inference_delay
        self._control_hz = control_hz
        self._clock = clock
        self._actions = np.zeros((0, 0), np.float32)
        self._next = 0
        self._control_step = 0
        self._requests: dict[int, _Request] = {}
        self._last_request_step: int | None = None
        self._applied_key: int | None = None
        self._delay_steps: collections.deque[int] = collections.deque(maxlen=delay_window)
        self._latencies_s: collections.deque[float] = collections.deque(maxlen=delay_window)
        self._counts: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return self._actions.shape[0] - self._next

    @property
    def queued(self) -> np.ndarray:
        """The actions not yet executed, next first: [N, action_dims]."""
        return self._actions[self._next :].copy()

    @property
    def control_step(self) -> int:
        return self._control_step

    @property
    def in_flight(self) -> bool:
        return bool(self._requests)

    def pop(self) -> np.ndarray | None:
        """The action for this control step; None when the queue ran dry (the step still counts as time)."""
        self._control_step += 1
        if not len(self):
            self._counts["starved_steps"] += 1
            return None
        action = self._actions[self._next].copy()
        self._next += 1
        self._counts["actions_popped"] += 1
        return action

    def needs_chunk(self) -> bool:
        if self._requests:
            return False
        if self._last_request_step is None or len(self) < self.refill_below:
            return True
        return self.replan_steps is not None and self._control_step - self._last_request_step >= self.replan_steps

    def request(self, key: int) -> RtcPrefix | None:
        """Records that an observation went out now → the RTC prefix to send with it ("rtc" mode, non-empty queue)."""
        if key in self._requests or (self._applied_key is not None and key <= self._applied_key):
            raise ValueError(f"request key {key} must be new and greater than the last applied key {self._applied_key}")
        self._requests[key] = _Request(self._control_step, self._clock())
        self._last_request_step = self._control_step
        self._counts["requests"] += 1
        if self.mode != "rtc" or not len(self):
            return None
        return RtcPrefix(self.queued, self.inference_delay(), self.execution_horizon)

    def receive(self, key: int, actions: np.ndarray) -> Applied:
        """Applies the chunk answering request `key`: skips the actions already in the past, replaces the queue."""
        actions = np.asarray(actions, np.float32)
        if actions.ndim != 2:
            raise ValueError(f"actions must be [H, action_dims], got shape {list(actions.shape)}")
        if self._applied_key is not None and key <= self._applied_key:
            self._requests.pop(key, None)
            self._counts["stale_chunks"] += 1
            return Applied(skipped=0, queued=len(self), stale=True)
        request = self._requests.get(key)
        if request is None:
            raise ValueError(f"no request with key {key}; call request(key) when sending the observation")
        elapsed = self._control_step - request.control_step
        self._delay_steps.append(elapsed)
        self._latencies_s.append(self._clock() - request.sent_at)
        self._requests = {k: r for k, r in self._requests.items() if k > key}
        self._applied_key = key
        skipped = min(elapsed, actions.shape[0])
        self._actions, self._next = actions[skipped:].copy(), 0
        self._counts["chunks"] += 1
        self._counts["actions_skipped"] += skipped
        return Applied(skipped=skipped, queued=len(self))

    def abandon_requests(self) -> None:
        """Forgets requests that will never be answered (e.g. the session failed), so needs_chunk can fire again."""
        self._requests.clear()
        self._last_request_step = None

    def inference_delay(self) -> int:
        """d: control steps expected to pass between sending an observation and applying its chunk."""
        if self._fixed_delay is not None:
            return self._fixed_delay
        if self._control_hz is not None and self._latencies_s:
            return math.ceil(max(self._latencies_s) * self._control_hz - 1e-9)
        return max(self._delay_steps, default=0)

    def stats(self) -> QueueStats:
        c = self._counts
        return QueueStats(
            chunks=c["chunks"],
            stale_chunks=c["stale_chunks"],
            requests=c["requests"],
            actions_popped=c["actions_popped"],
            actions_skipped=c["actions_skipped"],
            starved_steps=c["starved_steps"],
            inference_delay=self.inference_delay(),
        )
