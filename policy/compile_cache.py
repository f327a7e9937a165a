"""JAX's persistent compilation cache for the serving processes: a restart loads its executables from disk.

The engines compile every stage ahead of time (`policy.compiled`), a few executables per batch bucket, and on a
CPU that is most of a process's cold start. JAX can keep what it compiled in a directory, keyed by the program,
the compiler's version and flags and the device (`jax_compilation_cache_dir`), and a later process that
compiles the same program reads the executable back instead. `enable_compile_cache` switches it on for the
process that calls it, before that process compiles anything:

- where: the setting given (the CLI's `--compile-cache DIR|off`), else `$ROBOT_RUNTIME_COMPILE_CACHE`, else
  JAX's own `$JAX_COMPILATION_CACHE_DIR`, else `$XDG_CACHE_HOME/robot-runtime/xla` (`~/.cache/robot-runtime/xla`);
  `off` disables it;
- what: every compilation, however quick or small. JAX's default keeps only those that took over a second,
  which depends on the machine's load and leaves out the small engines' stages and the eager operations
  around them, all of which a cold start also pays for. `$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` and
  `$JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES`, when set, still win.

The directory is trusted: whoever can write to it can make the process run code of their choosing, so it is
created private to the user (mode 700) and should not be shared with users you do not trust. JAX never evicts
entries unless `$JAX_COMPILATION_CACHE_MAX_SIZE` (bytes) is set; deleting the directory is always safe.

Whether a compilation was read from the cache is known from JAX's monitoring events: `lookups()` counts the
cache's lookups and hits on the calling thread while it is open (`CompiledStages` records it per executable).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from policy.errors import UserFacingError

ENV_VAR = "ROBOT_RUNTIME_COMPILE_CACHE"
JAX_ENV_VAR = "JAX_COMPILATION_CACHE_DIR"
OFF = "off"
# Set in the environment, these keep the values JAX read from it instead of ours (cache everything).
_THRESHOLDS = {
    "jax_persistent_cache_min_compile_time_secs": ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 0.0),
    "jax_persistent_cache_min_entry_size_bytes": ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", -1),
}
_LOOKUP_EVENT = "/jax/compilation_cache/compile_requests_use_cache"
_HIT_EVENT = "/jax/compilation_cache/cache_hits"

log = logging.getLogger(__name__)


class CompileCacheError(UserFacingError):
    """The compilation cache directory that was asked for cannot be used."""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """`$XDG_CACHE_HOME/robot-runtime/xla`, `~/.cache/robot-runtime/xla` when XDG_CACHE_HOME is unset or empty."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "robot-runtime" / "xla"


def resolve_cache_dir(setting: str | None = None, environ: Mapping[str, str] | None = None) -> pathlib.Path | None:
    """The directory the cache goes to, or None when it is off; see the module's docstring for the order.

    An empty setting or variable counts as not given; `off` (any case) anywhere along the order turns it off.
    """
    environ = os.environ if environ is None else environ
    for candidate in (setting, environ.get(ENV_VAR), environ.get(JAX_ENV_VAR)):
        if candidate:
            return None if candidate.strip().lower() == OFF else pathlib.Path(candidate).expanduser().absolute()
    return default_cache_dir(environ)


def enable_compile_cache(setting: str | None = None, environ: Mapping[str, str] | None = None) -> pathlib.Path | None:
    """Points JAX's persistent compilation cache at the resolved directory (created, mode 700) or turns it off;
    returns the directory, None when off.

    A directory given by the setting or a variable that cannot be created raises `CompileCacheError`; the default
    one only logs a warning and leaves the cache off, so that a read-only home never stops a server from starting.
    Call it before the process compiles: JAX reads the directory on its first compilation (this also resets
    JAX's cache state, so a later call still takes effect for what compiles after it).
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    environ = os.environ if environ is None else environ
    path = resolve_cache_dir(setting, environ)
    if path is not None:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(f"no read and write access to {path}")
        except OSError as err:
            if setting or environ.get(ENV_VAR) or environ.get(JAX_ENV_VAR):
                raise CompileCacheError(
                    f"compilation cache {path} cannot be used ({err}); give another DIR or off"
                ) from err
            log.warning("compilation cache off: the default directory %s cannot be used (%s)", path, err)
            path = None
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        for option, (variable, value) in _THRESHOLDS.items():
            if variable not in environ:
                jax.config.update(option, value)
    compilation_cache.reset_cache()
    return path


def cache_in_use() -> bool:
    """Whether JAX's persistent compilation cache is on and has a directory (JAX asks it only then)."""
    import jax

    values = jax.config.values
    return bool(values["jax_enable_compilation_cache"] and values["jax_compilation_cache_dir"])


@dataclasses.dataclass
class Lookups:
    """What the persistent cache answered while `lookups()` was open: `requests` compilations that asked it,
    `hits` of them served from it; `active`: the cache was in use when the block began."""

    active: bool = True
    requests: int = 0
    hits: int = 0

    @property
    def hit(self) -> bool | None:
        """True: every compilation came from the cache; False: something was compiled; None: the cache was not
        asked (off, no directory, or nothing compiled)."""
        # JAX also counts a lookup when the cache is enabled but has no directory, so `active` decides.
        return None if not self.active or self.requests == 0 else self.hits == self.requests


_counting = threading.local()
_listening = False
_listening_lock = threading.Lock()


def _count(event: str, **_: Any) -> None:
    seen: Lookups | None = getattr(_counting, "lookups", None)
    if seen is None:
        return
    if event == _LOOKUP_EVENT:
        seen.requests += 1
    elif event == _HIT_EVENT:
        seen.hits += 1


@contextlib.contextmanager
def lookups() -> Iterator[Lookups]:
    """Counts the persistent cache's lookups and hits of the compilations this thread runs inside the block.

    JAX compiles on the thread that asks and reports each lookup there, so threads compiling at the same time
    are counted apart. Nested blocks each count their own compilations, and the outer one includes them.
    """
    global _listening
    with _listening_lock:
        if not _listening:
            import jax

            jax.monitoring.register_event_listener(_count)
            _listening = True
    outer: Lookups | None = getattr(_counting, "lookups", None)
    seen = _counting.lookups = Lookups(active=cache_in_use())
    try:
        yield seen
    finally:
        _counting.lookups = outer
        if outer is not None:
            outer.requests += seen.requests
            outer.hits += seen.hits
