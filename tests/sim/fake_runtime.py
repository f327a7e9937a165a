"""An in-process fake of the runtime's gRPC service for rollout tests: chunks of +x moves, scripted planner
updates, any action dims."""

from __future__ import annotations

import threading

import numpy as np

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.wire import numpy_to_tensor

HORIZON = 8
SUBTASKS = {0: "reach for it", 2: "grasp it"}  # session observation step -> planner update


def _metadata(action_dims: int = 7) -> pb.RuntimeMetadata:
    return pb.RuntimeMetadata(
        action_dims=action_dims,
        action_horizon=HORIZON,
        state_dims=8,
        cameras=["agentview", "wrist"],
        num_denoise_steps=1,
        version="robot_runtime.v1",
    )


class FakeRuntime(pb_grpc.RobotRuntimeServicer):
    """Answers every observation with a chunk of +x moves; sends planner updates at fixed observation steps."""

    def __init__(self, action_dims: int = 7):
        self.action_dims = action_dims
        self.lock = threading.Lock()
        self.sessions: dict[str, list[pb.Observation]] = {}

    def GetMetadata(self, request, context):
        return _metadata(self.action_dims)

    def Session(self, request_iterator, context):
        session_id = next(request_iterator).open.session_id
        with self.lock:
            seen = self.sessions.setdefault(session_id, [])
        yield pb.SessionEvent(metadata=_metadata(self.action_dims))
        version, text = 0, ""
        for request in request_iterator:
            if request.WhichOneof("kind") == "close":
                return
            observation = request.observation
            seen.append(observation)
            if observation.step in SUBTASKS:
                version, text = version + 1, SUBTASKS[observation.step]
                yield pb.SessionEvent(
                    subtask=pb.SubtaskUpdate(
                        session_id=session_id, text=text, version=version, observation_step=observation.step
                    )
                )
            actions = np.zeros((HORIZON, self.action_dims), np.float32)
            actions[:, 0], actions[:, 6] = 0.2, -1.0
            yield pb.SessionEvent(
                chunk=pb.ActionChunk(
                    observation_step=observation.step,
                    actions=numpy_to_tensor(actions),
                    subtask=text,
                    subtask_version=version,
                    timings=pb.Timings(total_ms=2.0),
                    session_id=session_id,
                )
            )
