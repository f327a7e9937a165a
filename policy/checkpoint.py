"""openpi checkpoint I/O: `<ckpt>/params` (orbax PyTree, item `{"params": pure dict}`) into our network and back.

Checkpoints saved during openpi training wrap every leaf in a `value` key; both forms load. Any mismatch
between the checkpoint and the model's parameter tree fails with one `CheckpointError` line naming the first
missing key, extra key or wrong shape.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import math
import pathlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from policy.config import ModelConfig
from policy.errors import UserFacingError
from policy.pi05 import Pi05

Key = TypeVar("Key")


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


class _OpenCheckpoint:
    """An orbax params directory opened for reading: its parameters' metadata by path (`value` wrappers kept)
    and restoring any of them. Orbax and tensorstore errors become one-line `CheckpointError`s."""

    def __init__(self, ckptr: Any, params_dir: pathlib.Path) -> None:
        self._ckptr, self.params_dir = ckptr, params_dir
        with self.errors():
            metadata = ckptr.metadata(params_dir)
            tree = getattr(metadata, "item_metadata", metadata)
            if "params" not in tree:
                raise CheckpointError(f"{params_dir} holds no 'params' item (found {sorted(tree.keys())})")
            self.metadata: dict[tuple[str, ...], Any] = traverse_util.flatten_dict(dict(tree["params"]))

    @contextlib.contextmanager
    def errors(self):
        try:
            yield
        except CheckpointError:
            raise
        except Exception as err:  # orbax/tensorstore raise many types for truncated or foreign directories
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"cannot read checkpoint {self.params_dir}: {first}") from err

    def names(self) -> dict[tuple[str, ...], str]:
        """Each parameter's path → its flat name (`a/b/w`), without openpi's training-time `value` wrappers."""
        wrapped = bool(self.metadata) and all(path[-1] == "value" for path in self.metadata)
        return {path: "/".join(path[:-1] if wrapped else path) for path in self.metadata}

    def abstract(self, path: tuple[str, ...]) -> jax.ShapeDtypeStruct:
        """The stored parameter's shape and dtype."""
        meta = self.metadata[path]
        return jax.ShapeDtypeStruct(tuple(getattr(meta, "shape", ())), meta.dtype)

    def nbytes(self, path: tuple[str, ...], dtype: str | None) -> int:
        """The parameter's size once restored in dtype (its stored dtype when None)."""
        stored = self.abstract(path)
        return math.prod(stored.shape) * np.dtype(dtype or stored.dtype).itemsize

    def restore(self, paths: Collection[tuple[str, ...]], dtype: str | None) -> dict[tuple[str, ...], np.ndarray]:
        """The parameters at `paths` as host arrays, cast to dtype if given (tensorstore casts as it reads)."""
        import orbax.checkpoint as ocp

        item = {"params": traverse_util.unflatten_dict({path: self.metadata[path] for path in paths})}
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray, dtype=dtype), item)
        partial = len(paths) < len(self.metadata)
        with self.errors():
            restored = self._ckptr.restore(
                self.params_dir,
                ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=partial),
            )
        return traverse_util.flatten_dict(restored["params"])


@contextlib.contextmanager
def _open_checkpoint(path: str | pathlib.Path) -> Iterator[_OpenCheckpoint]:
    import orbax.checkpoint as ocp

    params_dir = _params_dir(path)
    with _quiet_missing_step_metadata(), ocp.PyTreeCheckpointer() as ckptr:
        yield _OpenCheckpoint(ckptr, params_dir)


def load_params(path: str | pathlib.Path, dtype: str | None = None) -> dict[str, Any]:
    """Reads `<ckpt>/params` (or the params dir itself) into a nested dict of numpy arrays, cast to dtype if given."""
    with _open_checkpoint(path) as checkpoint:
        restored = checkpoint.restore(list(checkpoint.metadata), dtype)
    _release_free_heap()
    return _strip_value_leaves(traverse_util.unflatten_dict(restored))


# The largest piece of an array that save_params stores as one chunk. Tensorstore compresses (or decodes) a whole
# chunk in a buffer of its own beside the array, so with one chunk per array (orbax's default) reading holds the
# largest parameter twice (2.4 GB for pi0.5's MLP) and a save of pi0.5 in bfloat16 went past 13.5 GB; in chunks
# it peaks at 10 GB.
CHUNK_BYTES = 64 << 20


