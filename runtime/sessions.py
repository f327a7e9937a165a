"""Per-session state of the runtime, and turning a wire observation into an actor request and a planner snapshot.

Plain Python, no sockets: the servicer and the planner link call into a `SessionRegistry`, tests call it
directly. A session holds its task, the last observation step, the latest subtask (text + version) and the
latest observation the planner has not seen yet. With a reasoning checkpoint the subtask is the planner's
latest reasoning, and the actor's context before the first one is the task spelled as a first segment's.

Ownership: opening a session issues an unguessable `resume_token`. Reopening an id that is open, or that was
dropped less than `RESUME_GRACE_S` ago, needs that token: the owner's reconnect takes the session over (step
count, task and subtask carry over, the old stream ends with ABORTED); anyone else is refused with
`SessionInUse`. Server-assigned ids are random, so they cannot be guessed either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping

import numpy as np

from actor.engine import ChunkRequest, RtcPrefix
from policy.errors import UserFacingError
from policy.inputs import checked_rtc, checked_state, checked_task
from policy.prompts import reasoning_first_context
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import WireError, image_to_numpy, quoted, tensor_to_numpy

MAX_SESSION_ID_CHARS = 128
RESUME_GRACE_S = 30.0
MAX_DROPPED_SESSIONS = 10_000  # the oldest go first beyond this
_SESSION_ID = re.compile(r"[ -~]+")  # printable ASCII: no control characters, nothing a terminal interprets


class SessionInUse(UserFacingError):
    """The session id is open (or was just dropped) and the caller did not prove it owns it."""


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """What every observation must look like: camera names (robot → model key), state and action dims."""

    cameras: Mapping[str, str]
    state_dims: int
    action_dims: int
    action_horizon: int


@dataclasses.dataclass
class Session:
    id: str
    task: str
    resume_token: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    last_step: int = -1
    task_since_step: int = -1  # the first observation step of the current task: older plans belong to another task
    subtask: str = ""
    subtask_version: int = 0
    pending_snapshot: pb.Observation | None = None  # the newest accepted observation the planner has not seen
    last_planned_at: float = 0.0
    updates: asyncio.Queue = dataclasses.field(default_factory=asyncio.Queue)
    first_subtask: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    taken_over: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    reasoning: bool = False
    finished: bool = False  # the client sent SessionClose: done with the session, nothing to resume

    def actor_subtask(self) -> str:
        """The latest subtask; before the planner's first answer, the plain task (or its first-step context)."""
        if self.subtask:
            return self.subtask
        return reasoning_first_context(self.task) if self.reasoning else self.task


