"""The long hostile-client run against a live runtime (`make fuzz`): thousands of seeded attack cases (see
tests/runtime/hostile.py) while a bystander robot streams at 10 Hz, then one JSON line.

    .venv/bin/python bench/fuzz_session.py [--cases 5000] [--seed 0] [--concurrency 16] [--rate 100]
        [--checkpoint DIR]

Without --checkpoint it serves a random tiny checkpoint. The attack starts 100 cases a second (`--rate`), up to
16 at once: a quarter of the hostile sessions send a good observation before the bad one, and the chunks
they get cost the actor real work; unpaced (`--rate 0`) the run also measures a saturated actor, not only
hostile input. The runtime process is pinned to half of the cores, its planner and this process (attacker and
bystander) to the other half. Reported: cases, statuses seen, hangs (no status
within 5 s), UNKNOWN statuses, cases with an unexpected status, takeover attempts on the bystander's session,
runtime RSS before and after, bystander p99 before and during the attack, whether the runtime survived, and
`passed` against the acceptance bounds (0 hangs, 0 UNKNOWN, RSS growth <= 50 MB, p99 during <= 2x before).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "runtime")]

from hostile import Bystander, attack, hostile_cases, report, rss_mb, sessions_open, takeover_attempts  # noqa: E402

from bench.common import tiny_checkpoint  # noqa: E402
from runtime.launch import serve_process  # noqa: E402

MAX_RSS_GROWTH_MB = 50.0
MAX_P99_RATIO = 2.0


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _core_split() -> tuple[list[str], str]:
    """The runtime process gets the first half of the cores; its planner, the attacker and the bystander the
    rest, as an attacker on its own machine would not share the runtime's cores."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return [], "shared"
    half = len(cores) // 2
    runtime, others = cores[:half], cores[half:]
    os.sched_setaffinity(0, others)
    spec = lambda ids: ",".join(map(str, ids))  # noqa: E731
    return [
        "--actor-cpus",
        spec(runtime),
        "--planner-cpus",
        spec(others),
    ], f"runtime {spec(runtime)}, rest {spec(others)}"


def run(args: argparse.Namespace, checkpoint: pathlib.Path, workdir: pathlib.Path) -> dict:
    pinning, cores = _core_split()
    with serve_process(checkpoint, workdir / "serve.log", "--wait-for-subtask-ms", "0", *pinning) as server:
        address, pid = server.address, server.process.pid
        with Bystander(address, period_s=0.1) as bystander:
            time.sleep(args.baseline_s)
            rss_before = rss_mb(pid)
            started = time.monotonic()
            cases = hostile_cases(args.seed, args.cases)
            outcomes = asyncio.run(attack(address, cases, concurrency=args.concurrency, rate=args.rate or None))
            ended = time.monotonic()
            stolen = takeover_attempts(address, bystander.client.session_id)
            released = _wait(lambda: sessions_open(address) == 1, 30)
            time.sleep(2.0)
            rss_after = rss_mb(pid)
            p99_before = bystander.p99_ms(0, started)
            p99_during = bystander.p99_ms(started, ended)
            result = report(outcomes) | {
                "seed": args.seed,
                "cores": cores,
                "attack_s": round(ended - started, 1),
                "takeovers": stolen,
                "sessions_released": released,
                "runtime_alive": server.process.poll() is None,
                "rss_before_mb": round(rss_before, 1),
                "rss_after_mb": round(rss_after, 1),
                "bystander_p99_before_ms": round(p99_before, 2),
                "bystander_p99_during_ms": round(p99_during, 2),
                "bystander_chunks_during": bystander.count(started, ended),
                "bystander_errors": bystander.errors[:3],
            }
    result["passed"] = (
        result["hangs"] == 0
        and result["unknown"] == 0
        and not result["unexpected"]
        and result["takeovers"] == ["ALREADY_EXISTS"] * len(result["takeovers"])
        and result["sessions_released"]
        and result["runtime_alive"]
        and not result["bystander_errors"]
        and rss_after - rss_before <= MAX_RSS_GROWTH_MB
        and p99_during <= MAX_P99_RATIO * p99_before
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--rate", type=float, default=100.0, help="hostile cases started per second (0: as fast as the server answers)"
    )
    parser.add_argument("--baseline-s", type=float, default=15.0, help="bystander-only time before the attack")
    parser.add_argument("--checkpoint", type=pathlib.Path, help="serve this checkpoint (default: random tiny)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        workdir = pathlib.Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = tiny_checkpoint(workdir / "tiny", seed=1)
        result = run(args, checkpoint, workdir)
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
