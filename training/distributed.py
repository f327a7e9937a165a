"""Training over several processes (hosts) on JAX's own multi-process runtime.

    robot-runtime train CONFIG --exp-name RUN --coordinator HOST0:12345 --num-processes 2 --process-id 0   # host 0
    robot-runtime train CONFIG --exp-name RUN --coordinator HOST0:12345 --num-processes 2 --process-id 1   # host 1

`jax.distributed.initialize` joins the processes; `jax.devices()` is then every process's devices, so the
data-parallel + FSDP mesh of `training.sharding` spans them all. Each process reads only its slice of every
global batch (`local_rows`), and the slices become one global array (`from_local`). Only process 0 writes
what is not a checkpoint array (run directory, tokenizers, metrics, figures); every process takes part in
orbax's save and restore, and a checkpoint restores on any process count. CPU processes reduce over gloo.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to the group; call before anything touches a JAX device."""
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def is_primary() -> bool:
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (a no-op in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def local_rows(batch_size: int) -> slice:
    """This process's share of a global batch's leading axis."""
    count = jax.process_count()
    if batch_size % count:
        raise ValueError(f"batch size {batch_size} must be a multiple of the {count} processes")
    share = batch_size // count
    return slice(jax.process_index() * share, (jax.process_index() + 1) * share)


def from_local(tree, sharding: jax.sharding.Sharding):
    """One global array per leaf from each process's slice of the leading axis."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def to_host(tree):
    """Whole numpy values of (possibly sharded, multi-process) arrays, on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)
