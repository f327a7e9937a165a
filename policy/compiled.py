"""How the engines compile: each stage once per (settings, argument shapes), ahead of time, timed and recorded.

The planner and the actor each run their network as a few stages (a prefix pass, then a decode or a denoise
loop), one executable per batch bucket. `CompiledStages` holds one engine's: a stage is a function of the model
and arrays; the model is split once into graph + state and the state goes in as an argument, so the weights are
not baked into executables as constants and networks of one config can share an executable. Compiling ahead of
time (`jit(...).lower(...).compile()`) means an executable never recompiles silently and its compile time is
measured apart from any call's; each compilation is recorded as a `CompileEvent`. With JAX's persistent
compilation cache on (`policy.compile_cache`, which the serving processes enable), a stage that an earlier
process compiled is read from disk instead, and its event says so (`cache_hit`).

XLA's CPU backend computes in float32 only: it converts bfloat16 weights to float32 where they are used, and
its loop-invariant code motion then hoists the conversion of every scanned layer stack (and of the embedding
table) out of the layer and step loops, so that an executable holds a float32 copy of all the weights it
reads, twice their bfloat16 bytes, while it runs. `low_memory_options` turns that pass off for networks with
16-bit weights on the CPU: each layer is converted as it is used, and memory stays at one copy of the weights.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import typing
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax
from flax import nnx

from policy import compile_cache

Stage = Callable[..., Any]  # (model, *arrays, **settings) → arrays


@dataclasses.dataclass(frozen=True)
class CompileEvent:
    """One compilation of a stage for a batch bucket (`guided`: the actor's RTC denoiser).

    compile_ms: lowering + XLA compilation, or lowering + reading the executable back from the persistent cache.
    cache_hit: True when the persistent compilation cache supplied the executable, False when XLA compiled it,
    None when the cache is off or has no directory. Both are left out of equality, so that tests can name the
    events they expect.
    """

    stage: str
    batch: int
    guided: bool = False
    compile_ms: float = dataclasses.field(default=0.0, compare=False)
    cache_hit: bool | None = dataclasses.field(default=None, compare=False)


class ExecutableTable:
    """Compiled executables by stage, settings, network graph and argument shapes; one may serve several engines."""

    def __init__(self) -> None:
        self._executables: dict[Hashable, Callable] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._executables)

    def get_or_compile(self, key: Hashable, compile_fn: Callable[[], Callable]) -> Callable:
        """The executable under `key`, compiled by `compile_fn` first if absent (one compilation at a time)."""
        with self._lock:
            if key not in self._executables:
                self._executables[key] = compile_fn()
            return self._executables[key]


class CompiledStages:
    """One engine's compiled stages over one network, and the compilations it paid for (`events`).

    A stage another engine already compiled into the same `table` is reused and not counted again.
    """

    def __init__(self, model: nnx.Module, table: ExecutableTable | None = None) -> None:
        self._graphdef, self.state = nnx.split(model)
        self._network = (self._graphdef, _signature(self.state))
        self._table = ExecutableTable() if table is None else table
        self._own: dict[Hashable, Callable] = {}  # this engine's lookups, keyed without hashing the graph again
        self._compiler_options = low_memory_options(self.state)
        self.events: list[CompileEvent] = []

    def executable(
        self, event: CompileEvent, stage: Stage, args: tuple, settings: Mapping[str, Hashable] | None = None
    ) -> Callable:
        """The executable of `stage(model, *args, **settings)` for `args`' shapes, called as
        `executable(state, *args)`; the first request for these shapes compiles it, recorded as `event`."""
        settings = settings or {}
        own_key = (stage, tuple(sorted(settings.items())), _signature(args))
        found = self._own.get(own_key)
        if found is not None:
            return found

        def compile_stage() -> Callable:
            start = time.perf_counter()
            run = functools.partial(_merged, self._graphdef, functools.partial(stage, **settings))
            with compile_cache.lookups() as cache:
                compiled = jax.jit(run).lower(self.state, *args).compile(self._compiler_options)
            compile_ms = (time.perf_counter() - start) * 1e3
            self.events.append(dataclasses.replace(event, compile_ms=compile_ms, cache_hit=cache.hit))
            return compiled

        found = self._table.get_or_compile((*own_key, self._network), compile_stage)
        self._own[own_key] = found
        return found

    @property
    def scratch_bytes(self) -> int:
        """The largest scratch memory one of this engine's executables needs while it runs (XLA's analysis)."""
        analyses = [typing.cast(jax.stages.Compiled, executable).memory_analysis() for executable in self._own.values()]
        return max((analysis.temp_size_in_bytes for analysis in analyses if analysis is not None), default=0)

    @property
    def compile_ms(self) -> float:
        """Wall time this engine spent compiling."""
        return sum(event.compile_ms for event in self.events)


def describe_compiles(events: Sequence[CompileEvent]) -> str:
    """One line for a log: how many executables, how long they took, and how many the persistent cache held."""
    seconds = sum(event.compile_ms for event in events) / 1e3
    line = f"{len(events)} executables in {seconds:.1f} s"
    if any(event.cache_hit is not None for event in events):
        line += f", {sum(bool(event.cache_hit) for event in events)} from the compilation cache"
    return line


HOISTING_PASS = "while-loop-invariant-code-motion"


def low_memory_options(state: Any) -> dict[str, str | bool]:
    """XLA options that keep a CPU executable from holding a float32 copy of 16-bit weights (see above)."""
    if jax.default_backend() != "cpu":
        return {}
    half = any(
        leaf.dtype.itemsize == 2 and jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating)
        for leaf in jax.tree.leaves(state)
    )
    return {"xla_disable_hlo_passes": HOISTING_PASS} if half else {}


def _merged(graphdef: nnx.GraphDef, stage: Stage, state: nnx.State, *args: Any) -> Any:
    return stage(nnx.merge(graphdef, state), *args)


def _signature(args: Any) -> tuple:
    """The tree structure, shapes and dtypes of `args`: what an executable is compiled for."""
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((x.shape, x.dtype, getattr(x, "weak_type", False)) for x in leaves)