def save_params(path: str | pathlib.Path, params: Mapping[str, Any]) -> pathlib.Path:
    """Writes params in openpi's layout: an orbax PyTree with item `{"params": pure dict}` at `path`."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).expanduser().resolve()
    if path.exists():
        raise CheckpointError(f"{path} already exists; refusing to overwrite a checkpoint")
    arrays = jax.tree.map(np.asarray, dict(params))
    # orbax's default numpy handler deep-copies every array first (so that an asynchronous save may outlive a
    # caller who changes them): a transient second copy of the weights. This save is synchronous.
    registry = ocp.type_handlers.create_type_handler_registry(
        (np.ndarray, ocp.type_handlers.NumpyHandler(deepcopy_host_arrays=False)),
        (jax.Array, ocp.type_handlers.get_type_handler(jax.Array)),  # orbax warns when there is none
    )
    item = {"params": arrays}
    save_args = jax.tree.map(lambda _: ocp.SaveArgs(chunk_byte_size=CHUNK_BYTES), item)
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(type_handler_registry=registry)) as ckptr:
        ckptr.save(path, args=ocp.args.PyTreeSave(item, save_args=save_args))
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
    """Builds the model around the given parameters (checked against the config first); the caller's arrays
    are copied to the device (or cast), never changed."""
    flat = flatten(params)
    check_param_tree(param_shapes(cfg), flat)
    return _filled_model(cfg, {key: _on_device(value, dtype, owned=False) for key, value in flat.items()})


# load_model restores the parameters in groups of at most this many bytes (a larger parameter alone), largest
# first, and moves each group into the model before reading the next.
LOAD_GROUP_BYTES = 256 << 20


def load_model(
    cfg: ModelConfig, path: str | pathlib.Path, dtype: str | None = None, group_bytes: int = LOAD_GROUP_BYTES
) -> Pi05:
    """Loads an openpi (or our) checkpoint into the network described by cfg, holding the weights once.

    The checkpoint's keys and shapes are checked against the model before anything is read. The model is built
    abstractly (no random initialisation), and the parameters are restored a group at a time (`group_bytes`),
    each host array moved to the device and dropped before the next group is read: at most one group is held
    twice, not the whole model (on a CPU the device array may even share the host array's memory).
    """
    with _open_checkpoint(path) as checkpoint:
        names = checkpoint.names()
        found = {names[p]: checkpoint.abstract(p) for p in checkpoint.metadata}
        check_param_tree(param_shapes(cfg), found)
        sizes = {p: checkpoint.nbytes(p, dtype) for p in checkpoint.metadata}
        arrays: dict[str, jax.Array] = {}
        for group in _largest_first_groups(sizes, group_bytes):
            restored = checkpoint.restore(group, dtype)
            for p in group:
                arrays[names[p]] = _on_device(restored.pop(p), dtype, owned=True)
            _release_free_heap()
    return _filled_model(cfg, arrays)


def _release_free_heap() -> None:
    """Returns the C heap's free pages to the system (glibc's malloc_trim; elsewhere nothing). Reading a checkpoint
    frees many chunk-sized buffers on tensorstore's threads, which glibc would otherwise keep in its arenas: about
    1 GB of pi0.5's load, resident for the life of the process and counted in its peak."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _largest_first_groups(sizes: Mapping[Key, int], budget: int) -> list[list[Key]]:
    """The keys in groups of at most `budget` total size (a larger one alone), largest first."""
    groups: list[list[Key]] = []
    held = 0
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        if groups and held + sizes[key] <= budget:
            groups[-1].append(key)
            held += sizes[key]
        else:
            groups.append([key])
            held = sizes[key]
    return groups


def _filled_model(cfg: ModelConfig, arrays: Mapping[str, jax.Array]) -> Pi05:
    model = abstract_model(cfg)
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, unflatten(arrays))
    nnx.update(model, state)
    return model


