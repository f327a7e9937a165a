"""The session registry's planner snapshot: the newest accepted observation, in the model's camera names."""

from __future__ import annotations

import numpy as np

from protos.robot_runtime.v1 import runtime_pb2 as pb
from runtime.sessions import SessionRegistry, SessionSettings
from runtime.wire import image_to_numpy, numpy_to_image, numpy_to_tensor, tensor_to_numpy

CAMERAS = {"agentview": "base_0_rgb", "wrist": "left_wrist_0_rgb"}


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
    new = registry.open("arm", "put the blue cube in the bowl")
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
