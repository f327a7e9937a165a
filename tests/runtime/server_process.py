"""Starting and stopping a real `robot-runtime serve` process for tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time


class ServerProcess:
    def __init__(self, process: subprocess.Popen, port: int, log: pathlib.Path):
        self.process = process
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_server(checkpoint: pathlib.Path, workdir: pathlib.Path, *extra: str, timeout_s: float = 240.0):
    """Starts `robot-runtime serve --port 0` and yields once it reports ready; stops it with SIGTERM."""
    ready = workdir / "ready"
    log = workdir / "serve.log"
    cmd = [sys.executable, "-m", "runtime.cli", "serve", "--checkpoint", str(checkpoint), "--port", "0",
           "--ready-file", str(ready), *extra]
    with open(log, "w") as sink:
        process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.exists() or not ready.read_text().strip():
            if process.poll() is not None:
                raise RuntimeError(f"serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"serve not ready after {timeout_s}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield ServerProcess(process, int(ready.read_text()), log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