class SessionRegistry:
    """reasoning: the served checkpoint follows the reasoning protocol (`serve --reasoning`); clock: seconds
    (a test's fake clock) for the resume grace period."""

    def __init__(
        self, settings: SessionSettings, *, reasoning: bool = False, clock: Callable[[], float] = time.monotonic
    ):
        self.settings = settings
        self.reasoning = reasoning
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._dropped: dict[str, tuple[Session, float]] = {}  # id → (session, until when its owner may resume it)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def open(self, session_id: str, task: str, resume_token: str = "") -> Session:
        """A new session, or the caller's own one resumed: reopening an open or just-dropped id with its
        resume_token takes it over (a robot reconnecting, perhaps before the server noticed the old stream
        died): the old stream is told to end, and step count, task and subtask carry over."""
        task = checked_task(task, "open.task", allow_empty=True)
        session_id = _checked_session_id(session_id) if session_id else secrets.token_hex(8)
        self._forget_expired()
        old = self._sessions.get(session_id) or self._dropped.get(session_id, (None, 0.0))[0]
        if old is not None and not hmac.compare_digest(resume_token.encode(), old.resume_token.encode()):
            raise SessionInUse(
                f"open.session_id: session {quoted(session_id)} is in use; only its owner can reopen it "
                "(open.resume_token from its metadata)"
            )
        session = Session(session_id, task, reasoning=self.reasoning)
        if old is not None:
            self._dropped.pop(session_id, None)
            old.taken_over.set()
            session.resume_token = old.resume_token
            session.last_step = old.last_step
            session.task_since_step = old.last_step + 1
            if not task or task == old.task:
                session.task, session.subtask, session.subtask_version = old.task, old.subtask, old.subtask_version
                session.task_since_step = old.task_since_step
                if old.first_subtask.is_set():
                    session.first_subtask.set()
        self._sessions[session_id] = session
        return session

    def close(self, session: Session) -> None:
        """Ends the session's stream. Unless a newer stream has taken its id over or the client finished it,
        the owner may resume it with its token for `RESUME_GRACE_S`."""
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            session.pending_snapshot = None  # a resumed session starts from its next observation
            if not session.finished:
                self._dropped[session.id] = (session, self._clock() + RESUME_GRACE_S)
                while len(self._dropped) > MAX_DROPPED_SESSIONS:  # a flood of dropped streams cannot grow memory
                    del self._dropped[next(iter(self._dropped))]
        self._forget_expired()

    def _forget_expired(self) -> None:
        now = self._clock()
        for session_id in [key for key, (_, until) in self._dropped.items() if until <= now]:
            del self._dropped[session_id]

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def accept(
        self, session: Session, obs: pb.Observation, images: dict[str, np.ndarray] | None = None
    ) -> ChunkRequest:
        """Validates an observation, advances the session, records the planner snapshot → the actor request.
        images: `decode_images(obs)` when the caller decoded them already (off the event loop)."""
        if obs.session_id and obs.session_id != session.id:
            raise WireError("observation.session_id", f"{quoted(obs.session_id)} is not this stream's session")
        if obs.step <= session.last_step:
            raise WireError(
                "observation.step", f"must increase within a session: got {obs.step} after {session.last_step}"
            )
        task = checked_task(obs.task, "observation.task", allow_empty=bool(session.task)) or session.task
        images = self.decode_images(obs) if images is None else images
        state = None
        if obs.HasField("state"):
            field = "observation.state"
            state = checked_state(tensor_to_numpy(obs.state, field), field, dims=self.settings.state_dims)
        rtc = self._rtc_prefix(obs) if obs.HasField("rtc") else None

        if task != session.task:
            session.task, session.subtask = task, ""
            session.task_since_step = obs.step
            session.first_subtask.clear()
        session.last_step = obs.step
        session.pending_snapshot = obs
        return ChunkRequest(images=images, task=task, subtask=session.actor_subtask(), state=state, rtc=rtc)

    def take_snapshot(self, session: Session) -> pb.PlanRequest:
        """The planner's request for the session's newest observation, built only when the planner takes it
        (copying the images on every observation put about 0.1 ms on every chunk's path)."""
        obs, session.pending_snapshot = session.pending_snapshot, None
        assert obs is not None, "take_snapshot needs a session with a pending snapshot"
        return pb.PlanRequest(
            session_id=session.id,
            observation_step=obs.step,
            images={self.settings.cameras[name]: image for name, image in obs.images.items()},
            state=obs.state if obs.HasField("state") else None,
            task=session.task,
        )

    def apply_subtask(self, reply: pb.PlanReply) -> pb.SubtaskUpdate | None:
        """Records the planner's answer if its session is still open and on the same task → the update to send."""
        session = self._sessions.get(reply.session_id)
        text = reply.subtask.strip()
        if session is None or reply.observation_step < session.task_since_step:
            return None
        if not text:  # the planner answered but has no subtask: the first chunk need not wait any longer
            session.first_subtask.set()
            return None
        session.subtask = text
        session.subtask_version += 1
        session.first_subtask.set()
        return pb.SubtaskUpdate(
            session_id=session.id,
            text=text,
            version=session.subtask_version,
            observation_step=reply.observation_step,
            decode_ms=reply.decode_ms,
            prefill_ms=reply.prefill_ms,
        )

    def metadata(self, model_config_json: str, num_denoise_steps: int) -> pb.RuntimeMetadata:
        """The runtime's interface; a Session stream adds its session_id."""
        s = self.settings
        return pb.RuntimeMetadata(
            action_dims=s.action_dims,
            action_horizon=s.action_horizon,
            state_dims=s.state_dims,
            cameras=sorted(s.cameras),
            model_config_json=model_config_json,
            num_denoise_steps=num_denoise_steps,
            version="robot_runtime.v1",
        )

    def decode_images(self, obs: pb.Observation) -> dict[str, np.ndarray]:
        """The observation's frames by model key; checks camera names and each frame (pure: safe on a thread)."""
        expected = sorted(self.settings.cameras)
        for name in obs.images:
            if name not in self.settings.cameras:
                raise WireError(f"observation.images[{quoted(name)}]", f"unknown camera; expected {expected}")
        missing = [name for name in expected if name not in obs.images]
        if missing:
            raise WireError(f"observation.images[{missing[0]!r}]", f"camera is missing; expected {expected}")
        return {
            self.settings.cameras[name]: image_to_numpy(image, f"observation.images[{name!r}]")
            for name, image in obs.images.items()
        }

    def _rtc_prefix(self, obs: pb.Observation) -> RtcPrefix | None:
        rtc, field, s = obs.rtc, "observation.rtc", self.settings
        queued = np.zeros((0, s.action_dims), np.float32)
        if rtc.HasField("queued_actions"):
            queued = tensor_to_numpy(rtc.queued_actions, f"{field}.queued_actions")
        execution = int(rtc.execution_horizon) or None  # 0: unset
        actions = checked_rtc(
            queued, rtc.inference_delay, execution, action_dims=s.action_dims, horizon=s.action_horizon, field=field
        )
        return None if actions is None else RtcPrefix(actions, rtc.inference_delay, execution)


def _checked_session_id(session_id: str) -> str:
    if len(session_id) > MAX_SESSION_ID_CHARS or not _SESSION_ID.fullmatch(session_id):
        raise WireError(
            "open.session_id",
            f"{quoted(session_id)} is not an id: at most {MAX_SESSION_ID_CHARS} printable ASCII characters",
        )
    return session_id


def config_json(config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)
