"""The robot's side of the runtime: what a robot control loop (or the sim's rollout runner) imports to talk to
a `robot-runtime serve`. It depends on the wire (`protos/`) alone."""

from client.action_queue import ActionQueue, RtcPrefix
from client.robot_client import Chunk, ClientStats, RobotClient, RuntimeClientError, RuntimeInfo, SubtaskEvent

__all__ = [
    "ActionQueue",
    "Chunk",
    "ClientStats",
    "RobotClient",
    "RtcPrefix",
    "RuntimeClientError",
    "RuntimeInfo",
    "SubtaskEvent",
]
