"""The planner service's `Link`: observations that arrive together are decoded as one batch, replies in order,
and one bad observation costs only its own reply."""

from __future__ import annotations

import asyncio

import numpy as np

from planner.decoder import DecodeRequest
from planner.service import PlannerService, decode_request_from_proto
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.stats import StatsRecorder
from protos.wire import numpy_to_image


def _proto(session: str, step: int, cameras: dict[str, np.ndarray], task: str) -> pb.PlanRequest:
    images = {key: numpy_to_image(image) for key, image in cameras.items()}
    return pb.PlanRequest(session_id=session, observation_step=step, images=images, task=task)


def _link(service: PlannerService, requests: list[pb.PlanRequest]) -> list[pb.PlanReply]:
    async def arriving():
        for request in requests:
            yield request

    async def collect():
        return [reply async for reply in service.Link(arriving(), None)]

    return asyncio.run(collect())


def test_link_decodes_what_arrived_together_as_one_batch_in_order(ascii_decoder, requests):
    protos = [_proto(f"arm{i}", 10 + i, r.cameras, r.task) for i, r in enumerate(requests[:3])]
    alone = [ascii_decoder.decode([request]) for request in _decode_requests(protos)]
    stats = StatsRecorder()
    replies = _link(PlannerService(ascii_decoder, stats, max_batch=4), protos)
    assert [(r.session_id, r.observation_step) for r in replies] == [("arm0", 10), ("arm1", 11), ("arm2", 12)]
    assert [r.subtask for r in replies] == [result.text for [result] in alone]
    assert (stats.counter("planner_batches"), stats.counter("plans")) == (1, 3)

    one_at_a_time = StatsRecorder()
    again = _link(PlannerService(ascii_decoder, one_at_a_time, max_batch=1), protos)
    assert [r.subtask for r in again] == [r.subtask for r in replies]
    assert (one_at_a_time.counter("planner_batches"), one_at_a_time.counter("plans")) == (0, 3)


def test_a_bad_observation_in_a_batch_gets_an_empty_reply_and_the_others_are_answered(ascii_decoder, requests):
    protos = [_proto(f"arm{i}", i, r.cameras, r.task) for i, r in enumerate(requests[:3])]
    protos[1].session_id = "broken"
    protos[1].images["not_a_camera"].CopyFrom(numpy_to_image(np.zeros((8, 8, 3), np.uint8)))
    stats = StatsRecorder()
    replies = _link(PlannerService(ascii_decoder, stats, max_batch=4), protos)
    assert [r.session_id for r in replies] == ["arm0", "broken", "arm2"]
    assert replies[1].subtask == "" and not replies[1].tokens
    assert replies[0].tokens and replies[2].tokens
    assert (stats.counter("errors"), stats.counter("plans")) == (1, 2)


def _decode_requests(requests: list[pb.PlanRequest]) -> list[DecodeRequest]:
    return [decode_request_from_proto(r) for r in requests]
