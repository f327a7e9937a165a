"""Model configurations: the pi0.5 sizes by name, and a JSON form stored beside our checkpoints."""

from __future__ import annotations

import dataclasses
from typing import Any

from policy.gemma import PALIGEMMA_VOCAB_SIZE, GemmaConfig, get_gemma_config
from policy.lora import LoRAConfig
from policy.siglip import SiglipConfig, get_siglip_config

IMAGE_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
DTYPES = ("bfloat16", "float32")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network, plus the choices a checkpoint is trained with and must be served with (prompt, normalization).

    discrete_state_input: the normalized state, discretized, is part of the planner and actor prompts
    (`Task: …, State: …;`), as openpi's pi0.5 does; the actor and planner then need the state in every request.
    state_tokens: bins per state dimension for the state as tokens (0: off). The normalized state, padded to
    `action_dim`, enters the prefix after the images as one token per dimension, with a reserved id for each
    (dimension, bin) at the top of the vocabulary (as FAST reserves its range), so a small model reads each
    number from one token instead of doing arithmetic over the digits of the text form. Planner and actor
    then need the state in every request; the tokenizer must not reach the reserved ids.
    quantile_norm: states and actions are normalized with quantiles (else z-scores), as the checkpoint was
    trained; training writes it, and serving reads `use_quantiles` instead of guessing. None (openpi's
    checkpoints, which do not say): openpi's rule, quantiles for pi0.5 and z-scores for pi0.
    """

    paligemma: GemmaConfig
    action_expert: GemmaConfig
    vision: SiglipConfig
    pi05: bool = True
    action_dim: int = 32
    action_horizon: int = 50
    max_token_len: int = 200
    vocab_size: int = PALIGEMMA_VOCAB_SIZE
    dtype: str = "bfloat16"
    image_keys: tuple[str, ...] = IMAGE_KEYS
    discrete_state_input: bool = False
    state_tokens: int = 0
    quantile_norm: bool | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.state_tokens < 0 or self.state_token_offset < 1:
            raise ValueError(
                f"state_tokens={self.state_tokens} bins × {self.action_dim} dims do not fit a vocabulary of "
                f"{self.vocab_size}"
            )
        if self.paligemma.depth != self.action_expert.depth:
            raise ValueError("paligemma and action_expert must have the same depth")

    @property
    def state_token_offset(self) -> int:
        """The first reserved state-token id (the vocabulary size when state tokens are off)."""
        return self.vocab_size - self.state_tokens * self.action_dim

    @property
    def use_quantiles(self) -> bool:
        return self.pi05 if self.quantile_norm is None else self.quantile_norm

    @property
    def needs_state(self) -> bool:
        """Whether planner and actor need the robot state in every request."""
        return self.discrete_state_input or self.state_tokens > 0

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        for key in ("paligemma", "action_expert"):
            gemma = dict(data[key])
            for lora_key in ("lora_attn", "lora_ffn"):
                if gemma.get(lora_key) is not None:
                    gemma[lora_key] = LoRAConfig(**gemma[lora_key])
            data[key] = GemmaConfig(**gemma)
        data["vision"] = SiglipConfig(**data["vision"])
        data["image_keys"] = tuple(data.get("image_keys", IMAGE_KEYS))
        return cls(**data)


def pi05_config(
    paligemma_variant: str = "gemma_2b",
    action_expert_variant: str = "gemma_300m",
    vision_variant: str = "So400m/14",
    *,
    image_size: int = 224,
    **fields: Any,
) -> ModelConfig:
    return ModelConfig(
        paligemma=get_gemma_config(paligemma_variant),
        action_expert=get_gemma_config(action_expert_variant),
        vision=get_siglip_config(vision_variant, image_size),
        **fields,
    )


def _tiny(**fields: Any) -> ModelConfig:
    """A CPU-fast pi0.5 for tests and smoke runs: two small experts, a 1-block ViT on 112² images."""
    llm = GemmaConfig(width=64, depth=2, mlp_dim=128, num_heads=4, num_kv_heads=1, head_dim=16)
    expert = GemmaConfig(width=32, depth=2, mlp_dim=64, num_heads=4, num_kv_heads=1, head_dim=16)
    defaults = dict(action_dim=8, action_horizon=10, max_token_len=48, vocab_size=512, dtype="float32")
    return ModelConfig(llm, expert, get_siglip_config("mu/14", 112), **{**defaults, **fields})


NAMED_CONFIGS = {
    "pi05": lambda **f: pi05_config(**f),
    "pi05_lora": lambda **f: pi05_config("gemma_2b_lora", "gemma_300m_lora", **f),
    "pi0": lambda **f: pi05_config(pi05=False, max_token_len=48, **f),
    "dummy": lambda **f: pi05_config(
        "dummy", "dummy", "mu/14", **{"vocab_size": 1024, "action_horizon": 10, "max_token_len": 48, **f}
    ),
    "tiny": _tiny,
}


def get_model_config(name: str, **fields: Any) -> ModelConfig:
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown model config {name!r}; expected one of {sorted(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name](**fields)
