"""The network and what every user of it shares, bottom layer beside `protos` (it imports no other package
of the runtime): the pi0.5 network (`pi05.Pi05`, built from `siglip` with its optional `keypoints`, `gemma`
and `lora`), its config and weights (`config`, `checkpoint`, `model_dir`), what it reads
(`observation.ModelInput`, which `batching.build_input` stacks from rows that `inputs` checked; `images`,
`prompts`, `tokenizer`, `fast`, `normalize`), KV-cached decoding (`decoding`, `masks`), how the engines
compile it (`compiled`, with JAX's persistent compilation cache from `compile_cache`) and the openpi parity
check (`parity`).

Shapes at the network boundary are jaxtyping annotations; `policy.observation` lists the axis names.
`normalize.normalize` and `normalize.unnormalize` stay in their module (the one shares its name).
Importing the package loads no jax: each public name imports its submodule on first use (`__getattr__`,
PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from policy.batching import BATCH_BUCKETS, Row, bucket_for, build_input
    from policy.checkpoint import CheckpointError, init_params, load_model, load_params, model_from_params, save_params
    from policy.compile_cache import CompileCacheError, enable_compile_cache
    from policy.compiled import CompiledStages, CompileEvent, ExecutableTable, describe_compiles
    from policy.config import NAMED_CONFIGS, ModelConfig, get_model_config, pi05_config
    from policy.decoding import TokenChooser
    from policy.errors import UserFacingError
    from policy.fast import FastTokenizer
    from policy.gemma import GemmaConfig, KVCache
    from policy.images import resize_with_pad
    from policy.inputs import (
        LIBERO_CAMERAS,
        InputError,
        checked_cameras,
        checked_rtc,
        checked_state,
        checked_task,
        checked_text,
        model_state,
    )
    from policy.lora import LoRAConfig
    from policy.model_dir import ModelDir, ServingDefaults, init_model_dir
    from policy.normalize import NormStats, RunningStats, load_norm_stats, save_norm_stats
    from policy.observation import ModelInput, uint8_to_model
    from policy.parity import check_parity
    from policy.pi05 import Pi05
    from policy.prompts import (
        ReasoningTokens,
        TokenizedPrompt,
        Tokenizer,
        clean_instruction,
        reasoning_tokens,
        tokenize_actor,
        tokenize_planner,
        tokenize_reasoning_prompt,
    )
    from policy.siglip import SiglipConfig
    from policy.tokenizer import TextTokenizer, train_tokenizer

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "policy.batching": ("BATCH_BUCKETS", "Row", "bucket_for", "build_input"),
    "policy.checkpoint": (
        "CheckpointError",
        "init_params",
        "load_model",
        "load_params",
        "model_from_params",
        "save_params",
    ),
    "policy.compile_cache": ("CompileCacheError", "enable_compile_cache"),
    "policy.compiled": ("CompileEvent", "CompiledStages", "ExecutableTable", "describe_compiles"),
    "policy.config": ("NAMED_CONFIGS", "ModelConfig", "get_model_config", "pi05_config"),
    "policy.decoding": ("TokenChooser",),
    "policy.errors": ("UserFacingError",),
    "policy.fast": ("FastTokenizer",),
    "policy.gemma": ("GemmaConfig", "KVCache"),
    "policy.images": ("resize_with_pad",),
    "policy.inputs": (
        "LIBERO_CAMERAS",
        "InputError",
        "checked_cameras",
        "checked_rtc",
        "checked_state",
        "checked_task",
        "checked_text",
        "model_state",
    ),
    "policy.lora": ("LoRAConfig",),
    "policy.model_dir": ("ModelDir", "ServingDefaults", "init_model_dir"),
    "policy.normalize": ("NormStats", "RunningStats", "load_norm_stats", "save_norm_stats"),
    "policy.observation": ("ModelInput", "uint8_to_model"),
    "policy.parity": ("check_parity",),
    "policy.pi05": ("Pi05",),
    "policy.prompts": (
        "ReasoningTokens",
        "TokenizedPrompt",
        "Tokenizer",
        "clean_instruction",
        "reasoning_tokens",
        "tokenize_actor",
        "tokenize_planner",
        "tokenize_reasoning_prompt",
    ),
    "policy.siglip": ("SiglipConfig",),
    "policy.tokenizer": ("TextTokenizer", "train_tokenizer"),
}
__all__ = [
    "BATCH_BUCKETS",
    "CheckpointError",
    "CompileCacheError",
    "CompileEvent",
    "CompiledStages",
    "ExecutableTable",
    "FastTokenizer",
    "GemmaConfig",
    "InputError",
    "KVCache",
    "LIBERO_CAMERAS",
    "LoRAConfig",
    "ModelConfig",
    "ModelDir",
    "ModelInput",
    "NAMED_CONFIGS",
    "NormStats",
    "Pi05",
    "ReasoningTokens",
    "Row",
    "RunningStats",
    "ServingDefaults",
    "SiglipConfig",
    "TextTokenizer",
    "TokenChooser",
    "TokenizedPrompt",
    "Tokenizer",
    "UserFacingError",
    "bucket_for",
    "build_input",
    "check_parity",
    "checked_cameras",
    "checked_rtc",
    "checked_state",
    "checked_task",
    "checked_text",
    "clean_instruction",
    "describe_compiles",
    "enable_compile_cache",
    "get_model_config",
    "init_model_dir",
    "init_params",
    "load_model",
    "load_norm_stats",
    "load_params",
    "model_from_params",
    "model_state",
    "pi05_config",
    "reasoning_tokens",
    "resize_with_pad",
    "save_norm_stats",
    "save_params",
    "tokenize_actor",
    "tokenize_planner",
    "tokenize_reasoning_prompt",
    "train_tokenizer",
    "uint8_to_model",
]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
