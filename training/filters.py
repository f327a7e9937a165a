"""Which parameters train: regular expressions over openpi parameter paths such as
`PaliGemma/llm/layers/attn/q_einsum_1/w`.

A parameter trains when its path fully matches `trainable` and does not fully match `frozen`. Frozen parameters
are not differentiated at all and never enter the optimizer, so they come out of training bit-identical
(weight decay included), and their gradients cost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ALL = ".*"
NOTHING = ""
ACTION_EXPERT = r".*llm.*_1.*"
ACTION_PROJECTIONS = (
    r"(action_in_proj|action_out_proj|time_mlp_in|time_mlp_out|state_proj|action_time_mlp_in|action_time_mlp_out)/.*"
)
LORA = r".*lora.*"
LLM = r".*llm.*"

# KI stage 1: the VLM learns subtasks and FAST tokens; the action expert and its projections stay as loaded.
KI_STAGE1_FROZEN = f"{ACTION_EXPERT}|{ACTION_PROJECTIONS}"
# KI stage 2: only the action expert and its projections learn the flow.
KI_STAGE2_TRAINABLE = f"{ACTION_EXPERT}|{ACTION_PROJECTIONS}"
# LoRA: every language-model weight except the adapters stays as loaded (openpi's LoRA freeze filter).
LORA_FROZEN = f"(?!{LORA}){LLM}"


def is_trainable(path: str, trainable: str = ALL, frozen: str = NOTHING) -> bool:
    if frozen and re.fullmatch(frozen, path):
        return False
    return re.fullmatch(trainable, path) is not None


def split_trainable(paths: Iterable[str], trainable: str = ALL, frozen: str = NOTHING) -> tuple[list[str], list[str]]:
    """(trainable paths, frozen paths), each sorted."""
    train: list[str] = []
    freeze: list[str] = []
    for path in sorted(paths):
        (train if is_trainable(path, trainable, frozen) else freeze).append(path)
    return train, freeze