def _on_device(x: Any, dtype: str | None, owned: bool) -> jax.Array:
    """x as a device array in dtype. A host array is copied before this returns: `device_put` is asynchronous
    and keeps its source alive until the copy is done, and the copies of all parameters put at once would run
    only when first used, with every host array still held (twice the weights). `owned`: nothing else holds x,
    so the device array may share its memory."""
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
    if dtype is not None and x.dtype != jnp.dtype(dtype):
        x, owned = x.astype(dtype), True
    if isinstance(x, jax.Array):
        return x
    return jax.device_put(x, may_alias=owned).block_until_ready()


def init_params(cfg: ModelConfig, seed: int = 0, perturb_std: float = 0.0) -> dict[str, Any]:
    """Random parameters for cfg, as a nested dict of arrays.

    With openpi's init the adaRMS gates start at zero, so the action expert ignores the observation until
    trained; `perturb_std` > 0 adds N(0, std²) noise to every parameter so a random checkpoint's outputs depend
    on all of its inputs (smoke tests, serving without real weights). Uses the `rbg` PRNG, whose init compiles
    in half the time of threefry on CPU.
    """
    return _param_initializer(cfg, perturb_std)(jax.random.key(seed, impl="rbg"))


def _random_params(cfg: ModelConfig, perturb_std: float, key: jax.Array) -> dict[str, Any]:
    init_key, noise_key = jax.random.split(key)
    params = nnx.to_pure_dict(nnx.state(Pi05(cfg, rngs=nnx.Rngs(params=init_key)), nnx.Param))
    if not perturb_std:
        return params
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(noise_key, len(leaves))
    noisy = [x + perturb_std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


@functools.cache
def _param_initializer(cfg: ModelConfig, perturb_std: float):
    return jax.jit(functools.partial(_random_params, cfg, perturb_std))


# Parameters initialised together by `init_params_on_host`: one executable per group of at most this many
# bytes (in the initialiser's float32), or per larger parameter alone.
INIT_GROUP_BYTES = 1 << 30


def init_params_on_host(
    cfg: ModelConfig,
    seed: int = 0,
    perturb_std: float = 0.0,
    dtype: str | None = None,
    group_bytes: int = INIT_GROUP_BYTES,
) -> dict[str, np.ndarray]:
    """`init_params(cfg, seed, perturb_std)` cast to dtype, as host arrays keyed by flat name, made a group of
    parameters at a time with bounded memory.

    Each group is its own executable: the whole initialiser traced, every other parameter dropped by the
    compiler. Largest first, so memory peaks at the arrays already made plus one group's (or one parameter's)
    float32 initialisation, never at the whole model in float32 (13 GB for pi0.5, twice that while the
    perturbation is added). A small model is one group: `init_params` itself.
    """
    key = jax.random.key(seed, impl="rbg")
    abstract, _ = jax.tree_util.tree_flatten_with_path(
        jax.eval_shape(functools.partial(_random_params, cfg, perturb_std), key)
    )
    names = ["/".join(str(entry.key) for entry in path) for path, _ in abstract]
    sizes = {index: leaf.size * leaf.dtype.itemsize for index, (_, leaf) in enumerate(abstract)}
    groups = _largest_first_groups(sizes, group_bytes)
    if len(groups) == 1:  # the executable init_params compiles serves
        whole = flatten(init_params(cfg, seed, perturb_std))
        return {name: np.asarray(whole[name] if dtype is None else whole[name].astype(dtype)) for name in names}
    make = _group_initializer(cfg, perturb_std, dtype)
    made: dict[str, np.ndarray] = {}
    for group in groups:
        for index, array in zip(group, make(key, tuple(group)), strict=True):
            made[names[index]] = np.asarray(array)
    return {name: made[name] for name in names}


@functools.cache
def _group_initializer(cfg: ModelConfig, perturb_std: float, dtype: str | None):
    """Compiled once per group of parameter indices (static), for any key."""
    target = jnp.dtype(dtype) if dtype else None

    @functools.partial(jax.jit, static_argnums=1)
    def make(key: jax.Array, indices: tuple[int, ...]) -> list[jax.Array]:
        leaves = jax.tree.leaves(_random_params(cfg, perturb_std, key))
        return [leaves[i] if target is None else leaves[i].astype(target) for i in indices]

    return make


def model_params(model: Pi05) -> dict[str, Any]:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))
