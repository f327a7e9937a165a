"""A seeded subset of the hostile-client suite (`make fuzz` runs the long one): every hostile stream gets a
status (never UNKNOWN) in time, a stranger cannot take the bystander's session, and the bystander robot keeps
getting chunks throughout."""

from __future__ import annotations

import asyncio
import time

import pytest
from hostile import Bystander, attack, hostile_cases, report, sessions_open, takeover_attempts
from server_process import run_server, wait_until

CASES = 160


@pytest.fixture(scope="module")
def fuzz_server(tiny_checkpoint, tmp_path_factory):
    # First chunks do not wait for the planner, so that a stream's status never waits on a planner backlog.
    with run_server(tiny_checkpoint, tmp_path_factory.mktemp("fuzz"), "--wait-for-subtask-ms", "0") as server:
        yield server


def test_every_hostile_stream_gets_a_status_and_the_bystander_keeps_streaming(fuzz_server):
    address = fuzz_server.address
    with Bystander(address, period_s=0.05) as bystander:
        wait_until(lambda: bystander.count(0, float("inf")) >= 3, 60, "the bystander's first chunks")
        started = time.monotonic()
        outcomes = asyncio.run(attack(address, hostile_cases(seed=0, count=CASES), concurrency=8))
        ended = time.monotonic()
        stolen = takeover_attempts(address, bystander.client.session_id)
        served_during = bystander.count(started, ended)
        after = bystander.count(0, float("inf"))
        wait_until(lambda: bystander.count(0, float("inf")) > after, 30, "a chunk after the attack")

    result = report(outcomes)
    assert result["hangs"] == 0 and result["unknown"] == 0, result
    assert not result["unexpected"], result
    assert {"INVALID_ARGUMENT", "OK", "abandoned", "tcp"} <= set(result["statuses"]), result
    assert stolen == ["ALREADY_EXISTS"] * 3
    assert not bystander.errors, bystander.errors[:3]
    assert served_during > 0
    assert fuzz_server.process.poll() is None
    wait_until(lambda: sessions_open(address) == 0, 30, "every hostile session to be released")
