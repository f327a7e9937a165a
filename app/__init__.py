"""The application layer: the `robot-runtime` CLI (`app.cli`), the local server behind `rollout --checkpoint`
(`app.local_server`) and the evaluation tools (`python -m app.planner_eval`, `app.actor_eval`,
`app.binding_eval`, `app.actor_closed_loop`). It composes every other package; nothing imports it.

Importing the package loads nothing (the CLI's `--help` loads no jax); `main`, the entry point, imports
`app.cli` on first use (`__getattr__`, PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from app.cli import main

# Each submodule and the public names it defines; `__getattr__` imports it when one of them is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "app.cli": ("main",),
}
__all__ = ["main"]


# lazy_loader supplies PEP 562 `__getattr__` and `__dir__`: a name imports its submodule on first use.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={module.removeprefix(__name__ + "."): list(names) for module, names in _EXPORTS.items()}
)
