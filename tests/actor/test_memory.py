"""Memory after loading: the serving actor holds one copy of the weights, on the device, in the serving dtype.

Loading reads numpy arrays from orbax and casts them into the model; neither the host arrays nor a copy in the
checkpoint's dtype may stay alive next to the model's own (they would double the resident memory of a
full-size checkpoint: 2 × 6.6 GB in bfloat16)."""

from __future__ import annotations

import gc
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actor.engine import ChunkEngine, EngineConfig
from app.cli import main as cli_main
from policy.checkpoint import param_shapes
from policy.model_dir import ModelDir

BIG = 4096  # bytes: arrays below this are bookkeeping, not weights


def _device_bytes(skip: set[int]) -> int:
    return sum(a.nbytes for a in jax.live_arrays() if id(a) not in skip)


def _host_bytes(skip: set[int]) -> int:
    return sum(
        o.nbytes for o in gc.get_objects() if isinstance(o, np.ndarray) and o.nbytes >= BIG and id(o) not in skip
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_loaded_engine_keeps_one_copy_of_the_parameters(tmp_path, dtype):
    out = tmp_path / "tiny"
    assert cli_main(["init-checkpoint", "--config", "tiny", "--out", str(out), "--seed", "1"]) == 0
    model_dir = ModelDir.open(out, dtype=dtype)
    gc.collect()
    device_before = {id(a) for a in jax.live_arrays()}
    host_before = {id(o) for o in gc.get_objects() if isinstance(o, np.ndarray)}

    engine = ChunkEngine.from_model_dir(model_dir, EngineConfig(action_dims=7))
    gc.collect()
    param_bytes = jnp.dtype(dtype).itemsize * sum(math.prod(s) for s in param_shapes(model_dir.config).values())

    device = _device_bytes(device_before)
    host = _host_bytes(host_before)
    assert 0.95 * param_bytes <= device <= 1.05 * param_bytes, (device, param_bytes)  # one copy, in the dtype
    assert host <= 0.05 * param_bytes, (host, param_bytes)  # nothing left on the host from loading
    del engine
