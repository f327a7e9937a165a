"""A `robot-runtime serve` child process for `rollout --checkpoint`: started on a free port, stopped at the end.

The runtime writes its port to a ready file once the model is loaded and compiled, which is the only signal
that it accepts sessions; everything it logs goes to a file so the rollout's own output stays readable.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from sim.episode import ACTION_DIMS, STATE_DIMS

READY_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 30.0


class ServerStartError(RuntimeError):
    """The runtime exited or did not become ready; the message names its log."""


def _last_line(log: pathlib.Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty log)"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_command(checkpoint: pathlib.Path, ready: pathlib.Path, *, tokenizer: str | None = None,
                  token: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The sim steps 7-D actions from an 8-D state, whatever dims the checkpoint's norm stats carry."""
    cmd = [sys.executable, "-m", "runtime.cli", "serve", "--checkpoint", str(checkpoint), "--port", "0",
           "--ready-file", str(ready), "--action-dims", str(ACTION_DIMS), "--state-dims", str(STATE_DIMS)]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    if token:
        cmd += ["--token", token]
    return cmd + list(extra)


@contextlib.contextmanager
def local_server(checkpoint: str | os.PathLike, log: str | os.PathLike, *, tokenizer: str | None = None,
                 token: str | None = None, timeout_s: float = READY_TIMEOUT_S,
                 extra: Sequence[str] = ()) -> Iterator[str]:
    """Yields the address of a ready runtime serving `checkpoint`; its output goes to `log`."""
    log = pathlib.Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rollout-serve-") as tmp:
        ready = pathlib.Path(tmp) / "ready"
        cmd = serve_command(pathlib.Path(checkpoint), ready, tokenizer=tokenizer, token=token, extra=extra)
        with open(log, "w") as sink:
            process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not (ready.exists() and ready.read_text().endswith("\n")):  # the port, once fully written
                if process.poll() is not None:
                    raise ServerStartError(
                        f"robot-runtime serve exited with {process.returncode} before it was ready "
                        f"({_last_line(log)}); log: {log}"
                    )
                if time.monotonic() > deadline:
                    raise ServerStartError(f"robot-runtime serve not ready after {timeout_s:g} s; log: {log}")
                time.sleep(0.2)
            yield f"127.0.0.1:{int(ready.read_text())}"
        finally:
            _stop(process)
