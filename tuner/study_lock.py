"""The orchestrator's lock on a study in its shared optuna database, kept alive by a heartbeat.

With ``storage.url`` several machines reach the same study, so its lock lives in that database:
one row per study in ``tuner_study_locks`` (created if missing). The holder renews its row's
heartbeat every ``heartbeat`` seconds; others take the row over only once its heartbeat is older
than the holder's ``lapse`` (three missed beats), or at once if its holder is a dead process of
their own machine. Ages are measured by the database's clock, so the machines' clocks need not
agree. A takeover is an UPDATE conditional on the token its contender read, so of two
contenders only one wins; the holder finds out at its next heartbeat and sets ``lost``.

Supported databases: SQLite, PostgreSQL and MySQL (through SQLAlchemy, as optuna's own storage).

One job, the database lock: its table, the atomic take-over, the heartbeat thread and the
choice between it and the file lock (:func:`study_lock`); they share one row's life cycle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from tuner.locks import (
    HeldLock,
    StudyBusyError,
    StudyLockError,
    StudyLockLostError,
    _FileHold,
    dead_here,
    orchestrator_lock,
    this_host,
)
from tuner.paths import location
from tuner.secrets import redact_url

if TYPE_CHECKING:
    from tuner.spec import StudySpec

HEARTBEAT_ENV = "TUNER_LOCK_HEARTBEAT"
DEFAULT_HEARTBEAT = 10.0
MISSED_BEATS = 3
_TAKEOVER_TRIES = 10

logger = logging.getLogger(__name__)

_metadata = sa.MetaData()
TABLE = sa.Table(
    "tuner_study_locks",
    _metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("holder_host", sa.String(255), nullable=False),
    sa.Column("holder_pid", sa.Integer, nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    # the holder's promise: it beats again before this many seconds pass
    sa.Column("lapse_seconds", sa.Double, nullable=False),
    # seconds since the epoch by the database's clock
    sa.Column("acquired_at", sa.Double, nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
)


class _DbNow(FunctionElement[float]):
    """Seconds since the epoch by the database's clock: one clock for every machine."""

    type = sa.Double()
    inherit_cache = True


@compiles(_DbNow)
def _now_standard(element: _DbNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) AS DOUBLE PRECISION)"


