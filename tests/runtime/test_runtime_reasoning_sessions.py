"""`serve --reasoning` on the runtime's side, without sockets or a model: the actor's context is the task as a
first segment spells it until the planner thinks, then the latest reasoning; the local planner gets the flag."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import numpy_to_image
from runtime.serve import ModelSource, PlannerSupervisor, RuntimeOptions
from runtime.sessions import SessionRegistry, SessionSettings

SETTINGS = SessionSettings({"agentview": "base_0_rgb"}, state_dims=8, action_dims=7, action_horizon=10)
TASK = "put the bowl on the plate"


def _observation(step: int) -> pb.Observation:
    return pb.Observation(step=step, images={"agentview": numpy_to_image(np.zeros((8, 8, 3), np.uint8))})


def test_the_actor_acts_on_the_first_step_context_then_on_the_latest_reasoning():
    registry = SessionRegistry(SETTINGS, reasoning=True)
    session = registry.open("arm", TASK)
    assert registry.accept(session, _observation(1)).subtask == f"Instruction: {TASK}"
    update = registry.apply_subtask(pb.PlanReply(session_id="arm", observation_step=1, subtask="Next I grasp the bowl"))
    assert (update.text, update.version) == ("Next I grasp the bowl", 1)
    assert registry.apply_subtask(pb.PlanReply(session_id="arm", observation_step=2)) is None  # the planner acted
    assert registry.accept(session, _observation(3)).subtask == "Next I grasp the bowl"
    assert session.subtask_version == 1

    spelled = registry.open("spelled", f"Instruction: {TASK}")
    assert registry.accept(spelled, _observation(1)).subtask == f"Instruction: {TASK}"
    plain = SessionRegistry(SETTINGS)
    assert plain.accept(plain.open("arm", TASK), _observation(1)).subtask == TASK


def test_the_local_planner_process_is_started_in_reasoning_mode():
    options = RuntimeOptions(ModelSource(pathlib.Path("ckpt")), reasoning=True)
    command = PlannerSupervisor(options, "unix:/tmp/planner.sock").command()
    assert "--reasoning" in command and "--max-tokens" not in command
    capped = PlannerSupervisor(dataclasses.replace(options, planner_max_tokens=8), "unix:/tmp/planner.sock").command()
    assert capped[capped.index("--max-tokens") + 1] == "8"
    assert "--reasoning" not in PlannerSupervisor(RuntimeOptions(ModelSource(pathlib.Path("ckpt"))), "x").command()
