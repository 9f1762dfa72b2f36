"""A throwaway PostgreSQL server for tests: Debian's binaries, a temp dir, a free loopback port.

Started as the ``postgres`` system user when the tests run as root (PostgreSQL refuses to run
as root), with trust authentication, its unix socket in its own folder, and durability off
(a test database need not survive a crash). Stopped through its process group.

Example:
    >>> server = PostgresServer.start()  # doctest: +SKIP
    >>> url = server.create_database("tuner_test")  # doctest: +SKIP
    >>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SYSTEM_USER = "postgres"


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and postgres, if any."""
    found = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (path.parent / "postgres").exists()
    ]
    return max(found, key=lambda bin_dir: _version(bin_dir.parent.name), default=None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """A running server; :meth:`start` makes one, :meth:`stop` ends it and removes its files."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes]):
        self.root = root
        self.port = port
        self.process = process

    @classmethod
    def start(cls, timeout: float = 60.0) -> PostgresServer:
        """Initialises a cluster in a temp dir and starts its server.

        Raises:
            RuntimeError: if the binaries are missing, or the server does not come up.
        """
        bin_dir = server_binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="tuner-test-postgres-"))
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        data, log = root / "data", root / "server.log"
        try:
            subprocess.run(
                [
                    *(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"),
                    *("--no-sync", "-E", "UTF8", "--locale=C"),
                ],
                check=True,
                capture_output=True,
                **as_user,
            )
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        port = _free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)),
                    *("-h", "127.0.0.1", "-k", str(root)),
                    *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                    *("-c", "full_page_writes=off", "-c", "max_connections=200"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user,
            )
        server = cls(root, port, process)
        try:
            server._wait_until_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg2) of ``database`` on this server."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Creates ``name`` and returns its URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), then SIGKILL if it hangs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_until_ready(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self._log()}")
            try:
                psycopg2.connect(
                    host="127.0.0.1", port=self.port, user="postgres", connect_timeout=2
                ).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not come up ({exc}): {self._log()}") from exc
            time.sleep(0.1)

    def _log(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"