@compiles(_DbNow, "postgresql")
def _now_postgresql(element: _DbNow, compiler: SQLCompiler, **kw: Any) -> str:
    # now() is the transaction's start; clock_timestamp() is the statement's moment
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(_DbNow, "sqlite")
def _now_sqlite(element: _DbNow, compiler: SQLCompiler, **kw: Any) -> str:
    # CURRENT_TIMESTAMP has whole seconds only; julianday('now') has milliseconds
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(_DbNow, "mysql")
def _now_mysql(element: _DbNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(UNIX_TIMESTAMP(NOW(6)) AS DOUBLE)"


@dataclass(frozen=True)
class Holder:
    """A study's lock row as read, with its heartbeat's age by the database's clock."""

    host: str
    pid: int
    token: str
    lapse: float
    age: float

    @property
    def lapsed(self) -> bool:
        """Whether the holder missed its heartbeats: it is gone, or cut off."""
        return self.age > self.lapse


def heartbeat_from_env() -> float:
    """``TUNER_LOCK_HEARTBEAT`` in seconds, or the default (10 s).

    Raises:
        ValueError: if it is set but not a positive number.
    """
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{HEARTBEAT_ENV} must be a number of seconds > 0, but got {raw!r}")
    return value


class DatabaseLock:
    """The orchestrator's lock on ``study`` as a row of the study's database (module docstring).

    Args:
        url: the SQLAlchemy URL of the study's optuna storage (``storage.url``).
        study: the study's name.
        heartbeat: seconds between renewals; ``TUNER_LOCK_HEARTBEAT`` or 10 s if not given.
        lapse: seconds without a heartbeat after which others take the lock over; three
            heartbeats if not given.

    Example:
        >>> with DatabaseLock("sqlite:///studies.db", "my-study") as lock:
        ...     lock.lost.is_set()
        False
    """

    def __init__(
        self, url: str, study: str, *, heartbeat: float | None = None, lapse: float | None = None
    ):
        self.url = url
        self.study = study
        self.heartbeat = heartbeat if heartbeat is not None else heartbeat_from_env()
        self.lapse = lapse if lapse is not None else MISSED_BEATS * self.heartbeat
        if not 0 < self.heartbeat < self.lapse:
            raise ValueError(
                f"`0 < heartbeat < lapse` must hold, but got heartbeat={self.heartbeat}, "
                f"lapse={self.lapse}"
            )
        self.host = this_host()
        self.pid = os.getpid()
        self.token = secrets.token_hex(16)
        self.lost = threading.Event()
        self._lost_message = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: sa.Engine | None = None

    @property
    def lost_message(self) -> str:
        """Who took the study over and why; empty while the lock is ours."""
        return self._lost_message

    def check(self) -> None:
        """Raises :class:`StudyLockLostError` if another orchestrator took the study over."""
        if self.lost.is_set():
            raise StudyLockLostError(self._lost_message)

    # --- holding -------------------------------------------------------------------------

    def acquire(self) -> None:
        """Takes the lock and starts the heartbeat.

        Raises:
            StudyBusyError: if a live orchestrator holds it.
            StudyLockError: if the database cannot be reached or used.
        """
        shown = redact_url(self.url)
        try:
            engine = sa.create_engine(self.url, pool_pre_ping=True)
        except (ImportError, SQLAlchemyError, ValueError) as exc:
            raise StudyLockError(
                f"cannot take the lock of study `{self.study}` in {shown} ({exc}); check "
                f"`storage.url` and that its database driver is installed"
            ) from None
        try:
            _create_table(engine)
            self._take(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = " ".join(str(exc).split())[:300]
            raise StudyLockError(
                f"cannot take the lock of study `{self.study}` in {shown} "
                f"({type(exc).__name__}: {reason}); check that the database server runs and "
                f"the URL's host, user and password"
            ) from None
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._thread = threading.Thread(
            target=self._beat_until_released, name=f"tuner-lock-{self.study}", daemon=True
        )
        self._thread.start()

    def beat(self) -> bool:
        """Renews the heartbeat once; False (and ``lost`` set) if the row is no longer ours."""
        engine = self._bound()
        with engine.begin() as conn:
            renewed = conn.execute(
                sa.update(TABLE).where(*self._ours()).values(heartbeat_at=_DbNow())
            ).rowcount
        if renewed:
            return True
        holder = _read(engine, self.study)
        now_held = (
            f"process {holder.pid} on {holder.host} holds it now"
            if holder is not None
            else "no one holds it now"
        )
        self._mark_lost(
            f"study `{self.study}` was taken over by another orchestrator ({now_held}): this "
            f"one's heartbeat had lapsed (none for over {self.lapse:g} s); this orchestrator "
            f"stops, and the study goes on where it is held"
        )
        return False

    def release(self) -> None:
        """Stops the heartbeat and deletes the row if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 60)
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            with engine.begin() as conn:
                conn.execute(sa.delete(TABLE).where(*self._ours()))
        except SQLAlchemyError as exc:
            logger.warning(
                "could not release the lock of study `%s` (%s); it lapses in %g s",
                self.study,
                exc,
                self.lapse,
            )
        finally:
            engine.dispose()

    def __enter__(self) -> DatabaseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    # --- inside --------------------------------------------------------------------------

    def _take(self, engine: sa.Engine) -> None:
        for _ in range(_TAKEOVER_TRIES):
            if self._insert(engine):
                return
            holder = _read(engine, self.study)
            if holder is None:  # released meanwhile
                continue
            if not holder.lapsed and not dead_here(holder.host, holder.pid):
                raise StudyBusyError(_busy_message(self.study, holder))
            if self._take_over(engine, holder):
                logger.warning(
                    "took over the lock of study `%s` from process %d on %s (%s)",
                    self.study,
                    holder.pid,
                    holder.host,
                    f"no heartbeat for {holder.age:.1f} s" if holder.lapsed else "it has exited",
                )
                return
        raise StudyBusyError(
            f"study `{self.study}`: its lock kept changing hands while this orchestrator tried "
            f"to take it; other orchestrators are starting it too: try again in a moment"
        )

    def _insert(self, engine: sa.Engine) -> bool:
        try:
            with engine.begin() as conn:
                conn.execute(sa.insert(TABLE).values(study_name=self.study, **self._row()))
        except IntegrityError:
            return False
        return True

    def _take_over(self, engine: sa.Engine, holder: Holder) -> bool:
        """Replaces ``holder``'s row with ours, unless another contender replaced it first."""
        with engine.begin() as conn:
            taken = conn.execute(
                sa.update(TABLE)
                .where(TABLE.c.study_name == self.study, TABLE.c.token == holder.token)
                .values(**self._row())
            ).rowcount
        return bool(taken)

    def _row(self) -> dict[str, Any]:
        return {
            "holder_host": self.host,
            "holder_pid": self.pid,
            "token": self.token,
            "lapse_seconds": self.lapse,
            "acquired_at": _DbNow(),
            "heartbeat_at": _DbNow(),
        }

    def _ours(self) -> tuple[sa.ColumnElement[bool], ...]:
        return TABLE.c.study_name == self.study, TABLE.c.token == self.token

    def _bound(self) -> sa.Engine:
        if self._engine is None:
            raise RuntimeError(f"the lock of study `{self.study}` is not held")
        return self._engine

    def _mark_lost(self, message: str) -> None:
        self._lost_message = message
        self.lost.set()
        logger.error("%s", message)

    def _beat_until_released(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.heartbeat):
            try:
                if not self.beat():
                    return
                renewed = time.monotonic()
            except SQLAlchemyError as exc:
                # Cut off from the database past the lapse, another orchestrator may be
                # running the study already: stopping is the safe side.
                if time.monotonic() - renewed > self.lapse:
                    self._mark_lost(
                        f"study `{self.study}`: the lock's heartbeat could not reach the "
                        f"database for over {self.lapse:g} s ({exc}); another orchestrator may "
                        f"have taken the study over, so this one stops"
                    )
                    return
                logger.warning("heartbeat of study `%s` failed (%s); retrying", self.study, exc)


def _create_table(engine: sa.Engine) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(CreateTable(TABLE, if_not_exists=True))
    except SQLAlchemyError:
        # PostgreSQL's IF NOT EXISTS is not atomic: two first contenders can collide.
        if not sa.inspect(engine).has_table(TABLE.name):
            raise


def _read(engine: sa.Engine, study: str) -> Holder | None:
    query = sa.select(
        TABLE.c.holder_host,
        TABLE.c.holder_pid,
        TABLE.c.token,
        TABLE.c.lapse_seconds,
        (_DbNow() - TABLE.c.heartbeat_at).label("age"),
    ).where(TABLE.c.study_name == study)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    host, pid, token, lapse, age = row
    return Holder(str(host), int(pid), str(token), float(lapse), max(0.0, float(age)))


def _busy_message(study: str, holder: Holder) -> str:
    left = max(0.0, holder.lapse - holder.age)
    return (
        f"study `{study}` is being run by process {holder.pid} on {holder.host} (its last "
        f"heartbeat in the study's database was {holder.age:.1f} s ago); wait for it to "
        f"finish, or stop it (Ctrl-C, or `kill {holder.pid}` on {holder.host}); if that "
        f"process is dead, its lock lapses in {left:.0f} s, then `tuner resume {study}`"
    )


@contextlib.contextmanager
def study_lock(spec: StudySpec) -> Iterator[HeldLock]:
    """Holds the orchestrator's lock on ``spec``'s study while this process runs it.

    With ``storage.url`` the lock is a row in that database, renewed by a heartbeat (see
    :class:`tuner.study_lock.DatabaseLock`): one orchestrator per study across machines. Without,
    it is ``orchestrator.lock`` in the study's folder (:func:`orchestrator_lock`).

    Raises:
        StudyBusyError: if a live orchestrator holds it.
        StudyLockError: if ``storage.url``'s database cannot be reached or used.

    Example:
        >>> with study_lock(spec) as lock:  # doctest: +SKIP
        ...     run_until(done=lambda: lock.lost.is_set())
    """
    if spec.storage.url:
        with DatabaseLock(spec.storage.url, spec.name) as held:
            yield held
        return
    with orchestrator_lock(location(spec).orchestrator, spec.name):
        yield _FileHold()
