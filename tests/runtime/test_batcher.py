"""ChunkBatcher without sockets: batching across sessions, latest-observation-wins, error isolation."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from actor.engine import ChunkRequest, ChunkResult, ChunkTimings, InvalidRequest
from protos.stats import StatsRecorder
from runtime.batcher import ChunkBatcher, Dropped


def request(task: str) -> ChunkRequest:
    return ChunkRequest({}, task, task)


class FakeEngine:
    def __init__(self):
        self.batches: list[list[str]] = []

    def run(self, requests):
        self.batches.append([r.task for r in requests])
        for index, r in enumerate(requests):
            if r.task == "bad":
                raise InvalidRequest("task", "is bad", index)
        return [
            ChunkResult(np.full((2, 1), len(r.task), np.float32), ChunkTimings(1.0, 1.0, 2.0, len(requests)))
            for r in requests
        ]


def run(coro):
    return asyncio.run(coro)


def test_sessions_are_batched_and_a_newer_observation_replaces_a_queued_one():
    async def scenario():
        engine, stats = FakeEngine(), StatsRecorder()
        batcher = ChunkBatcher(engine, stats, max_batch=4, max_wait_ms=50)
        batcher.start()
        first = batcher.submit("a", request("a1"))
        newer = batcher.submit("a", request("a22"))
        other = batcher.submit("b", request("b1"))
        with pytest.raises(Dropped):
            await first
        results = await asyncio.gather(newer, other)
        await batcher.stop()
        return engine, stats, results

    engine, stats, results = run(scenario())
    assert engine.batches == [["a22", "b1"]]
    assert [float(r.result.actions[0, 0]) for r in results] == [3.0, 2.0]
    assert stats.counter("dropped") == 1


def test_a_lone_session_does_not_wait_for_company():
    async def scenario():
        engine = FakeEngine()
        batcher = ChunkBatcher(engine, StatsRecorder(), max_batch=8, max_wait_ms=500, open_sessions=lambda: 1)
        batcher.start()
        start = time.perf_counter()
        await batcher.submit("a", request("a"))
        elapsed = time.perf_counter() - start
        await batcher.stop()
        return elapsed

    assert run(scenario()) < 0.25


def test_a_request_the_engine_rejects_fails_alone():
    async def scenario():
        engine = FakeEngine()
        batcher = ChunkBatcher(engine, StatsRecorder(), max_batch=4, max_wait_ms=50)
        batcher.start()
        good, bad = batcher.submit("a", request("good")), batcher.submit("b", request("bad"))
        outcome = await asyncio.gather(good, bad, return_exceptions=True)
        await batcher.stop()
        return engine, outcome

    engine, (good, bad) = run(scenario())
    assert isinstance(bad, InvalidRequest) and bad.field == "task"
    assert float(good.result.actions[0, 0]) == 4.0
    assert engine.batches == [["good", "bad"], ["good"]]


def test_stats_count_batches_by_size_their_chunks_and_the_time_in_flight():
    async def scenario():
        engine, stats = FakeEngine(), StatsRecorder()
        batcher = ChunkBatcher(engine, stats, max_batch=4, max_wait_ms=50, open_sessions=lambda: 2)
        batcher.start()
        await asyncio.gather(batcher.submit("a", request("a")), batcher.submit("b", request("b")))
        await batcher.submit("a", request("a"))
        await batcher.stop()
        return stats

    stats = run(scenario())
    assert engine_counters(stats) == {"batches": 2, "batches_of_1": 1, "batches_of_2": 1, "batched_chunks": 3}
    assert stats.counter("actor_busy_us") > 0


def engine_counters(stats: StatsRecorder) -> dict[str, int]:
    return {k: v for k, v in stats.to_proto().counters.items() if k.startswith("batch")}
