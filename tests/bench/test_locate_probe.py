"""`bench/locate_probe.py`: a short run learns the answer format and reports held-out figures."""

import json


def test_a_short_run_on_reset_scenes_learns_to_answer_with_two_symbols(locate_probe, capsys):
    assert locate_probe.main(["--scenes", "40", "--steps", "60", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["source"] == "reset" and summary["held_out"] == 4 and summary["number_lines"]
    first = json.loads(lines[0])  # the step-0 point
    assert first["held_out_loss"] > 10  # random rows: the answer is anything
    assert summary["held_out_loss"] < 0.5 * first["held_out_loss"]  # 60 steps learn to answer with symbols
    assert summary["median_bin_error"] < first["median_bin_error"]
