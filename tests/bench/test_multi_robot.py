"""bench/multi_robot.py: a short run end to end (a random tiny checkpoint, N = 1 and 2) and its scaling arithmetic."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "multi_robot.py"


@pytest.mark.slow  # starts a runtime and three client processes: about 45 s on 2 cores
def test_a_short_run_prints_a_table_then_one_json_line_with_sane_figures():
    args = ["--sessions", "2,1", "--duration-s", "1.5", "--settle-s", "0.3", "--warmup", "2", "--engine-calls", "2"]
    args += ["--max-batch", "2"]  # the runtime then compiles only the batch buckets 1 and 2
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    *table, last = done.stdout.strip().splitlines()
    assert any(line.split()[:2] == ["N", "chunks/s"] for line in table)
    result = json.loads(last)

    assert [r["sessions"] for r in result["results"]] == [1, 2]
    for r in result["results"]:
        n = r["sessions"]
        assert r["chunks"] >= n and r["chunks_per_s"] == pytest.approx(r["chunks"] / r["window_s"], abs=0.01)
        assert len(r["session_latency"]) == n
        for latency in [r["latency"], *r["session_latency"]]:
            assert 0 < latency["p50_ms"] <= latency["p99_ms"] < 30_000
        assert 0 < r["server_engine_p50_ms"] < r["latency"]["p99_ms"]
        assert 1 <= r["mean_batch"] <= n
        assert {int(size) for size in r["batch_sizes"]} <= set(range(1, n + 1))
        served = sum(int(size) * count for size, count in r["batch_sizes"].items())
        assert served == pytest.approx(r["chunks"], rel=0.2, abs=2 * n)  # the server counts over its own window
        assert 0 < r["actor_busy"] <= 1.05
        assert r["dropped"] == 0
        assert {"runtime", "event_loop", "xla", "planner", "clients", "others"} <= set(r["cores"])
        assert r["cores"]["runtime"] > 0 and r["cores"]["clients"] > 0
    assert result["results"][0]["mean_batch"] == 1.0
    assert result["scaling"]["1"] == 1.0 and result["scaling"]["2"] > 0
    assert result["ratio"]["sessions"] == 2 and result["ratio"]["value"] == result["scaling"]["2"]
    assert result["ratio"]["met"] == (result["ratio"]["value"] >= 0.8)
    engine = result["engine"]
    assert set(engine["by_sessions"]) == {"1", "2"} and 2 in engine["buckets"]
    assert all(t["batch_ms"] > 0 and t["prefill_ms"] > 0 for t in engine["by_sessions"].values())
    assert engine["ceiling"]["1"] == 1.0 and engine["ceiling"]["2"] > 0


def test_scaling_divides_by_n_times_the_lone_sessions_throughput(multi_robot):
    summaries = [{"sessions": 1, "chunks_per_s": 100.0}, {"sessions": 4, "chunks_per_s": 320.0}]
    scale = multi_robot.scaling(summaries)
    assert scale["by_sessions"] == {"1": 1.0, "4": 0.8}
    assert scale["ratio"] == {"sessions": 4, "value": 0.8, "target": 0.8, "met": True}
    assert multi_robot.scaling(summaries[1:]) == {"by_sessions": {}, "ratio": None}


def test_rounds_of_one_n_are_pooled(multi_robot):
    def round_(samples, batches):
        counters = {"batches": batches, "batched_chunks": 2 * batches, "actor_busy_us": 500_000, "dropped": 0}
        cpu = {"runtime": 0.5, "event_loop": 0.1, "xla": 0.2, "planner": 0.0, "clients": 0.1, "machine": 1.0}
        return {"sessions": 2, "window_s": 1.0, "samples": samples, "counters": counters, "cpu_s": cpu}

    chunk = (0.0, 10.0, 1.0, 6.0)  # arrival, round trip, queue, server total
    summary = multi_robot.summarize([round_([[chunk] * 3, [chunk] * 2], 2), round_([[chunk], [chunk] * 4], 3)])
    assert summary["chunks"] == 10 and summary["chunks_per_s"] == 5.0
    assert summary["chunks_per_s_by_round"] == [5.0, 5.0]
    assert summary["mean_batch"] == 2.0 and summary["batches_per_s"] == 2.5 and summary["actor_busy"] == 0.5
    assert (summary["server_queue_p50_ms"], summary["server_engine_p50_ms"], summary["other_p50_ms"]) == (1, 5, 4)
    assert summary["cores"]["others"] == 0.4  # the machine's 1.0 less the runtime, planner and clients
