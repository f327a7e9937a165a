"""The robot client's own latency numbers: percentiles over a recent window, counts over the client's lifetime."""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from client.chunk_book import Chunk

RECENT_SAMPLES = 2048


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float


@dataclasses.dataclass(frozen=True)
class ClientStats:
    """Percentiles cover the most recent `RECENT_SAMPLES` chunks; counts cover the whole client lifetime."""

    chunks: int
    round_trip: LatencySummary
    server_total: LatencySummary
    server_queue: LatencySummary
    server_prefill: LatencySummary
    server_denoise: LatencySummary
    reconnects: int
    superseded: int
    subtask_updates: int


class _Latencies:
    def __init__(self) -> None:
        self.count = 0
        self.recent: collections.deque[float] = collections.deque(maxlen=RECENT_SAMPLES)

    def add(self, value_ms: float) -> None:
        self.count += 1
        self.recent.append(value_ms)

    def summary(self) -> LatencySummary:
        if not self.recent:
            return LatencySummary(self.count, math.nan, math.nan)
        p50, p99 = np.percentile(np.fromiter(self.recent, float), (50, 99))
        return LatencySummary(self.count, float(p50), float(p99))


class ChunkLatencies:
    """Every received chunk's round trip (when its observation was sent by this client) and server timings.

    Not locked: the client calls it under its own lock."""

    def __init__(self) -> None:
        self._round_trip = _Latencies()
        self._server = {name: _Latencies() for name in ("total", "queue", "prefill", "denoise")}

    def add(self, chunk: Chunk) -> None:
        if not math.isnan(chunk.round_trip_ms):
            self._round_trip.add(chunk.round_trip_ms)
        for name in self._server:
            self._server[name].add(getattr(chunk.timings, f"{name}_ms"))

    def stats(self, *, reconnects: int, superseded: int, subtask_updates: int) -> ClientStats:
        """→ the client's stats, with the counts kept by the session stream, the chunk book and the client."""
        return ClientStats(
            chunks=self._server["total"].count,
            round_trip=self._round_trip.summary(),
            server_total=self._server["total"].summary(),
            server_queue=self._server["queue"].summary(),
            server_prefill=self._server["prefill"].summary(),
            server_denoise=self._server["denoise"].summary(),
            reconnects=reconnects,
            superseded=superseded,
            subtask_updates=subtask_updates,
        )
