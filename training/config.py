"""Training configurations named after the seeds' recipes, each with a CPU-sized `_tiny` twin.

| name                   | recipe                                             | loss weights subtask/FAST/flow |
|------------------------|----------------------------------------------------|--------------------------------|
| pi05_subtask_hybrid    | joint training (seed 000, strategy A)              | 0.15 / 0.15 / 1.0              |
| pi05_subtask_fast      | knowledge insulation stage 1: the VLM trains       | 10 / 1 / 0                     |
| pi05_action_expert     | KI stage 2: only the action expert trains          | 0 / 0 / 1, from stage 1        |
| pi05_custom_lora       | LoRA on a custom LeRobot dataset (seed 003)        | 0 / 0 / 1                      |
| pi05_reason_lora       | LoRA keeping the subtask text alive (seed 002)     | 1 / 0 / 1                      |
| pi05_builtin           | the bundled demo policy (bundles/builtin)          | 1 / 0 / 1                      |

The dataset is always a local path (`data.path`); nothing is fetched. Full-size configs start from the
weights at `init_from` (openpi's `pi05_base/params`, or the stage-1 run for stage 2) and read the real
PaliGemma tokenizer at `tokenizer`; both are paths the user sets with `--set`. Tiny twins start from random
weights and train a small SentencePiece model on the dataset's task and subtask strings.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from policy.config import ModelConfig, get_model_config
from policy.errors import UserFacingError
from policy.gemma import GemmaConfig
from policy.inputs import LIBERO_CAMERAS
from policy.siglip import SiglipConfig, get_siglip_config
from training import filters
from training.optimizer import AdamW, CosineSchedule

# The LIBERO cameras under the names LeRobot datasets (and the built-in sim's recordings) give their videos.
_LIBERO_VIDEOS = tuple((f"observation.images.{name}", key) for name, key in LIBERO_CAMERAS.items())


class ConfigError(UserFacingError):
    """An unknown config name or a `--set` that does not fit the config."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the frames come from and how they map onto the model's inputs.

    cameras: (dataset camera key, model image key) pairs; model keys the dataset lacks are masked out.
    task_key: a per-frame column with the task; None uses `overall_task` when present, else the tasks table.
    reasoning_json: with it, every sample is a think or an act row of the reasoning protocol (policy.prompts)
    instead of the subtask and actor rows; see training.reasoning.
    """

    path: str | None = None
    # Several datasets instead of `path`: ((path, weight), ...); a part's share of the batches is its weight.
    mixture: tuple[tuple[str, float], ...] = ()
    # Share of each dataset's episodes held out for validation losses (training.validation); 0 holds out none.
    val_fraction: float = 0.0
    cameras: tuple[tuple[str, str], ...] = _LIBERO_VIDEOS
    state_key: str = "observation.state"
    action_key: str = "action"
    subtask_key: str = "subtask"
    task_key: str | None = None
    episodes: tuple[int, ...] | None = None
    asset_id: str = "default"
    augment: bool = True
    # openpi's crop and rotation of fixed-camera views; a fixed sim camera whose pixels say where things are
    # (to about the grasp tolerance) trains better without them. Colour jitter is kept either way.
    geometric_augment: bool = True
    # Decode every video frame once into a memory-mapped cache beside the dataset (training.frame_cache): a step's
    # time goes to the model instead of mp4 seeks. It costs H·W·3 bytes a frame and camera on disk.
    frame_cache: bool = False
    num_workers: int = 2
    # cot_simple.json-style reasoning annotations: the text row becomes the reasoning protocol's (seed 002).
    reasoning_json: str | None = None
    think_prob: float = 0.5
    outdated_prob: float = 0.25
    # Localisation co-training (training.locate): with probability locate_prob a sample's text row asks where
    # one thing listed in the per-frame column `scene_key` is, instead of the subtask.
    locate_prob: float = 0.0
    scene_key: str = "scene_locations"
    # Ask only on frames this early in their episode (None: on every frame). Later frames show the hand on its
    # way to the thing, a shortcut that teaches nothing at the reset pose, where the planner needs it most.
    locate_frames: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str
    model: ModelConfig
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    subtask_loss_weight: float = 1.0
    fast_loss_weight: float = 0.0
    flow_loss_weight: float = 1.0
    # Stop-gradient on the prefix KV the action expert reads: the flow loss never moves the VLM.
    knowledge_insulation: bool = False
    # Regexes over parameter paths (see training.filters).
    trainable: str = filters.ALL
    frozen: str = filters.NOTHING
    # Params directory or checkpoint/run directory to start from; `{checkpoint_dir}` and `{exp_name}` are
    # replaced. None: random init.
    init_from: str | None = None
    # SentencePiece model (PaliGemma's for full-size). None: train one of this size on the dataset's strings.
    tokenizer: str | None = None
    tokenizer_vocab_size: int = 400
    # Released FAST tokenizer directory; None fits one on the dataset when the FAST loss is on.
    fast_tokenizer: str | None = None
    fast_vocab_size: int = 1024
    fast_scale: float = 10.0
    # Slots of the training text row (prompt + subtask + FAST); None = model.max_token_len, as openpi.
    max_text_len: int | None = None
    lr: CosineSchedule = dataclasses.field(default_factory=CosineSchedule)
    optimizer: AdamW = dataclasses.field(default_factory=AdamW)
    ema_decay: float | None = None
    batch_size: int = 32
    num_train_steps: int = 30_000
    log_interval: int = 100
    save_interval: int = 1_000
    keep_period: int | None = 5_000
    max_to_keep: int = 1
    seed: int = 42
    checkpoint_dir: str = "checkpoints"
    assets_dir: str = "assets"
    # Written to each checkpoint's serving.json (policy.model_dir.ServingDefaults); None writes none.
    serve_noise_scale: float | None = None
    fsdp_devices: int = 1
    # Batches of held-out frames measured at every checkpoint when data.val_fraction > 0.
    val_batches: int = 4
    # Experiment tracking (training.tracking): TensorBoard event files in the run directory, and Weights &
    # Biases when a project is named (mode "offline" needs no network; none leaves it to W&B's settings).
    tensorboard: bool = True
    wandb_project: str | None = None
    wandb_mode: str | None = None
    # Parameters smaller than this stay replicated under FSDP.
    fsdp_min_mb: float = 4.0

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def text_len(self) -> int:
        return self.max_text_len or self.model.max_token_len

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _tiny_model(image_size: int = 56, **fields: Any) -> ModelConfig:
    """Two 2-layer experts and a 1-block ViT on 56² images: a train step compiles and runs in seconds on CPU.

    The vocabulary holds a 1024-piece tokenizer, the 128 reserved ids and a 512-token FAST range.
    """
    llm = GemmaConfig(width=64, depth=2, mlp_dim=128, num_heads=4, num_kv_heads=1, head_dim=16)
    expert = GemmaConfig(width=64, depth=2, mlp_dim=256, num_heads=4, num_kv_heads=1, head_dim=16)
    defaults = {
        "action_dim": 8,
        "action_horizon": 10,
        "max_token_len": 40,
        "vocab_size": 2048,
        "dtype": "float32",
        "image_keys": tuple(LIBERO_CAMERAS.values()),
    }
    return ModelConfig(llm, expert, get_siglip_config("mu/14", image_size), **{**defaults, **fields})


# Sized so that the joint twin overfits a 2-episode recording in a CI-sized run (tests/training).
_TINY_TRAINING = {
    "batch_size": 8,
    "num_train_steps": 400,
    "log_interval": 10,
    "save_interval": 100,
    "keep_period": None,
    "lr": CosineSchedule(warmup_steps=20, peak_lr=6e-3, decay_steps=400, decay_lr=1e-5),
    "fast_vocab_size": 512,
    "tokenizer_vocab_size": 1024,
    "max_text_len": 80,
}
_TINY_DATA = DataConfig(augment=False, num_workers=1)
_LIBERO_SCHEDULE = CosineSchedule(warmup_steps=3_000, peak_lr=2.5e-5, decay_steps=150_000, decay_lr=2.5e-6)


def _hybrid() -> TrainConfig:
    return TrainConfig(
        name="pi05_subtask_hybrid",
        model=get_model_config("pi05", action_horizon=20, max_token_len=192),
        subtask_loss_weight=0.15,
        fast_loss_weight=0.15,
        flow_loss_weight=1.0,
        lr=_LIBERO_SCHEDULE,
        ema_decay=0.999,
        batch_size=64,
        num_train_steps=40_000,
        save_interval=5_000,
    )


def _subtask_fast() -> TrainConfig:
    return TrainConfig(
        name="pi05_subtask_fast",
        model=get_model_config("pi05", action_horizon=25, max_token_len=256),
        subtask_loss_weight=10.0,
        fast_loss_weight=1.0,
        flow_loss_weight=0.0,
        frozen=filters.KI_STAGE1_FROZEN,
        lr=_LIBERO_SCHEDULE,
        ema_decay=0.999,
        batch_size=512,
        num_train_steps=20_000,
        save_interval=4_000,
        fsdp_devices=8,
    )


def _action_expert() -> TrainConfig:
    return TrainConfig(
        name="pi05_action_expert",
        model=get_model_config("pi05", action_horizon=25, max_token_len=256),
        subtask_loss_weight=0.0,
        fast_loss_weight=0.0,
        flow_loss_weight=1.0,
        trainable=filters.KI_STAGE2_TRAINABLE,
        knowledge_insulation=True,
        init_from="{checkpoint_dir}/pi05_subtask_fast/{exp_name}",
        lr=_LIBERO_SCHEDULE,
        ema_decay=0.999,
        batch_size=512,
        num_train_steps=8_000,
        save_interval=2_000,
        fsdp_devices=8,
    )


def _custom_lora() -> TrainConfig:
    return TrainConfig(
        name="pi05_custom_lora",
        model=get_model_config("pi05_lora", action_horizon=10),
        subtask_loss_weight=0.0,
        fast_loss_weight=0.0,
        flow_loss_weight=1.0,
        frozen=filters.LORA_FROZEN,
        lr=CosineSchedule(warmup_steps=500, peak_lr=3e-4, decay_steps=10_000, decay_lr=1e-5),
        optimizer=AdamW(weight_decay=0.01),
        batch_size=32,
        num_train_steps=10_000,
        save_interval=1_000,
        keep_period=5_000,
    )


def _reason_lora() -> TrainConfig:
    return TrainConfig(
        name="pi05_reason_lora",
        model=get_model_config("pi05_lora", action_horizon=16, max_token_len=415),
        subtask_loss_weight=1.0,
        fast_loss_weight=0.0,
        flow_loss_weight=1.0,
        frozen=filters.LORA_FROZEN,
        lr=CosineSchedule(warmup_steps=1_000, peak_lr=5e-5, decay_steps=30_000, decay_lr=5e-6),
        batch_size=4,
        num_train_steps=30_000,
    )


def _tiny_twin(full: Callable[[], TrainConfig], **changes: Any) -> Callable[[], TrainConfig]:
    """The same recipe (loss weights, filters, KI) on the tiny model, with CPU-sized data and schedule."""

    def make() -> TrainConfig:
        config = full()
        model = _tiny_model()
        if config.model.paligemma.lora_attn is not None:
            model = _with_lora(model)
        return config.replace(
            name=config.name + "_tiny",
            model=model,
            data=_TINY_DATA,
            ema_decay=None,
            fsdp_devices=1,
            optimizer=AdamW(weight_decay=config.optimizer.weight_decay),
            **{**_TINY_TRAINING, **changes},
        )

    return make


def _with_lora(model: ModelConfig) -> ModelConfig:
    from policy.lora import LoRAConfig

    lora = LoRAConfig(rank=4, alpha=4.0)
    return model.replace(
        paligemma=dataclasses.replace(model.paligemma, lora_attn=lora, lora_ffn=lora),
        action_expert=dataclasses.replace(model.action_expert, lora_attn=lora, lora_ffn=lora),
    )


def _builtin() -> TrainConfig:
    """The policy bundled in `bundles/builtin`: the joint recipe on the built-in tasks, sized for a CPU.

    Two 64² cameras go through a two-layer convolutional stem (overlapping receptive fields) and 16-pixel
    patches, 16 tokens each: the prefix length sets a CPU step's cost (8-pixel patches make a step 2.6× slower).
    The prompt scales and shifts the stem's channels (FiLM), without which the small network never learns which
    object a colour word names. The state enters as 8 reserved-id tokens of 64 bins (state_tokens), not as text.

    Localisation questions are asked on first frames only, where the hand does not give the answer away. The
    bundle's recipe has three stages, all this config with overrides (`bundles/recreate_builtin.sh`): localisation
    alone on reset scenes; these losses on demonstrations mixed with reset scenes, started from the first; the
    second continued at a lower learning rate.
    """
    vision = SiglipConfig(
        width=128, depth=2, mlp_dim=256, num_heads=4, patch=16, image_size=64, stem=(32, 64), film=True
    )
    llm = GemmaConfig(width=96, depth=2, mlp_dim=256, num_heads=4, num_kv_heads=1, head_dim=24)
    expert = GemmaConfig(width=64, depth=2, mlp_dim=192, num_heads=4, num_kv_heads=1, head_dim=24)
    model = ModelConfig(
        llm,
        expert,
        vision,
        action_dim=8,
        action_horizon=10,
        max_token_len=48,
        vocab_size=1024,
        dtype="float32",
        image_keys=tuple(LIBERO_CAMERAS.values()),
        state_tokens=64,
    )
    return TrainConfig(
        name="pi05_builtin",
        model=model,
        data=DataConfig(
            path="data/builtin",
            num_workers=2,
            geometric_augment=False,
            frame_cache=True,
            locate_prob=0.6,
            locate_frames=1,
        ),
        subtask_loss_weight=1.0,
        fast_loss_weight=0.0,
        flow_loss_weight=1.0,
        lr=CosineSchedule(warmup_steps=300, peak_lr=2e-3, decay_steps=12_000, decay_lr=2e-5),
        optimizer=AdamW(weight_decay=1e-4),
        batch_size=32,
        num_train_steps=12_000,
        log_interval=50,
        save_interval=1_000,
        keep_period=None,
        tokenizer_vocab_size=512,
        max_text_len=48,
        serve_noise_scale=0.4,
    )


_FULL = {
    "pi05_subtask_hybrid": _hybrid,
    "pi05_subtask_fast": _subtask_fast,
    "pi05_action_expert": _action_expert,
    "pi05_custom_lora": _custom_lora,
    "pi05_reason_lora": _reason_lora,
}
_CONFIGS: dict[str, Callable[[], TrainConfig]] = dict(_FULL, pi05_builtin=_builtin)
_CONFIGS.update({name + "_tiny": _tiny_twin(make) for name, make in _FULL.items()})
_CONFIGS["pi05_reason_lora_tiny"] = _tiny_twin(_reason_lora, max_text_len=None)
_CONFIGS["pi05_action_expert_tiny"] = _tiny_twin(
    _action_expert, init_from="{checkpoint_dir}/pi05_subtask_fast_tiny/{exp_name}"
)


def config_names() -> list[str]:
    return sorted(_CONFIGS)


def describe(config: TrainConfig) -> str:
    """One line for `train --list`."""
    weights = f"{config.subtask_loss_weight:g}/{config.fast_loss_weight:g}/{config.flow_loss_weight:g}"
    model = config.model
    size = "tiny" if model.paligemma.width < 1024 else "pi0.5"
    lora = " lora" if model.paligemma.lora_attn is not None else ""
    ki = " KI" if config.knowledge_insulation and config.flow_loss_weight > 0 else ""
    return f"{config.name:26s} {size}{lora}, H={model.action_horizon}, weights subtask/FAST/flow {weights}{ki}"


def get_config(name: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """The named config with `key=value` overrides applied (dotted keys reach nested fields)."""
    if name not in _CONFIGS:
        raise ConfigError(f"unknown training config {name!r}; expected one of {config_names()}")
    config = _CONFIGS[name]()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        config = set_field(config, key.strip(), value)
    return config


def set_field(obj: Any, dotted: str, raw: str) -> Any:
    """A copy of the dataclass `obj` with the field at `dotted` parsed from `raw` by the field's type."""
    head, _, rest = dotted.partition(".")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if head not in fields:
        raise ConfigError(f"{type(obj).__name__} has no field {head!r}; fields: {sorted(fields)}")
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{head!r} is not a nested config, so {dotted!r} cannot be set")
        value = set_field(current, rest, raw)
    else:
        hints = typing.get_type_hints(type(obj))
        value = _parse(raw, hints[head], dotted)
    try:
        return dataclasses.replace(obj, **{head: value})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"--set {dotted}={raw}: {err}") from err


def _parse(raw: str, hint: Any, key: str) -> Any:
    text = raw.strip()
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and text.lower() in ("none", "null", ""):
        return None
    base = hint
    if isinstance(hint, types.UnionType) or optional:
        base = next(a for a in args if a is not type(None))
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"expected true or false, got {raw!r}")
            return text.lower() in ("true", "1", "yes")
        if base in (int, float):
            return base(text)
        if base is str:
            return raw
        if origin is tuple:
            return _as_tuple(json.loads(text))
    except (ValueError, json.JSONDecodeError) as err:
        raise ConfigError(f"--set {key}: cannot parse {raw!r} as {base}: {err}") from err
    raise ConfigError(f"--set {key}: fields of type {hint} cannot be set from the command line")


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value
