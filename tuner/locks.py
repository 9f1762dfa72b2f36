"""File locks that know their owner, so a killed orchestrator never blocks the next one.

A lock file holds ``<host> <pid>`` of the process that holds it. A lock held by a process of
this machine that no longer exists is taken over at once; one held elsewhere (a shared file
system) is waited for, and broken only after ``grace`` seconds without the guarded file
changing, as optuna's own journal locks do.

:func:`study_lock` is the orchestrator's lock on a study: this file lock next to the journal,
or, with a shared ``storage.url``, a row in that database (:mod:`tuner.study_lock`), so that one
orchestrator runs a study across machines.

``TUNER_HOSTNAME``, if set, is this process's host name in every lock (for tests that play a
process of another machine, whose pid can then not be checked).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

# The journal backend's lock interface (`lock_obj=`), only exported from its own module.
from tuner.errors import ConflictError, SetupError
from tuner.optuna_adapter import BaseJournalFileLock

if TYPE_CHECKING:
    pass


class StudyBusyError(ConflictError):
    """Another live orchestrator is running the study."""


class StudyLockLostError(StudyBusyError):
    """Another orchestrator took the study over (this one's heartbeat lapsed)."""


class StudyLockError(SetupError):
    """The study's lock cannot be taken: its database cannot be reached or used."""


class HeldLock(Protocol):
    """A study lock while it is held.

    ``lost`` is set if another orchestrator took the study over; the study must then stop.
    """

    lost: threading.Event

    @property
    def lost_message(self) -> str:
        """Who took the study over and why; empty while the lock is ours."""
        ...

    def check(self) -> None:
        """Raises :class:`StudyLockLostError` if the lock was lost."""
        ...


def this_host() -> str:
    """This machine's name in locks: ``TUNER_HOSTNAME`` if set (tests), else the host name."""
    return os.environ.get("TUNER_HOSTNAME") or socket.gethostname()


def _me() -> str:
    return f"{this_host()} {os.getpid()}"


def _owner(path: Path) -> tuple[str, int] | None:
    """The host and pid in a lock file, if it is one of ours and readable."""
    try:
        host, pid = path.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _dead(owner: tuple[str, int] | None) -> bool:
    """Whether ``owner`` was a process of this machine that has exited."""
    return owner is not None and dead_here(*owner)


def dead_here(host: str, pid: int) -> bool:
    """Whether process ``pid`` of ``host`` is known to have exited: only a process of this
    machine can be checked, so one of another host is never dead."""
    if host != this_host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # an exited child not yet reaped by its parent
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False


def _create(path: Path) -> bool:
    """Creates the lock file with its owner in it, at once (a hard link of a written file),
    so no one ever reads a lock without its owner; False if it exists."""
    draft = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    draft.write_text(_me())
    try:
        os.link(draft, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    finally:
        draft.unlink()
    return True


def _take_over(path: Path, owner: tuple[str, int] | None) -> None:
    """Removes a lock left by ``owner``, unless someone else took it meanwhile."""
    if _owner(path) == owner:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class OwnedFileLock(BaseJournalFileLock):
    """optuna's journal lock, with the owner's pid in it (see the module docstring).

    Args:
        path: the lock file.
        guarded: the file the lock guards; its changes show that a remote owner is alive.
        grace: seconds after which a lock whose owner cannot be checked is broken.
    """

    def __init__(
        self, path: str | os.PathLike[str], guarded: str | os.PathLike[str], grace: float = 30.0
    ):
        self.path = Path(path)
        self.guarded = Path(guarded)
        self.grace = grace

    def acquire(self) -> bool:
        pause = 0.001
        waited_since = time.monotonic()
        last_change: float | None = None
        while not _create(self.path):
            owner = _owner(self.path)
            if _dead(owner):
                _take_over(self.path, owner)
                continue
            try:
                change = self.guarded.stat().st_mtime
            except OSError:
                change = None
            if change != last_change:
                last_change, waited_since = change, time.monotonic()
            elif time.monotonic() - waited_since > self.grace:
                _take_over(self.path, owner)
                continue
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        return True

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def orchestrator_lock(path: Path, study: str) -> Iterator[None]:
    """Holds ``path`` while this process runs ``study``: a second orchestrator on the same
    study is refused, and one left by a killed orchestrator is taken over.

    Raises:
        StudyBusyError: if a live process holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while not _create(path):
        owner = _owner(path)
        if owner is not None and not _dead(owner):
            host, pid = owner
            where = "" if host == this_host() else f" on {host}"
            raise StudyBusyError(
                f"study `{study}` is being run by process {pid}{where}; wait for it to finish, "
                f"or stop it (Ctrl-C, or `kill {pid}`) and `tuner resume {study}`"
            )
        _take_over(path, owner)  # a lock without a readable owner is not one of ours
    try:
        yield
    finally:
        if _owner(path) == (this_host(), os.getpid()):
            path.unlink()


class _FileHold:
    """A file lock as held: it cannot be taken over from a live process, so it is never lost."""

    def __init__(self) -> None:
        self.lost = threading.Event()

    @property
    def lost_message(self) -> str:
        return ""

    def check(self) -> None:
        pass
