"""A model directory in openpi's layout, plus what serving needs beside the weights.

<dir>/params/                           orbax PyTree {"params": ...}   (openpi's layout, loads unchanged)
<dir>/assets/<asset_id>/norm_stats.json openpi's norm stats
<dir>/model_config.json                 our ModelConfig (absent in openpi checkpoints: pass a config name)
<dir>/tokenizer.model                   optional SentencePiece model (real checkpoints: the user gives a path)
<dir>/serving.json                      optional serving defaults the checkpoint was tuned with
                                        ({"noise_scale": s}); absent: openpi's sampling
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from policy import checkpoint
from policy.checkpoint import CheckpointError
from policy.config import ModelConfig, get_model_config
from policy.normalize import NormStats, load_norm_stats, save_norm_stats
from policy.tokenizer import TextTokenizer, train_tokenizer

CONFIG_FILE = "model_config.json"
TOKENIZER_FILE = "tokenizer.model"
SERVING_FILE = "serving.json"
DEFAULT_ASSET_ID = "default"
# Random checkpoints get every weight perturbed, so their actions depend on images, prompt and time.
RANDOM_CHECKPOINT_NOISE = 0.05


@dataclasses.dataclass(frozen=True)
class ServingDefaults:
    """How a checkpoint is best sampled, measured when it was made; `serve` flags override it.

    noise_scale: the standard deviation of the flow's starting noise (1 = openpi). A small model trained from
    scratch on noisy demonstrations puts the spread of its data's futures into every chunk; starting the flow
    nearer its centre (e.g. 0.4) samples the likelier motion.
    """

    noise_scale: float = 1.0

    @classmethod
    def read(cls, path: pathlib.Path) -> ServingDefaults:
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            defaults = cls(**data)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f'{path} is not valid serving defaults ({{"noise_scale": 0.4}}): {err}') from err
        check_noise_scale(defaults.noise_scale, str(path))
        return defaults

    def write(self, path: pathlib.Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))


def check_noise_scale(value: float, where: str) -> float:
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
        raise CheckpointError(f"{where}: noise_scale must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class ModelDir:
    root: pathlib.Path
    config: ModelConfig
    norm_stats: dict[str, NormStats]
    tokenizer_path: pathlib.Path | None
    serving: ServingDefaults = ServingDefaults()

    @classmethod
    def open(
        cls,
        root: str | pathlib.Path,
        *,
        config_name: str | None = None,
        tokenizer: str | pathlib.Path | None = None,
        asset_id: str | None = None,
        dtype: str | None = None,
    ) -> ModelDir:
        """Reads config, norm stats and the tokenizer path; weights load separately (`load_model`)."""
        root = pathlib.Path(root).expanduser().resolve()
        if not root.is_dir():
            raise CheckpointError(f"checkpoint directory {root} does not exist")
        config = _read_config(root, config_name)
        if dtype:
            config = config.replace(dtype=dtype)
        serving = ServingDefaults.read(root / SERVING_FILE)
        return cls(root, config, _read_norm_stats(root, asset_id), _tokenizer_path(root, tokenizer), serving)

    def load_model(self):
        """The network with its weights stored in the config's dtype, as openpi serves (`restore_params(dtype=)`):
        a bfloat16 model keeps one bfloat16 copy, not float32 weights cast on every call."""
        return checkpoint.load_model(self.config, self.root / "params", self.config.dtype)

    def text_tokenizer(self) -> TextTokenizer:
        """The prompt tokenizer; a one-line `CheckpointError` when there is none or it cannot be read."""
        if self.tokenizer_path is None:
            raise CheckpointError(f"{self.root} has no {TOKENIZER_FILE}; pass --tokenizer PATH")
        try:
            return TextTokenizer(self.tokenizer_path)
        except ValueError as err:
            raise CheckpointError(str(err)) from err


def _read_config(root: pathlib.Path, config_name: str | None) -> ModelConfig:
    if config_name is not None:
        return get_model_config(config_name)
    path = root / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{root} has no {CONFIG_FILE}; name the model config (e.g. --config pi05)")
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path} is not a valid model config: {err}") from err


def _read_norm_stats(root: pathlib.Path, asset_id: str | None) -> dict[str, NormStats]:
    assets = root / "assets"
    if asset_id is None:
        found = sorted(p.parent.relative_to(assets) for p in assets.rglob("norm_stats.json")) if assets.is_dir() else []
        if not found:
            return {}
        if len(found) > 1:
            raise CheckpointError(
                f"{assets} holds several norm stats {[str(f) for f in found]}; choose one with --asset-id"
            )
        asset_id = str(found[0])
    path = assets / asset_id / "norm_stats.json"
    if not path.exists():
        raise CheckpointError(f"no norm stats at {path}")
    return load_norm_stats(path)


def _tokenizer_path(root: pathlib.Path, tokenizer: str | pathlib.Path | None) -> pathlib.Path | None:
    if tokenizer is not None:
        path = pathlib.Path(tokenizer).expanduser().resolve()
        if not path.is_file():
            raise CheckpointError(f"tokenizer {path} does not exist")
        return path
    bundled = root / TOKENIZER_FILE
    return bundled if bundled.is_file() else None


def identity_norm_stats(dim: int) -> NormStats:
    """Stats that leave data in [-1, 1] unchanged (up to 1e-6) under both z-score and quantile normalization."""
    return NormStats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def init_model_dir(
    config_name: str,
    out: str | pathlib.Path,
    *,
    seed: int = 0,
    asset_id: str = DEFAULT_ASSET_ID,
    state_dim: int | None = None,
    action_dim: int | None = None,
    **config_fields,
) -> pathlib.Path:
    """Writes a random-weight model directory with a tiny trained tokenizer and identity norm stats.

    The weights are stored in the config's dtype, as served (a bfloat16 pi0.5 is 6.7 GB), and made a few
    parameters at a time, so writing a full-size model needs about its stored size in memory plus one float32
    parameter."""
    out = pathlib.Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not empty; choose a new --out directory")
    config = get_model_config(config_name, **config_fields)
    out.mkdir(parents=True, exist_ok=True)
    params = checkpoint.init_params_on_host(config, seed, RANDOM_CHECKPOINT_NOISE, config.dtype)
    checkpoint.save_params(out / "params", checkpoint.unflatten(params))
    del params
    (out / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
    stats = {
        "state": identity_norm_stats(state_dim or config.action_dim),
        "actions": identity_norm_stats(action_dim or config.action_dim),
    }
    save_norm_stats(out / "assets" / asset_id / "norm_stats.json", stats)
    train_tokenizer(out / TOKENIZER_FILE, vocab_size=min(config.vocab_size, 512))
    return out
