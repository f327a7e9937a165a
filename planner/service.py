"""The planner process's gRPC service: a thin adapter over `SubtaskDecoder`, or `ReasoningSessions` for a
reasoning checkpoint (`serve --reasoning`).

`Plan` answers one request. `Link` is the runtime's stream: the runtime sends the latest observation of up to
`max_batch` sessions and waits for their replies, so the planner is never queued behind stale observations;
what has arrived when the planner is free is decoded as one batch (one prefill for every session), replies in
request order. Decoding runs on one worker thread so the event loop keeps serving health checks and stats.

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


def empty_reply(request: pb.PlanRequest) -> pb.PlanReply:
    """The answer to an observation the planner rejected: the runtime keeps the session's subtask."""
    return pb.PlanReply(session_id=request.session_id, observation_step=request.observation_step)


class PlannerService(pb_grpc.PlannerServicer):
    def __init__(
        self, planner: SubtaskDecoder | ReasoningSessions, stats: StatsRecorder | None = None, *, max_batch: int = 1
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._planner = planner
        self._stats = stats or StatsRecorder()
        self._max_batch = max_batch
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="planner")

    async def plan(self, request: pb.PlanRequest) -> pb.PlanReply:
        """Validates and decodes one request off the event loop (images too); raises UserFacingError on bad
        input."""
        [reply] = await self.plan_batch([request], strict=True)
        return reply

    async def plan_batch(self, requests: list[pb.PlanRequest], *, strict: bool = False) -> list[pb.PlanReply]:
        """One reply per request, in order, decoded together. A request with bad input gets an empty reply
        (and a warning) while the others are answered; with `strict` its error is raised instead."""
        parsed: list[DecodeRequest | None] = []
        for request in requests:
            try:
                if request.max_tokens < 0:
                    raise WireError("max_tokens", f"must be >= 0, got {request.max_tokens}")
                parsed.append(await asyncio.to_thread(decode_request_from_proto, request))
            except (UserFacingError, WireError) as err:
                if strict:
                    raise
                parsed.append(None)
                self._rejected(request, err)
        good = [(request, p) for request, p in zip(requests, parsed, strict=True) if p is not None]
        loop = asyncio.get_running_loop()
        answers = await loop.run_in_executor(self._executor, self._answer_all, good, strict)
        replies = iter(answers)
        out = []
        for request, p in zip(requests, parsed, strict=True):
            result = next(replies) if p is not None else None
            out.append(plan_reply(request, result) if result is not None else empty_reply(request))
        return out

    def _answer_all(self, batch: list[tuple[pb.PlanRequest, DecodeRequest]], strict: bool) -> list[PlanResult | None]:
        if not batch:
            return []
        if isinstance(self._planner, SubtaskDecoder) and len(batch) > 1:
            try:
                results = self._planner.decode([parsed for _, parsed in batch])
            except UserFacingError:
                pass  # one bad request: answer them one by one so that only it goes unanswered
            else:
                self._stats.count("planner_batches")
                return [self._record(request, result) for (request, _), result in zip(batch, results, strict=True)]
        answers: list[PlanResult | None] = []
        for request, parsed in batch:
            try:
                answers.append(self._record(request, self._answer(request, parsed)))
            except UserFacingError as err:
                if strict:
                    raise
                answers.append(None)
                self._rejected(request, err)
        return answers

    def _record(self, request: pb.PlanRequest, result: PlanResult) -> PlanResult:
        self._stats.observe("planner_prefill", result.prefill_ms)
        self._stats.observe("planner_decode", result.decode_ms)
        self._stats.count("plans")
        if isinstance(self._planner, SubtaskDecoder):
            return truncated(result, request.max_tokens, self._planner.tokenizer)
        return result

    def _rejected(self, request: pb.PlanRequest, err: Exception) -> None:
        self._stats.count("errors")
        log.warning("planner: rejected observation of %s: %s", request.session_id, err)

    def _answer(self, request: pb.PlanRequest, parsed: DecodeRequest) -> PlanResult:
        if isinstance(self._planner, ReasoningSessions):
            step, _ = self._planner.plan(
                request.session_id, request.observation_step, parsed, max_tokens=request.max_tokens
            )
            self._stats.count(f"plans_{step.decision}")
            text = step.text if step.decision == "think" else ""
            return PlanResult(text, step.token_ids, step.finished, step.prefill_ms, step.decode_ms)
        [result] = self._planner.decode([parsed])
        return result

    async def Plan(self, request: pb.PlanRequest, context: grpc.aio.ServicerContext) -> pb.PlanReply:
        try:
            return await self.plan(request)
        except (UserFacingError, WireError) as err:
            self._stats.count("errors")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise AssertionError("unreachable: context.abort raises") from err

    async def Link(self, request_iterator, context: grpc.aio.ServicerContext):
        arrived: asyncio.Queue[pb.PlanRequest | None] = asyncio.Queue()

        async def receive() -> None:
            try:
                async for request in request_iterator:
                    await arrived.put(request)
            finally:
                await arrived.put(None)

        receiver = asyncio.create_task(receive())
        try:
            ended = False
            while not ended:
                first = await arrived.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self._max_batch and not arrived.empty():
                    more = arrived.get_nowait()
                    if more is None:
                        ended = True
                        break
                    batch.append(more)
                for reply in await self.plan_batch(batch):
                    yield reply
        finally:
            receiver.cancel()

    async def GetStats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.Stats:
        return self._stats.to_proto()
