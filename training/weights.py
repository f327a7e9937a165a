"""Initial parameters of a run: random, or loaded from a checkpoint with new LoRA adapters left random.

openpi's base checkpoints have no LoRA factors, so a LoRA run takes every other weight from the checkpoint
and its adapters from the random init; any other parameter the checkpoint lacks, or a shape that differs,
is an error. Parameters the checkpoint has and the model does not (another config's extras) are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import jax
import numpy as np

from policy.checkpoint import CheckpointError, flatten, init_params, load_params, unflatten
from policy.config import ModelConfig
from policy.pi05 import number_line_rows
from policy.tokenizer import numbered_symbols
from training.checkpoints import resolve_params_dir

logger = logging.getLogger(__name__)

MAY_BE_MISSING = r".*lora.*"


def initial_params(model: ModelConfig, seed: int, init_from: str | None) -> dict:
    """Nested numpy parameters in openpi's layout."""
    random = {k: np.asarray(v) for k, v in flatten(init_params(model, seed)).items()}
    if init_from is None:
        return unflatten(random)
    params_dir = resolve_params_dir(init_from)
    loaded = flatten(load_params(params_dir))
    merged = {}
    for key, value in random.items():
        if key in loaded:
            shape = tuple(np.shape(loaded[key]))
            if shape != value.shape:
                expected = value.shape
                raise CheckpointError(f"{params_dir}: parameter {key} has shape {shape}, the model expects {expected}")
            merged[key] = np.asarray(loaded[key], value.dtype)
        elif re.fullmatch(MAY_BE_MISSING, key):
            merged[key] = value
        else:
            raise CheckpointError(f"{params_dir} has no parameter {key} (shape {value.shape})")
    dropped = sorted(set(loaded) - set(random))
    if dropped:
        logger.warning(
            "ignoring %d parameters of %s the model does not have, e.g. %s", len(dropped), params_dir, dropped[0]
        )
    logger.info("initialized from %s", params_dir)
    return unflatten(merged)


EMBEDDING = "PaliGemma/llm/embedder/input_embedding"


def number_line_symbols(params: dict, pieces: Sequence[str], seed: int) -> tuple[dict, list[str]]:
    """Random-init `params` with the rows of numbered symbols (`<x00>` … `<x29>`, `<y00>` …) set to one number
    line per name (policy.pi05.number_line_rows), and the names set.

    A location answer is two such symbols, and their rows are both what the model reads and, tied, what its
    output layer scores. Unrelated random rows make every bin a separate class to learn from scratch, with a
    few dozen examples each; on a number line a bin near the right one already scores well, and a hidden
    state that encodes a place linearly reads out as the nearest bin."""
    families = numbered_symbols(pieces)
    if not families:
        return params, []
    flat = flatten(params)
    table = np.array(flat[EMBEDDING])
    bins = max(max(numbers) + 1 for numbers in families.values())
    rows = np.asarray(number_line_rows(bins, len(families), table.shape[1], jax.random.key(seed)), table.dtype)
    names = sorted(families)
    for axis, name in enumerate(names):
        for number, piece_id in families[name].items():
            table[piece_id] = rows[axis * bins + number]
    flat[EMBEDDING] = table
    return unflatten(flat), names
