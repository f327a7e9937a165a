"""The planner's `Plan` and `GetStats` on the runtime's own port, forwarded to its planner process, so that
`robot-runtime plan --server` and other tools reach the planner through the address robots already use. The
runtime's health for the Planner service follows the planner process's own health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc

PLANNER_SERVICE = pb.DESCRIPTOR.services_by_name["Planner"].full_name


class PlannerProxy(pb_grpc.PlannerServicer):
    def __init__(self, channel_factory: Callable[[], grpc.aio.Channel], metadata=(), timeout_s: float = 60.0):
        self._channel_factory = channel_factory
        self._channel: grpc.aio.Channel | None = None
        self._metadata = metadata
        self._timeout_s = timeout_s

    def _planner(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = self._channel_factory()
        return self._channel

    async def Plan(self, request: pb.PlanRequest, context: grpc.aio.ServicerContext) -> pb.PlanReply:
        return await self._forward(pb_grpc.PlannerStub(self._planner()).Plan, request, context)

    async def GetStats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.Stats:
        return await self._forward(pb_grpc.PlannerStub(self._planner()).GetStats, request, context)

    async def Link(self, request_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Link is the runtime's own stream to its planner")
        yield  # an async generator, as a response stream's handler must be

    async def _forward(self, method, request, context):
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                await context.abort(code, f"the planner process is not answering: {err.details()}")
            await context.abort(code, err.details() or "")

    async def follow_health(self, set_serving: Callable[[bool], Awaitable[object]], interval_s: float = 2.0) -> None:
        """Keeps the Planner service's health equal to the planner process's, checking every `interval_s`: a
        planner that is dead, loading or too busy to answer a health check within `interval_s` is NOT_SERVING."""
        while True:
            serving = False
            try:
                reply = await health_pb2_grpc.HealthStub(self._planner()).Check(
                    health_pb2.HealthCheckRequest(service=PLANNER_SERVICE), timeout=interval_s
                )
                serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure to answer is "not serving"; the loop must live on
                serving = False
            await set_serving(serving)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
