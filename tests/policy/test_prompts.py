import logging

import numpy as np
import pytest

from policy import prompts
from policy.tokenizer import TextTokenizer


def test_clean_task_follows_openpi() -> None:
    assert prompts.clean_task("  Put_the red cube\nin the bowl ") == "Put the red cube in the bowl"
    assert prompts.clean_task("Put_THE Cube", lower=True) == "put the cube"
    assert prompts.clean_instruction(" Pick_up the Cube.\n") == "pick up the cube"
    assert prompts.clean_instruction("done!?") == "done"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1.5, -1),
        (-1.0, 0),
        (-1.0 + 2 / 256 - 1e-9, 0),
        (-1.0 + 2 / 256, 1),
        (-1e-9, 127),
        (0.0, 128),
        (0.5, 192),
        (0.999, 255),
        (1.0, 255),
        (3.0, 255),
    ],
)
def test_discretize_state_bins(value: float, expected: int) -> None:
    assert prompts.discretize_state([value]).tolist() == [expected]


def test_discretize_state_matches_floor_formula_inside_range() -> None:
    values = np.random.default_rng(0).uniform(-1, 1, size=1000)
    expected = np.floor((values + 1) * 128).astype(int)
    np.testing.assert_array_equal(prompts.discretize_state(values), expected)


