"""The robot-facing runtime: the gRPC session service, batching, the planner link and proxy, supervision of the
planner process, the openpi bridge."""

# A session's first chunk waits this long for the planner's first subtask (serve --wait-for-subtask-ms), so that
# the actor never acts on the bare task, a prompt it was not trained on; past it, the task stands in.
DEFAULT_WAIT_FOR_SUBTASK_MS = 10_000.0
