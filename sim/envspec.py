"""`--env` selections: `builtin:TASK`, `builtin:all` or `libero:SUITE`, narrowed by `--tasks`.

Parsing imports neither MuJoCo nor LIBERO (`sim.tasks` is plain numpy), so the CLI rejects a bad selection
before it starts anything; LIBERO suites and task ids are checked by :mod:`sim.libero`, which needs the package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from sim.tasks import list_tasks

Kind = Literal["builtin", "libero"]
KINDS: tuple[str, ...] = ("builtin", "libero")


class EnvSpecError(ValueError):
    """A selection that names no known environment or task."""


@dataclasses.dataclass(frozen=True)
class EnvSelection:
    """`tasks` are built-in task names, or LIBERO task ids/names as given (empty = the whole suite)."""

    kind: Kind
    suite: str
    tasks: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"libero:{self.suite}" if self.kind == "libero" else f"builtin:{','.join(self.tasks)}"


def split_tasks(values: Sequence[str]) -> tuple[str, ...]:
    """`--tasks a b` and `--tasks a,b` mean the same."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def parse_env(spec: str, tasks: Sequence[str] = ()) -> EnvSelection:
    kind, sep, name = spec.partition(":")
    if not sep or kind not in KINDS or not name:
        raise EnvSpecError(f"--env {spec!r}: expected builtin:TASK, builtin:all or libero:SUITE")
    wanted = split_tasks(tasks)
    if kind == "libero":
        return EnvSelection("libero", name, wanted)
    if name != "all":
        if wanted and wanted != (name,):
            raise EnvSpecError(f"--tasks {','.join(wanted)} does not fit --env {spec}; use --env builtin:all")
        wanted = (name,)
    known = list_tasks()
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise EnvSpecError(f"unknown built-in task {unknown[0]!r}; expected one of {known} or 'all'")
    return EnvSelection("builtin", "", tuple(dict.fromkeys(wanted)) or tuple(known))
