"""bench/vs_openpi.py without openpi: the "not given" answer, and the summary of the timed rounds."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "vs_openpi.py"


@pytest.mark.parametrize("extra", [[], ["--openpi", "."]], ids=["no-path", "not-a-checkout"])
def test_without_openpi_prints_one_json_line_and_exits_0(extra, tmp_path):
    args = [arg if arg != "." else str(tmp_path) for arg in extra]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    answer = json.loads(lines[0])
    assert answer["openpi"] is None
    assert "openpi not given" in answer["skipped"]


def test_summary_takes_the_ratio_per_round_from_each_rounds_medians(vs_openpi):
    rounds = [
        {"ours": [10.0, 12.0, 11.0], "openpi": [20.0, 22.0, 21.0], "openpi_our_jax": [11.0, 11.0, 11.0]},
        {"openpi_our_jax": [10.0, 10.0, 10.0], "ours": [30.0, 30.0, 30.0], "openpi": [15.0, 15.0, 15.0]},
    ]
    summary = vs_openpi.summarize(rounds)
    assert summary["ours"] == {"p50_ms": 21.0, "p90_ms": 30.0, "min_ms": 10.0, "calls": 6}
    assert summary["openpi"]["calls"] == 6
    ratio = summary["ours_over"]["openpi"]
    assert ratio == {"per_round": [round(11 / 21, 3), 2.0], "median": round((11 / 21 + 2) / 2, 3)}
    assert summary["ours_over"]["openpi_our_jax"]["per_round"] == [1.0, 3.0]


def test_summary_skips_rounds_where_a_side_failed(vs_openpi):
    summary = vs_openpi.summarize([{"ours": [10.0], "openpi": [20.0]}, {"ours": [10.0]}])
    assert summary["ours_over"] == {"openpi": {"per_round": [0.5], "median": 0.5}}
    assert "openpi_our_jax" not in summary


def test_every_batch_and_dtype_is_timed_and_decode_once_per_dtype(vs_openpi):
    configs = vs_openpi.configurations([1, 4], ["float32", "bfloat16"])
    assert configs["chunk_b4_bfloat16"] == {"op": "chunk", "batch": 4, "dtype": "bfloat16"}
    assert configs["decode_float32"] == {"op": "decode", "dtype": "float32"}
    assert len(configs) == 6


def test_cold_start_compares_ours_with_the_cache_cold_and_warm(vs_openpi):
    figures = vs_openpi.cold_start_figures({"ours": 5.0, "openpi": 6.0, "openpi_our_jax": 4.0}, 2.0)
    assert figures["ours_warm_cache"] == 2.0
    assert figures["ours_over_openpi"] == {"cold_cache": round(5 / 6, 3), "warm_cache": round(2 / 6, 3)}
    assert figures["ours_over_openpi_our_jax"] == {"cold_cache": 1.25, "warm_cache": 0.5}
    without = vs_openpi.cold_start_figures({"ours": 5.0, "openpi": 6.0}, None)
    assert without == {"ours": 5.0, "openpi": 6.0, "ours_over_openpi": {"cold_cache": round(5 / 6, 3)}}
