"""Ray clusters the tests start themselves with `ray start`, on loopback, stopped by process group.

Ray 2.60 turns token auth on at a head node when ``~/.ray/auth_token`` exists, and a joining
``ray start --address`` does not send it: these clusters run with auth disabled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from servers import free_port

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class Node:
    """One `ray start --block` process and everything it starts, in its own process group."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--block",
                "--num-cpus=1",
                "--node-ip-address=127.0.0.1",
                "--disable-usage-stats",
                *args,
            ],
            env={**os.environ, **RAY_ENV},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while "block forever" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{self.log.read_text()}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 20.0) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def two_node_cluster() -> Iterator[tuple[str, Node, Node]]:
    """A head and a worker node on loopback, one CPU each: (address, head, worker)."""
    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths are short
    port = free_port()
    head = Node(
        ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false"],
        temp / "head.log",
    )
    worker: Node | None = None
    try:
        head.wait_ready()
        worker = Node([f"--address=127.0.0.1:{port}"], temp / "worker.log")
        worker.wait_ready()
        yield f"127.0.0.1:{port}", head, worker
    finally:
        if worker is not None:
            worker.stop()
        head.stop()
