"""`python -m app.actor_eval`: the move-fit figures, and one run on a random tiny checkpoint."""

import json

import numpy as np
import pytest

from app import actor_eval
from app.cli import main as cli_main


def test_move_fit_scores_a_perfect_an_opposite_and_a_still_actor():
    expert = np.array([[0.3, 0.0, 0.0, 0, 0, 0, 1], [0.0, -0.4, 0.0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, -1]], np.float32)
    assert actor_eval.move_fit(expert, expert) == {
        "frames": 3,
        "position_error": 0.0,
        "expert_step": 0.2333,
        "cosine": 1.0,
    }
    opposite = actor_eval.move_fit(-expert, expert)
    assert opposite["cosine"] == -1.0 and opposite["position_error"] == pytest.approx((0.6 + 0.8) / 3, abs=1e-4)
    still = actor_eval.move_fit(np.zeros_like(expert), expert)
    assert still["cosine"] == 0.0 and still["position_error"] == still["expert_step"]


def test_one_episode_per_split_end_to_end(tmp_path, capsys):
    checkpoint = tmp_path / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(checkpoint), "--seed", "4"]) == 0
    code = actor_eval.main(
        ["--checkpoint", str(checkpoint), "--tasks", "pick_place", "--episodes", "1", "--every", "20", "--no-progress"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for split, seed in (("train", actor_eval.TRAIN_SEED), ("heldout", actor_eval.HELDOUT_SEED)):
        assert summary[split]["seed"] == seed
        assert summary[split]["all"]["frames"] == sum(
            fit["frames"] for phase, fit in summary[split].items() if phase not in ("seed", "all")
        )
        assert "move to" in summary[split]
