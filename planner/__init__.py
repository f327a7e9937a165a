"""The slow loop, an engine on `policy`: cameras + task (+ state) → the next subtask in words.
`decoder.SubtaskDecoder` (JIT, KV-cached, greedy or top-p under a vocabulary mask; `DecodeRequest` →
`PlanResult`), `reasoning.ReasoningPlanner` (think or act, for reasoning checkpoints), `service.PlannerService`
(the `Planner` gRPC service) and `query` (`robot-runtime plan`).

Importing the package loads none of its submodules: each public name imports its own on first use
(`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from planner.decoder import DEFAULT_MAX_NEW_TOKENS, DecodeRequest, DecodeRequestError, PlanResult, SubtaskDecoder
    from planner.query import Query, QueryError, ask_server, run_query, run_reasoning_query
    from planner.reasoning import DEFAULT_MAX_REASONING_TOKENS, ReasoningPlanner, ReasoningRequest, ReasoningSessions
    from planner.service import PlannerService

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "planner.decoder": (
        "DEFAULT_MAX_NEW_TOKENS",
        "DecodeRequest",
        "DecodeRequestError",
        "PlanResult",
        "SubtaskDecoder",
    ),
    "planner.query": ("Query", "QueryError", "ask_server", "run_query", "run_reasoning_query"),
    "planner.reasoning": ("DEFAULT_MAX_REASONING_TOKENS", "ReasoningPlanner", "ReasoningRequest", "ReasoningSessions"),
    "planner.service": ("PlannerService",),
}
__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MAX_REASONING_TOKENS",
    "DecodeRequest",
    "DecodeRequestError",
    "PlanResult",
    "PlannerService",
    "Query",
    "QueryError",
    "ReasoningPlanner",
    "ReasoningRequest",
    "ReasoningSessions",
    "SubtaskDecoder",
    "ask_server",
    "run_query",
    "run_reasoning_query",
]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
