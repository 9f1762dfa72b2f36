"""Locks that know their owner: a killed orchestrator never blocks or corrupts the next one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tuner.locks import OwnedFileLock, StudyBusyError, orchestrator_lock

_HOLD = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    from tuner.locks import OwnedFileLock, orchestrator_lock
    kind, path = sys.argv[1], Path(sys.argv[2])
    if kind == "journal":
        OwnedFileLock(path, path.with_suffix(".log")).acquire()
        print("held", flush=True)
        time.sleep(600)
    with orchestrator_lock(path, "s"):
        print("held", flush=True)
        time.sleep(600)
    """
)


def _holder(kind: str, path: Path) -> subprocess.Popen[str]:
    """A process that takes the lock at ``path`` and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, kind, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def _kill(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _acquire_in_thread(lock: OwnedFileLock) -> threading.Thread:
    thread = threading.Thread(target=lock.acquire, daemon=True)
    thread.start()
    return thread


def test_a_journal_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "journal.log.lock"
    _kill(_holder("journal", path))
    assert path.exists()
    lock = OwnedFileLock(path, tmp_path / "journal.log", grace=3600)  # no waiting it out
    waiter = _acquire_in_thread(lock)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert path.read_text() == f"{socket.gethostname()} {os.getpid()}"
    lock.release()
    assert not path.exists()


def test_a_journal_lock_held_by_a_live_process_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "journal.log.lock"
    holder = _holder("journal", path)
    try:
        waiter = _acquire_in_thread(OwnedFileLock(path, tmp_path / "journal.log", grace=3600))
        waiter.join(timeout=1.0)
        assert waiter.is_alive()  # still waiting: the owner lives
    finally:
        _kill(holder)
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_a_second_orchestrator_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.lock"
    holder = _holder("orchestrator", path)
    try:
        with (
            pytest.raises(StudyBusyError, match=rf"run by process {holder.pid}.*kill {holder.pid}"),
            orchestrator_lock(path, "s"),
        ):
            pass
    finally:
        _kill(holder)
    with orchestrator_lock(path, "s"):  # its lock, left behind, is taken over
        assert path.read_text().endswith(f" {os.getpid()}")
    assert not path.exists()
