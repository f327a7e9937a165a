"""bench/cold_start.py's reading of the serve log and its summary (the starts themselves are the bench's job)."""

from __future__ import annotations

import datetime


def test_compilations_and_ready_times_come_from_the_serve_log(cold_start):
    started = datetime.datetime(2026, 11, 30, 13, 26, 40).timestamp()
    log = "\n".join(
        [
            "2026-11-30 13:26:43,417 robot_runtime INFO compilation cache: /tmp/xla",
            "2026-11-30 13:27:17,335 robot_runtime INFO actor compiled 12 executables in 5.0 s, 12 from the "
            "compilation cache",
            "2026-11-30 13:27:19,104 robot_runtime INFO planner compiled 2 executables in 16.5 s, 0 from the "
            "compilation cache",
            "2026-11-30 13:27:19,250 robot_runtime INFO planner ready",
        ]
    )
    assert cold_start.compiled(log) == {
        "actor": {"executables": 12, "compile_s": 5.0, "from_cache": 12},
        "planner": {"executables": 2, "compile_s": 16.5, "from_cache": 0},
    }
    assert cold_start.compiled("x robot_runtime INFO actor compiled 3 executables in 1.5 s") == {
        "actor": {"executables": 3, "compile_s": 1.5, "from_cache": 0}
    }
    assert cold_start.logged_seconds(log, "planner ready", started) == 39.25
    assert cold_start.logged_seconds(log, "runtime ready", started) is None


def test_warm_over_cold_takes_the_median_of_the_warm_starts(cold_start):
    warm = [
        {"ready_s": 10.0, "first_chunk_s": 11.0, "first_subtask_s": 12.0, "planner_ready_s": None},
        {"ready_s": 20.0, "first_chunk_s": 21.0, "first_subtask_s": 22.0, "planner_ready_s": 5.0},
        {"ready_s": 30.0, "first_chunk_s": 31.0, "first_subtask_s": 32.0, "planner_ready_s": 6.0},
    ]
    medians = cold_start.medians(warm)
    assert medians == {"ready_s": 20.0, "first_chunk_s": 21.0, "first_subtask_s": 22.0}
    cold = {"ready_s": 80.0, "first_chunk_s": 84.0, "first_subtask_s": 0.0}
    assert cold_start.ratios(medians, cold) == {"ready_s": 0.25, "first_chunk_s": 0.25}
