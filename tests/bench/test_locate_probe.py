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
    for key in ("objects_right", "containers_right", "objects_chance"):
        assert 0.0 <= summary[key] <= 1.0


def test_answers_are_scored_by_the_nearest_thing_objects_and_containers_apart(locate_probe):
    scene = "red cube <x05><y07>; blue cylinder <x05><y21>; green cube <x06><y35>; white box <x24><y33>"
    questions = ["locate the blue cylinder", "locate the red cube", "locate the white box", "locate the white box"]
    said = [(5, 20), (6, 33), (23, 31), (5, 8)]
    assert locate_probe.score_answers(questions, [scene] * 4, said) == {
        "objects_right": 0.5,
        "containers_right": 0.5,
        "objects_chance": round(1 / 3, 3),
    }
