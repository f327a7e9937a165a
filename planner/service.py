"""The planner process's gRPC service: a thin adapter over `SubtaskDecoder`, or `ReasoningSessions` for a
reasoning checkpoint (`serve --reasoning`).

`Plan` answers one request. `Link` is the runtime's stream: one request at a time (the runtime sends the next
only after the reply, so the planner is never queued behind stale observations). Decoding runs on one worker
thread so the event loop keeps serving health checks and stats.

With reasoning, a reply's subtask is the new reasoning when the planner thinks and empty when it acts: the
runtime keeps a session's subtask, and its version, on an empty one (`SessionRegistry.apply_subtask`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

import grpc

from planner.decoder import DecodeRequest, PlanResult, SubtaskDecoder, truncated
from planner.reasoning import ReasoningSessions
from policy.errors import UserFacingError
from policy.inputs import checked_state, checked_task
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.stats import StatsRecorder
from protos.wire import WireError, image_to_numpy, quoted, tensor_to_numpy

log = logging.getLogger(__name__)


def decode_request_from_proto(request: pb.PlanRequest) -> DecodeRequest:
    """The request's frames and state decoded, task and state checked under the PlanRequest's field names; the
    planner checks the cameras against its model."""
    task = checked_task(request.task, "task")
    cameras = {key: image_to_numpy(image, f"images[{quoted(key)}]") for key, image in request.images.items()}
    state = checked_state(tensor_to_numpy(request.state, "state"), "state") if request.HasField("state") else None
    return DecodeRequest(cameras=cameras, task=task, state=state)


def plan_reply(request: pb.PlanRequest, result: PlanResult) -> pb.PlanReply:
    return pb.PlanReply(
        session_id=request.session_id,
        observation_step=request.observation_step,
        subtask=result.text,
        tokens=list(result.token_ids),
        prefill_ms=result.prefill_ms,
        decode_ms=result.decode_ms,
    )


class PlannerService(pb_grpc.PlannerServicer):
    def __init__(self, planner: SubtaskDecoder | ReasoningSessions, stats: StatsRecorder | None = None):
        self._planner = planner
        self._stats = stats or StatsRecorder()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="planner")

    async def plan(self, request: pb.PlanRequest) -> pb.PlanReply:
        """Validates and decodes one request off the event loop (images too); raises UserFacingError on bad
        input."""
        if request.max_tokens < 0:
            raise WireError("max_tokens", f"must be >= 0, got {request.max_tokens}")
        loop = asyncio.get_running_loop()
        parsed = await asyncio.to_thread(decode_request_from_proto, request)
        result = await loop.run_in_executor(self._executor, self._answer, request, parsed)
        self._stats.observe("planner_prefill", result.prefill_ms)
        self._stats.observe("planner_decode", result.decode_ms)
        self._stats.count("plans")
        return plan_reply(request, result)

    def _answer(self, request: pb.PlanRequest, parsed: DecodeRequest) -> PlanResult:
        if isinstance(self._planner, ReasoningSessions):
            step, _ = self._planner.plan(
                request.session_id, request.observation_step, parsed, max_tokens=request.max_tokens
            )
            self._stats.count(f"plans_{step.decision}")
            text = step.text if step.decision == "think" else ""
            return PlanResult(text, step.token_ids, step.finished, step.prefill_ms, step.decode_ms)
        [result] = self._planner.decode([parsed])
        return truncated(result, request.max_tokens, self._planner.tokenizer)

    async def Plan(self, request: pb.PlanRequest, context: grpc.aio.ServicerContext) -> pb.PlanReply:
        try:
            return await self.plan(request)
        except (UserFacingError, WireError) as err:
            self._stats.count("errors")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise AssertionError("unreachable: context.abort raises") from err

    async def Link(self, request_iterator, context: grpc.aio.ServicerContext):
        async for request in request_iterator:
            try:
                yield await self.plan(request)
            except (UserFacingError, WireError) as err:
                self._stats.count("errors")
                log.warning("planner link: rejected observation of %s: %s", request.session_id, err)
                yield pb.PlanReply(session_id=request.session_id, observation_step=request.observation_step)

    async def GetStats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.Stats:
        return self._stats.to_proto()
