"""openpi checkpoint I/O: `<ckpt>/params` (orbax PyTree, item `{"params": pure dict}`) into our network and back.

Checkpoints saved during openpi training wrap every leaf in a `value` key; both forms load. Any mismatch
between the checkpoint and the model's parameter tree fails with one `CheckpointError` line naming the first
missing key, extra key or wrong shape.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from policy.config import ModelConfig
from policy.errors import UserFacingError
from policy.pi05 import Pi05


class CheckpointError(UserFacingError):
    """A checkpoint that cannot be read or does not fit the model; the message is one line for the user."""


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"/".join(map(str, k)): v for k, v in traverse_util.flatten_dict(dict(params)).items()}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _strip_value_leaves(params: dict[str, Any]) -> dict[str, Any]:
    flat = traverse_util.flatten_dict(params)
    if flat and all(path[-1] == "value" for path in flat):
        flat = {path[:-1]: v for path, v in flat.items()}
    return traverse_util.unflatten_dict(flat)


def _params_dir(path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path).expanduser().resolve()
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    if (path / "params").is_dir():
        path = path / "params"
    if not (path / "_METADATA").exists() and not (path / "manifest.ocdbt").exists():
        raise CheckpointError(f"{path} is not an orbax params directory (no _METADATA); pass <ckpt> or <ckpt>/params")
    return path


class _NoStepMetadataWarning(logging.Filter):
    """A `params/` copied out of a training step (a bundle) has no `_CHECKPOINT_METADATA`: training keeps it
    at the step level. Orbax warns about its absence on every load, which reads like a problem but is not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "_CHECKPOINT_METADATA" not in record.getMessage()


@contextlib.contextmanager
def _quiet_missing_step_metadata():
    absl_logger, quiet = logging.getLogger("absl"), _NoStepMetadataWarning()
    absl_logger.addFilter(quiet)
    try:
        yield
    finally:
        absl_logger.removeFilter(quiet)


def load_params(path: str | pathlib.Path, dtype: str | None = None) -> dict[str, Any]:
    """Reads `<ckpt>/params` (or the params dir itself) into a nested dict of numpy arrays, cast to dtype if given."""
    import orbax.checkpoint as ocp

    params_dir = _params_dir(path)
    try:
        with _quiet_missing_step_metadata(), ocp.PyTreeCheckpointer() as ckptr:
            metadata = ckptr.metadata(params_dir)
            tree = getattr(metadata, "item_metadata", metadata)
            if "params" not in tree:
                raise CheckpointError(f"{params_dir} holds no 'params' item (found {sorted(tree.keys())})")
            item = {"params": tree["params"]}
            restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray, dtype=dtype), item)
            restored = ckptr.restore(params_dir, ocp.args.PyTreeRestore(item=item, restore_args=restore_args))
    except CheckpointError:
        raise
    except Exception as err:  # orbax/tensorstore raise many types for truncated or foreign directories
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {params_dir}: {first}") from err
    return _strip_value_leaves(restored["params"])


def save_params(path: str | pathlib.Path, params: Mapping[str, Any]) -> pathlib.Path:
    """Writes params in openpi's layout: an orbax PyTree with item `{"params": pure dict}` at `path`."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).expanduser().resolve()
    if path.exists():
        raise CheckpointError(f"{path} already exists; refusing to overwrite a checkpoint")
    arrays = jax.tree.map(np.asarray, dict(params))
    with ocp.PyTreeCheckpointer() as ckptr:
        ckptr.save(path, {"params": arrays})
    return path


def abstract_model(cfg: ModelConfig) -> Pi05:
    """The model with shape-only parameters: no memory, for key/shape checks and for loading into."""
    return nnx.eval_shape(lambda: Pi05(cfg, rngs=nnx.Rngs(0)))


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """`PaliGemma/llm/layers/attn/q_einsum/w` → shape, for every parameter of the model."""
    state = nnx.to_pure_dict(nnx.state(abstract_model(cfg), nnx.Param))
    return {k: tuple(v.shape) for k, v in flatten(state).items()}


def check_param_tree(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, Any]) -> None:
    """Raises CheckpointError naming the first missing key, extra key or wrong shape (keys in sorted order)."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(
            f"checkpoint is missing parameter {missing[0]} (shape {expected[missing[0]]})"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(
            f"checkpoint has unexpected parameter {extra[0]} (shape {tuple(np.shape(found[extra[0]]))})"
            + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
        )
    for key in sorted(expected):
        shape = tuple(np.shape(found[key]))
        if shape != tuple(expected[key]):
            raise CheckpointError(f"parameter {key} has shape {shape}, the model expects {tuple(expected[key])}")


def model_from_params(cfg: ModelConfig, params: Mapping[str, Any], dtype: str | None = None) -> Pi05:
    """Builds the model around the given parameters (checked against the config first)."""
    flat = flatten(params)
    check_param_tree(param_shapes(cfg), flat)
    model = abstract_model(cfg)
    state = nnx.state(model, nnx.Param)
    cast = (lambda x: jnp.asarray(x, dtype)) if dtype else jnp.asarray
    nnx.replace_by_pure_dict(state, unflatten({k: cast(v) for k, v in flat.items()}))
    nnx.update(model, state)
    return model


def load_model(cfg: ModelConfig, path: str | pathlib.Path, dtype: str | None = None) -> Pi05:
    """Loads an openpi (or our) checkpoint into the network described by cfg."""
    return model_from_params(cfg, load_params(path, dtype), dtype)


def init_params(cfg: ModelConfig, seed: int = 0, perturb_std: float = 0.0) -> dict[str, Any]:
    """Random parameters for cfg, as a nested dict of arrays.

    With openpi's init the adaRMS gates start at zero, so the action expert ignores the observation until
    trained; `perturb_std` > 0 adds N(0, std²) noise to every parameter so a random checkpoint's outputs depend
    on all of its inputs (smoke tests, serving without real weights). Uses the `rbg` PRNG, whose init compiles
    in half the time of threefry on CPU.
    """
    return _param_initializer(cfg, perturb_std)(jax.random.key(seed, impl="rbg"))


@functools.cache
def _param_initializer(cfg: ModelConfig, perturb_std: float):
    @jax.jit
    def make(key: jax.Array) -> dict[str, Any]:
        init_key, noise_key = jax.random.split(key)
        params = nnx.to_pure_dict(nnx.state(Pi05(cfg, rngs=nnx.Rngs(params=init_key)), nnx.Param))
        if not perturb_std:
            return params
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(noise_key, len(leaves))
        noisy = [x + perturb_std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
        return jax.tree.unflatten(treedef, noisy)

    return make


def model_params(model: Pi05) -> dict[str, Any]:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))
