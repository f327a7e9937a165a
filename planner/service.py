"""The planner process's gRPC service: a thin adapter over `SubtaskDecoder`.

`Plan` answers one request. `Link` is the runtime's stream: one request at a time (the runtime sends the next
only after the reply, so the planner is never queued behind stale observations). Decoding runs on one worker
thread so the event loop keeps serving health checks and stats.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging

import grpc

from planner.decoder import PlanRequest, PlanResult, SubtaskDecoder
from policy.errors import UserFacingError
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from runtime.stats import Stats
from runtime.wire import WireError, float_vector, image_to_numpy

log = logging.getLogger(__name__)


def plan_request_from_proto(request: pb.PlanRequest) -> PlanRequest:
    if not request.task.strip():
        raise WireError("task", "is empty; say what the robot should do")
    if not request.images:
        raise WireError("images", "no camera given")
    cameras = {key: image_to_numpy(image, f"images[{key!r}]") for key, image in request.images.items()}
    state = float_vector(request.state, "state") if request.HasField("state") else None
    return PlanRequest(cameras=cameras, task=request.task, state=state)


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
    def __init__(self, decoder: SubtaskDecoder, stats: Stats | None = None):
        self._decoder = decoder
        self._stats = stats or Stats()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="planner")

    async def plan(self, request: pb.PlanRequest) -> pb.PlanReply:
        """Validates and decodes one request off the event loop; raises UserFacingError on bad input."""
        parsed = plan_request_from_proto(request)
        if request.max_tokens < 0:
            raise WireError("max_tokens", f"must be >= 0, got {request.max_tokens}")
        loop = asyncio.get_running_loop()
        [result] = await loop.run_in_executor(self._executor, lambda: self._decoder.decode([parsed]))
        if 0 < request.max_tokens < len(result.token_ids):
            result = self._truncated(result, request.max_tokens)
        self._stats.observe("planner_prefill", result.prefill_ms)
        self._stats.observe("planner_decode", result.decode_ms)
        self._stats.count("plans")
        return plan_reply(request, result)

    def _truncated(self, result: PlanResult, max_tokens: int) -> PlanResult:
        """A shorter answer without compiling a decode loop of another length (the loop length is the server's)."""
        ids = result.token_ids[:max_tokens]
        return dataclasses.replace(result, text=self._decoder.tokenizer.decode(ids).strip(), token_ids=ids, finished=False)

    async def Plan(self, request: pb.PlanRequest, context: grpc.aio.ServicerContext) -> pb.PlanReply:
        try:
            return await self.plan(request)
        except UserFacingError as err:
            self._stats.count("errors")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))

    async def Link(self, request_iterator, context: grpc.aio.ServicerContext):
        async for request in request_iterator:
            try:
                yield await self.plan(request)
            except UserFacingError as err:
                self._stats.count("errors")
                log.warning("planner link: rejected observation of %s: %s", request.session_id, err)
                yield pb.PlanReply(session_id=request.session_id, observation_step=request.observation_step)

    async def GetStats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.Stats:
        return self._stats.to_proto()
