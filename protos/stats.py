"""Latency histograms and counters for the stats RPC: fixed log-spaced buckets, cheap to update."""

from __future__ import annotations

import bisect
import collections
import threading

import numpy as np

from protos.robot_runtime.v1 import runtime_pb2 as pb

BOUNDS_MS = tuple(float(b) for b in np.round(np.geomspace(0.25, 60_000, 40), 3))
_RECENT = 2048


class LatencyHistogram:
    """One latency's counts per bucket (for the wire's `Histogram`) plus a window of recent values (for exact-ish
    percentiles)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.recent: collections.deque[float] = collections.deque(maxlen=_RECENT)

    def add(self, value_ms: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS_MS, value_ms)] += 1
        self.recent.append(value_ms)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.recent, q)) if self.recent else 0.0

    def to_proto(self) -> pb.Histogram:
        return pb.Histogram(
            bounds_ms=BOUNDS_MS,
            counts=self.counts,
            p50_ms=self.percentile(50),
            p99_ms=self.percentile(99),
            count=sum(self.counts),
        )


class StatsRecorder:
    """The latency histograms and counters that `GetStats` reports; `to_proto()` takes the wire's `Stats`.

    Thread-safe: engines record from worker threads, the servicer reads from the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: dict[str, LatencyHistogram] = collections.defaultdict(LatencyHistogram)
        self._counters: collections.Counter[str] = collections.Counter()

    def observe(self, name: str, value_ms: float) -> None:
        with self._lock:
            self._latency[name].add(value_ms)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters[name]

    def to_proto(self) -> pb.Stats:
        with self._lock:
            return pb.Stats(
                latency={k: h.to_proto() for k, h in self._latency.items()},
                counters=dict(self._counters),
            )
