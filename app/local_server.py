"""A `robot-runtime serve` child process for `rollout --checkpoint`, serving the sim's 7-D actions from 8-D states."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from protos.grpc_server import TOKEN_ENV
from runtime.launch import ServerStartError, serve_process
from sim.episode import ACTION_DIMS, STATE_DIMS

READY_TIMEOUT_S = 600.0

__all__ = ["ServerStartError", "local_server"]


@contextlib.contextmanager
def local_server(
    checkpoint: str | os.PathLike,
    log: str | os.PathLike,
    *,
    tokenizer: str | None = None,
    token: str | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    extra: Sequence[str] = (),
) -> Iterator[str]:
    """Yields the address of a ready runtime serving `checkpoint`; its output goes to `log`."""
    args = ["--action-dims", str(ACTION_DIMS), "--state-dims", str(STATE_DIMS)]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    env = {TOKEN_ENV: token} if token else {}
    with serve_process(checkpoint, log, *args, *extra, timeout_s=timeout_s, env=env) as server:
        yield server.address
