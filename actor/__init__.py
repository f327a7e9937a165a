"""The fast loop, an engine on `policy`: images + subtask + state → a flow-matched action chunk.
`sampler.FlowSampler` (the prefix cached once, Euler steps on the action expert, compiled per batch bucket),
`rtc` (real-time chunking guidance), `engine.ChunkEngine` (prompting, batching, unnormalize/crop/clip;
`ChunkRequest` → `ChunkResult`) and `postprocess`. It stays off the wire: the runtime serves it.

Importing the package loads none of its submodules: each public name imports its own on first use
(`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from actor.engine import (
        ChunkEngine,
        ChunkRequest,
        ChunkResult,
        ChunkTimings,
        EngineConfig,
        InvalidRequest,
        RtcPrefix,
    )
    from actor.postprocess import ActionLimits
    from actor.rtc import Guidance, NormalizedRtcPrefix
    from actor.sampler import CompileEvent, FlowSampler, SampledChunks, SampleTimings

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "actor.engine": (
        "ChunkEngine",
        "ChunkRequest",
        "ChunkResult",
        "ChunkTimings",
        "EngineConfig",
        "InvalidRequest",
        "RtcPrefix",
    ),
    "actor.postprocess": ("ActionLimits",),
    "actor.rtc": ("Guidance", "NormalizedRtcPrefix"),
    "actor.sampler": ("CompileEvent", "FlowSampler", "SampleTimings", "SampledChunks"),
}
__all__ = [
    "ActionLimits",
    "ChunkEngine",
    "ChunkRequest",
    "ChunkResult",
    "ChunkTimings",
    "CompileEvent",
    "EngineConfig",
    "FlowSampler",
    "Guidance",
    "InvalidRequest",
    "NormalizedRtcPrefix",
    "RtcPrefix",
    "SampleTimings",
    "SampledChunks",
]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