def test_discretize_state_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        prompts.discretize_state(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        prompts.discretize_state([0.0, np.nan])


def test_text_layouts_are_exact() -> None:
    state = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    assert prompts.pi05_text("Put_the Cube", state) == "Task: Put the Cube, State: 0 128 255;\nAction: "
    assert prompts.planner_text("Put the Red cube in the bowl.") == "Task: put the red cube in the bowl. Subtask: "
    assert prompts.planner_text("lift_it", state) == "Task: lift it, State: 0 128 255; Subtask: "
    assert (
        prompts.actor_text("Put the cube in the bowl", "Pick up the cube.")
        == "Task: put the cube in the bowl. Subtask: pick up the cube;\nAction: "
    )
    assert prompts.actor_text("lift", "grasp", state) == "Task: lift, State: 0 128 255; Subtask: grasp;\nAction: "


@pytest.mark.parametrize("state", [None, np.array([0.25, -0.5])])
def test_actor_text_extends_planner_text(state: np.ndarray | None) -> None:
    task, subtask = "put the mug on the plate", "grasp the mug"
    assert prompts.actor_text(task, subtask, state) == prompts.planner_text(task, state) + f"{subtask};\nAction: "


def test_actor_needs_a_subtask() -> None:
    with pytest.raises(ValueError, match="subtask"):
        prompts.actor_text("lift the cube", " . ")


def _assert_row(row: prompts.TokenizedPrompt, ids: list[int], max_len: int) -> None:
    assert row.tokens.shape == row.mask.shape == (max_len,)
    assert row.tokens.dtype == np.int32 and row.mask.dtype == np.bool_
    assert row.tokens[: len(ids)].tolist() == ids
    assert not row.tokens[len(ids) :].any()
    assert row.mask.tolist() == [True] * len(ids) + [False] * (max_len - len(ids))


def test_pi0_tokenizes_newline_separately(tokenizer: TextTokenizer) -> None:
    row = prompts.tokenize_pi0(tokenizer, "pick_up the cube\n", max_len=32)
    ids = [tokenizer.bos_id, *tokenizer.encode("pick up the cube"), *tokenizer.encode("\n")]
    _assert_row(row, ids, 32)
    assert tokenizer.decode(row.tokens) == "pick up the cube\n"


def test_pi05_row_decodes_to_its_text(tokenizer: TextTokenizer) -> None:
    state = np.array([-1.0, -0.2, 0.3, 0.999, 1.0])
    row = prompts.tokenize_pi05(tokenizer, "put the red cube in the blue bowl", state, max_len=64)
    text = "Task: put the red cube in the blue bowl, State: 0 102 166 255 255;\nAction: "
    _assert_row(row, tokenizer.encode(text, add_bos=True), 64)
    assert row.tokens[0] == tokenizer.bos_id
    assert tokenizer.decode(row.tokens[row.mask]) == text


@pytest.mark.parametrize("state", [None, np.array([0.0, 0.5])])
def test_planner_and_actor_rows(tokenizer: TextTokenizer, state: np.ndarray | None) -> None:
    task, subtask = "Put the cube in the bowl", "pick up the cube"
    planner = prompts.tokenize_planner(tokenizer, task, max_len=48, state=state)
    actor = prompts.tokenize_actor(tokenizer, task, subtask, max_len=48, state=state)
    _assert_row(planner, tokenizer.encode(prompts.planner_text(task, state), add_bos=True), 48)
    _assert_row(actor, tokenizer.encode(prompts.actor_text(task, subtask, state), add_bos=True), 48)
    assert tokenizer.decode(planner.tokens).endswith(". Subtask: " if state is None else "; Subtask: ")
    assert tokenizer.decode(actor.tokens).endswith("Subtask: pick up the cube;\nAction: ")


def test_truncation_warns_once_and_fills_the_row(tokenizer: TextTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    task = "put the red cube in the blue bowl and then " * 4
    full = tokenizer.encode(prompts.planner_text(task), add_bos=True)
    with caplog.at_level(logging.WARNING, logger="policy.prompts"):
        row = prompts.tokenize_planner(tokenizer, task, max_len=8)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(len(full)) in warnings[0].getMessage()
    assert row.tokens.tolist() == full[:8]
    assert row.mask.all()


def test_exact_fit_does_not_warn(tokenizer: TextTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    ids = tokenizer.encode(prompts.planner_text("lift"), add_bos=True)
    with caplog.at_level(logging.WARNING, logger="policy.prompts"):
        row = prompts.tokenize_planner(tokenizer, "lift", max_len=len(ids))
    assert not caplog.records
    assert row.mask.all() and row.tokens.tolist() == ids


def test_pad_tokens_rejects_non_positive_length() -> None:
    with pytest.raises(ValueError, match="max_len"):
        prompts.pad_tokens([2, 5], 0)


def test_planner_example_masks_only_the_target(tokenizer: TextTokenizer) -> None:
    task, subtask = "put the mug in the basket", "Grasp the mug."
    example = prompts.tokenize_planner_example(tokenizer, task, subtask, max_len=40)
    prefix = tokenizer.encode(prompts.planner_text(task), add_bos=True)
    target = prompts.planner_target_ids(tokenizer, subtask)
    assert target[-1] == tokenizer.eos_id
    _assert_row(prompts.TokenizedPrompt(example.tokens, example.mask), prefix + target, 40)
    expected = np.zeros(40, dtype=bool)
    expected[len(prefix) : len(prefix) + len(target)] = True
    np.testing.assert_array_equal(example.loss_mask, expected)
    np.testing.assert_array_equal(example.ar_mask, expected.astype(np.int32))
    assert example.ar_mask.dtype == np.int32
    assert tokenizer.decode(example.tokens[example.loss_mask]) == "grasp the mug"


def test_planner_example_truncation_keeps_masks_in_range(tokenizer: TextTokenizer) -> None:
    prefix_len = len(tokenizer.encode(prompts.planner_text("lift"), add_bos=True))
    example = prompts.tokenize_planner_example(tokenizer, "lift", "grasp the red cube", max_len=prefix_len + 1)
    assert example.loss_mask.tolist() == [False] * prefix_len + [True]


def test_stack_prompts(tokenizer: TextTokenizer) -> None:
    rows = [prompts.tokenize_planner(tokenizer, t, max_len=24) for t in ("lift", "put the cube in the bowl")]
    batch = prompts.stack_prompts(rows)
    assert batch.tokens.shape == batch.mask.shape == (2, 24)
    assert batch.tokens.dtype == np.int32 and batch.mask.dtype == np.bool_
    np.testing.assert_array_equal(batch.tokens[1], rows[1].tokens)
    assert batch.mask.sum(axis=1).tolist() == [r.mask.sum() for r in rows]


def test_stack_prompts_rejects_mixed_or_empty(tokenizer: TextTokenizer) -> None:
    a = prompts.tokenize_planner(tokenizer, "lift", max_len=24)
    b = prompts.tokenize_planner(tokenizer, "lift", max_len=32)
    with pytest.raises(ValueError, match="shape"):
        prompts.stack_prompts([a, b])
    with pytest.raises(ValueError, match="at least one"):
        prompts.stack_prompts([])
