"""Data parallelism and FSDP over one device mesh with axes ("batch", "fsdp"), as openpi lays it out.

The batch is split over all devices. Each parameter (and its optimizer state) at least `min_size_mb` large is
split along its largest axis that the fsdp axis divides, so a model too big for one device's memory fits in
the mesh; smaller ones are replicated. XLA inserts the gathers and reductions.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"
FSDP_AXIS = "fsdp"
DATA_AXES = (BATCH_AXIS, FSDP_AXIS)
MIN_SHARD_MB = 4.0


def make_mesh(fsdp_devices: int = 1) -> Mesh:
    devices = jax.devices()
    if fsdp_devices < 1 or len(devices) % fsdp_devices:
        raise ValueError(f"fsdp_devices={fsdp_devices} must divide the {len(devices)} devices")
    return Mesh(np.asarray(devices).reshape(len(devices) // fsdp_devices, fsdp_devices), DATA_AXES)


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def fsdp_sharding(tree, mesh: Mesh, min_size_mb: float = MIN_SHARD_MB):
    """A tree of NamedShardings for `tree`'s arrays (or ShapeDtypeStructs)."""
    fsdp = mesh.shape[FSDP_AXIS]

    def shard(x):
        shape = tuple(np.shape(x))
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
        if fsdp == 1 or not shape or nbytes < min_size_mb * 2**20:
            return replicated(mesh)
        for axis in np.argsort(shape)[::-1]:
            if shape[axis] % fsdp == 0:
                spec = [None] * len(shape)
                spec[axis] = FSDP_AXIS
                return NamedSharding(mesh, PartitionSpec(*spec))
        return replicated(mesh)

    return jax.tree.map(shard, tree)
