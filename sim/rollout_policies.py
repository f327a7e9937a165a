"""What picks a rollout's actions: the built-in scripted expert, or a runtime session over gRPC per episode."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sim.episode import ACTION_DIMS, STATE_DIMS, BuiltinSim, Job, SimObservation
from sim.rollout_config import PolicySpec, RolloutError

if TYPE_CHECKING:  # imported when a remote policy begins: a scripted rollout needs no gRPC
    from client.action_queue import ActionQueue
    from client.robot_client import RobotClient


@dataclasses.dataclass(frozen=True)
class PolicyTrace:
    policy_ms: tuple[float, ...]
    server_ms: tuple[float, ...] = ()
    planner_updates: int = 0


class Policy(Protocol):
    def begin(self, job: Job, obs: SimObservation) -> None: ...

    def act(self, obs: SimObservation) -> tuple[np.ndarray, str, int]:
        """→ (7-D action, the subtask it serves or "", that subtask's version)."""
        ...

    def end(self) -> PolicyTrace: ...

    def close(self) -> None: ...


class ScriptedPolicy:
    """The built-in expert; it reads privileged poses from the sim's env and labels each step."""

    def __init__(self, sim: BuiltinSim):
        from sim.expert import ScriptedExpert

        self.sim = sim
        self.expert = ScriptedExpert()
        self._times: list[float] = []
        self._label = ("", 0)

    def begin(self, job: Job, obs: SimObservation) -> None:
        self._times, self._label = [], ("", 0)

    def act(self, obs: SimObservation) -> tuple[np.ndarray, str, int]:
        t = time.perf_counter()
        action, text = self.expert.act(self.sim.env)
        self._times.append((time.perf_counter() - t) * 1e3)
        if text != self._label[0]:
            self._label = (text, self._label[1] + 1)
        return action, text, self._label[1]

    def end(self) -> PolicyTrace:
        return PolicyTrace(tuple(self._times))

    def close(self) -> None:
        pass


def _runtime_error(address: str, err: Exception) -> RolloutError:
    details = getattr(err, "details", "") or str(err)
    code = getattr(getattr(err, "code", None), "name", "")
    return RolloutError(f"runtime at {address}: {code + ': ' if code else ''}{details}")


def check_runtime(spec: PolicySpec) -> tuple[str, ...]:
    """Fails fast, before any worker starts, unless the runtime answers and fits the sim → its cameras."""
    from client.robot_client import RobotClient, RuntimeClientError

    client = RobotClient(spec.address, "rollout probe", token=spec.token, timeout_s=min(spec.timeout_s, 15.0))
    try:
        meta = client.get_metadata()
    except RuntimeClientError as err:
        raise _runtime_error(spec.address, err) from None
    finally:
        client.close()
    if meta.action_dims != ACTION_DIMS:
        raise RolloutError(
            f"runtime at {spec.address} sends {meta.action_dims}-D actions; the sim steps "
            f"{ACTION_DIMS}-D ones (serve with --action-dims {ACTION_DIMS})"
        )
    if meta.state_dims != STATE_DIMS:
        raise RolloutError(
            f"runtime at {spec.address} expects a {meta.state_dims}-D state; the sim has "
            f"{STATE_DIMS}-D (serve with --state-dims {STATE_DIMS})"
        )
    unknown = [c for c in meta.cameras if c not in ("agentview", "wrist")]
    if unknown:
        raise RolloutError(f"runtime at {spec.address} wants camera {unknown[0]!r}; the sim has agentview, wrist")
    return tuple(meta.cameras)


class RemotePolicy:
    """One robot session per episode (a fresh planner state), blocking on each chunk like openpi's client."""

    def __init__(self, spec: PolicySpec, replan_steps: int, run_id: str):
        self.spec = spec
        self.replan_steps = replan_steps
        self.run_id = run_id
        self._client: RobotClient | None = None
        self._queue: ActionQueue | None = None
        self._cameras: tuple[str, ...] = ()
        self._subtask = ("", 0)
        self._instruction = ""
        self._round_trip: list[float] = []
        self._server: list[float] = []

    def begin(self, job: Job, obs: SimObservation) -> None:
        from client.action_queue import ActionQueue
        from client.robot_client import RobotClient, RuntimeClientError

        self._client = RobotClient(
            self.spec.address,
            obs.instruction,
            session_id=f"{self.run_id}-{job.index}",
            token=self.spec.token,
            timeout_s=self.spec.timeout_s,
        )
        try:
            meta = self._client.connect()
        except RuntimeClientError as err:
            raise _runtime_error(self.spec.address, err) from None
        self._cameras = tuple(meta.cameras)
        self._queue = ActionQueue("replace", replan_steps=self.replan_steps)
        self._subtask, self._instruction = ("", 0), obs.instruction
        self._round_trip, self._server = [], []

    def act(self, obs: SimObservation) -> tuple[np.ndarray, str, int]:
        from client.robot_client import RuntimeClientError

        assert self._client is not None and self._queue is not None, "call begin() first"
        if self._queue.needs_chunk():
            images = {camera: obs.images[camera] for camera in self._cameras}
            try:
                step = self._client.send(images, obs.state, task=obs.instruction)
                self._queue.request(step)
                chunk = self._client.wait(step)
            except RuntimeClientError as err:
                raise _runtime_error(self.spec.address, err) from None
            self._queue.receive(step, chunk.actions)
            self._round_trip.append(chunk.round_trip_ms)
            self._server.append(chunk.timings.total_ms)
            if chunk.subtask and chunk.subtask != self._instruction:
                self._subtask = (chunk.subtask, chunk.subtask_version)
        action = self._queue.pop()
        if action is None:
            raise RolloutError(f"runtime at {self.spec.address} sent an empty action chunk")
        return action, *self._subtask

    def end(self) -> PolicyTrace:
        updates = len(self._client.subtask_updates) if self._client is not None else 0
        self.close()
        return PolicyTrace(tuple(self._round_trip), tuple(self._server), updates)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
