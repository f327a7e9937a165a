"""Starting a `robot-runtime serve` child process and waiting until it accepts sessions.

The runtime writes its port to a ready file (`--ready-file`) once the model is loaded and compiled: the only
reliable signal that it serves. Its output goes to a log file. Stopping sends SIGTERM (a clean shutdown of
runtime and planner), then SIGKILL to the whole process group if it hangs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping

STOP_TIMEOUT_S = 30.0


class ServerStartError(RuntimeError):
    """The runtime exited or did not become ready; the message names its log."""


@dataclasses.dataclass(frozen=True)
class ServerProcess:
    process: subprocess.Popen
    port: int
    log: pathlib.Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


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


@contextlib.contextmanager
def serve_process(
    checkpoint: str | os.PathLike,
    log: str | os.PathLike,
    *extra: str,
    timeout_s: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """`robot-runtime serve --checkpoint CHECKPOINT --port 0 EXTRA...`, yielded once ready, stopped on exit.
    env: variables added to the child's environment (a token, which a command line would show in `ps`)."""
    log = pathlib.Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="robot-runtime-serve-") as tmp:
        ready = pathlib.Path(tmp) / "ready"
        cmd = [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--checkpoint",
            str(checkpoint),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            *extra,
        ]
        with open(log, "w") as sink:
            process = subprocess.Popen(
                cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
            )
        try:
            deadline = time.monotonic() + timeout_s
            while not (ready.exists() and ready.read_text().endswith("\n")):
                if process.poll() is not None:
                    raise ServerStartError(
                        f"robot-runtime serve exited with {process.returncode} before it was ready "
                        f"({_last_line(log)}); log: {log}"
                    )
                if time.monotonic() > deadline:
                    raise ServerStartError(f"robot-runtime serve not ready after {timeout_s:g} s; log: {log}")
                time.sleep(0.2)
            yield ServerProcess(process, int(ready.read_text()), log)
        finally:
            _stop(process)
