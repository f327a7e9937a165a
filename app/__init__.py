"""The application layer: the `robot-runtime` CLI (`app.cli`), the local server behind `rollout --checkpoint`
(`app.local_server`) and the evaluation tools (`python -m app.planner_eval`, `python -m app.actor_eval`). It
composes every other package; nothing imports it.

Importing the package loads nothing (the CLI's `--help` loads no jax); `main`, the entry point, imports
`app.cli` on first use (`__getattr__`, PEP 562)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.cli import main

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "app.cli": ("main",),
}
__all__ = ["main"]


def __getattr__(name: str) -> Any:
    """Imports the submodule that defines a public name on its first use (PEP 562)."""
    for module, names in _EXPORTS.items():
        if name in names:
            value = getattr(importlib.import_module(module), name)
            globals()[name] = value  # later lookups find it without calling this
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
