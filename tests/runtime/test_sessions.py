"""The session registry: the planner snapshot (the newest accepted observation, in the model's camera names),
stale plans, and session ownership (resume tokens, random ids, the grace period after a drop)."""

from __future__ import annotations

import numpy as np
import pytest

from policy.inputs import LIBERO_CAMERAS
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import WireError, image_to_numpy, numpy_to_image, numpy_to_tensor, tensor_to_numpy
from runtime.sessions import RESUME_GRACE_S, SessionInUse, SessionRegistry, SessionSettings

CAMERAS = LIBERO_CAMERAS


def observation(step: int, task: str = "") -> pb.Observation:
    rng = np.random.default_rng(step)
    return pb.Observation(
        step=step,
        images={name: numpy_to_image(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for name in CAMERAS},
        state=numpy_to_tensor(np.full(4, step, np.float32)),
        task=task,
    )


def test_the_snapshot_is_the_newest_observation_in_model_camera_names_and_is_taken_once():
    registry = SessionRegistry(SessionSettings(CAMERAS, state_dims=4, action_dims=2, action_horizon=3))
    session = registry.open("arm", "put the red cube in the bowl")
    registry.accept(session, observation(1))
    newest = observation(2, task="put the blue cube in the bowl")
    registry.accept(session, newest)

    snapshot = registry.take_snapshot(session)

    assert session.pending_snapshot is None
    assert (snapshot.session_id, snapshot.observation_step) == ("arm", 2)
    assert snapshot.task == "put the blue cube in the bowl"
    assert sorted(snapshot.images) == sorted(CAMERAS.values())
    for robot_name, model_name in CAMERAS.items():
        sent = image_to_numpy(snapshot.images[model_name], model_name)
        np.testing.assert_array_equal(sent, image_to_numpy(newest.images[robot_name], robot_name))
    np.testing.assert_array_equal(tensor_to_numpy(snapshot.state, "state"), np.full(4, 2, np.float32))


def test_a_snapshot_without_state_carries_none():
    registry = SessionRegistry(SessionSettings(CAMERAS, state_dims=4, action_dims=2, action_horizon=3))
    session = registry.open("arm", "put the red cube in the bowl")
    obs = observation(1)
    obs.ClearField("state")
    registry.accept(session, obs)
    snapshot = registry.take_snapshot(session)
    assert not snapshot.HasField("state")
    assert snapshot.task == "put the red cube in the bowl"


def test_a_plan_for_the_previous_task_is_dropped_when_the_task_changes_in_flight():
    registry = SessionRegistry(SessionSettings(CAMERAS, state_dims=4, action_dims=2, action_horizon=3))
    session = registry.open("arm", "put the red cube in the bowl")
    registry.accept(session, observation(1))
    in_flight = registry.take_snapshot(session)  # the planner works on the red cube ...
    request = registry.accept(session, observation(2, task="put the blue cube in the bowl"))  # ... the task changes

    stale = pb.PlanReply(session_id="arm", subtask="move to the red cube", observation_step=in_flight.observation_step)
    assert registry.apply_subtask(stale) is None
    assert (session.subtask, session.subtask_version) == ("", 0)
    assert not session.first_subtask.is_set() and request.subtask == "put the blue cube in the bowl"

    fresh = registry.take_snapshot(session)
    update = registry.apply_subtask(
        pb.PlanReply(session_id="arm", subtask="move to the blue cube", observation_step=fresh.observation_step)
    )
    assert update is not None and (update.text, update.version) == ("move to the blue cube", 1)


def test_a_takeover_with_a_new_task_drops_plans_made_for_the_old_one():
    registry = SessionRegistry(SessionSettings(CAMERAS, state_dims=4, action_dims=2, action_horizon=3))
    old = registry.open("arm", "put the red cube in the bowl")
    registry.accept(old, observation(4))
    in_flight = registry.take_snapshot(old)
    new = registry.open("arm", "put the blue cube in the bowl", old.resume_token)
    late = pb.PlanReply(session_id="arm", subtask="move to the red cube", observation_step=in_flight.observation_step)
    assert registry.apply_subtask(late) is None and new.subtask == ""


def test_an_empty_plan_ends_the_first_chunks_wait_but_changes_no_subtask():
    registry = SessionRegistry(SessionSettings(CAMERAS, state_dims=4, action_dims=2, action_horizon=3))
    session = registry.open("arm", "put the red cube in the bowl")
    registry.accept(session, observation(1))
    snapshot = registry.take_snapshot(session)
    reply = pb.PlanReply(session_id="arm", subtask="  ", observation_step=snapshot.observation_step)
    assert registry.apply_subtask(reply) is None
    assert session.first_subtask.is_set() and (session.subtask, session.subtask_version) == ("", 0)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _registry(clock: FakeClock | None = None) -> SessionRegistry:
    settings = SessionSettings(CAMERAS, state_dims=4, action_dims=2, action_horizon=3)
    return SessionRegistry(settings, clock=clock or FakeClock())


def test_server_assigned_ids_and_tokens_are_random():
    registry = _registry()
    sessions = [registry.open("", "put the red cube in the bowl") for _ in range(50)]
    assert len({s.id for s in sessions}) == 50 and len({s.resume_token for s in sessions}) == 50
    assert all(len(s.id) == 16 and len(s.resume_token) >= 32 for s in sessions)
    assert not any(s.id.startswith("session-") for s in sessions)


def test_a_stranger_cannot_take_over_an_open_session_and_the_owner_keeps_it():
    registry = _registry()
    owner = registry.open("arm", "put the red cube in the bowl")
    registry.accept(owner, observation(5))
    for token in ("", "guess", owner.resume_token[:-1]):
        with pytest.raises(SessionInUse, match="open.session_id: session 'arm' is in use"):
            registry.open("arm", "put the blue cube in the bowl", token)
    assert registry.get("arm") is owner and not owner.taken_over.is_set()
    assert (owner.task, owner.last_step) == ("put the red cube in the bowl", 5)


def test_the_owner_resumes_with_its_token_and_keeps_its_state():
    registry = _registry()
    owner = registry.open("arm", "put the red cube in the bowl")
    registry.accept(owner, observation(5))
    owner.subtask, owner.subtask_version = "move to the red cube", 3
    resumed = registry.open("arm", "", owner.resume_token)
    assert owner.taken_over.is_set() and registry.get("arm") is resumed
    assert (resumed.last_step, resumed.subtask, resumed.subtask_version) == (5, "move to the red cube", 3)
    assert resumed.resume_token == owner.resume_token and len(registry) == 1


def test_a_dropped_session_is_kept_for_its_owner_during_the_grace_period_only():
    clock = FakeClock()
    registry = _registry(clock)
    owner = registry.open("arm", "put the red cube in the bowl")
    registry.accept(owner, observation(7))
    registry.close(owner)
    assert len(registry) == 0
    with pytest.raises(SessionInUse):
        registry.open("arm", "put the red cube in the bowl")
    clock.now += RESUME_GRACE_S - 1
    resumed = registry.open("arm", "", owner.resume_token)
    assert resumed.last_step == 7
    registry.close(resumed)

    clock.now += RESUME_GRACE_S + 1
    fresh = registry.open("arm", "put the red cube in the bowl")
    assert fresh.last_step == -1 and fresh.resume_token != owner.resume_token


@pytest.mark.parametrize("session_id", ["a" * 129, "arm\n", "ärm", "\x00", "\x1b[2J"])
def test_session_ids_are_bounded_and_plain(session_id):
    with pytest.raises(WireError, match="open.session_id") as info:
        _registry().open(session_id, "put the red cube in the bowl")
    assert len(str(info.value)) < 300


def test_an_unknown_camera_name_is_quoted_in_bounded_form():
    registry = _registry()
    session = registry.open("arm", "put the red cube in the bowl")
    obs = observation(1)
    obs.images["x" * 100_000].CopyFrom(obs.images["wrist"])
    with pytest.raises(WireError, match="unknown camera") as info:
        registry.accept(session, obs)
    assert len(str(info.value)) < 300


def test_a_finished_session_frees_its_id_at_once():
    registry = _registry()
    session = registry.open("arm", "put the red cube in the bowl")
    session.finished = True
    registry.close(session)
    assert registry.open("arm", "put the red cube in the bowl").last_step == -1


def test_dropped_sessions_keep_no_frames_and_are_capped(monkeypatch):
    monkeypatch.setattr("runtime.sessions.MAX_DROPPED_SESSIONS", 3)
    registry = _registry()
    sessions = []
    for i in range(5):
        session = registry.open(f"arm-{i}", "put the red cube in the bowl")
        registry.accept(session, observation(1))
        registry.close(session)
        sessions.append(session)
        assert session.pending_snapshot is None
    assert registry.open("arm-0", "put the red cube in the bowl").last_step == -1  # evicted: a fresh session
    with pytest.raises(SessionInUse):
        registry.open("arm-4", "put the red cube in the bowl")
