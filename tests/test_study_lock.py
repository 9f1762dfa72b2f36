"""One orchestrator per study across machines: with a shared `storage.url` the study's lock is a
row in that database, kept alive by a heartbeat (a real PostgreSQL server, and SQLite)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import run_tuner, start_tuner, subprocess_env
from tuner.locks import StudyBusyError, StudyLockError, this_host
from tuner.store import location
from tuner.study_lock import TABLE, DatabaseLock, study_lock

OTHER_HOST = "another-machine"

_HOLD = textwrap.dedent(
    """\
    import sys
    from tuner.locks import StudyLockLostError
    from tuner.study_lock import DatabaseLock
    with DatabaseLock(sys.argv[1], sys.argv[2]) as lock:
        print("held", flush=True)
        lock.lost.wait()
        try:
            lock.check()
        except StudyLockLostError as exc:
            print("lost:", exc, flush=True)
    """
)


def _name() -> str:
    return f"lock-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _row(url: str, study: str) -> dict[str, Any] | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(TABLE).where(TABLE.c.study_name == study)).first()
    finally:
        engine.dispose()
    return None if row is None else dict(row._mapping)


def _hold(url: str, study: str, **env: str) -> subprocess.Popen[str]:
    """A process (of ``TUNER_HOSTNAME`` if given) that holds the study's lock until lost."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, url, study],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**subprocess_env(), **env},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts, killed (by process group) at its end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _take_when_free(url: str, study: str, timeout: float = 60) -> DatabaseLock:
    """Tries the lock until it is ours; the refusals on the way are the point of the tests."""
    deadline = time.monotonic() + timeout
    while True:
        lock = DatabaseLock(url, study, heartbeat=0.5)
        try:
            lock.acquire()
            return lock
        except StudyBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_second_holder_is_refused_with_the_first_ones_host_and_pid(db_url: str) -> None:
    study = _name()
    with DatabaseLock(db_url, study) as first:
        row = _row(db_url, study)
        assert row is not None
        assert (row["holder_host"], row["holder_pid"]) == (this_host(), os.getpid())
        expected = (
            rf"study `{study}` is being run by process {os.getpid()} on {re.escape(this_host())}"
            rf" .*heartbeat .* s ago.*kill {os.getpid()}.*lapses in \d+ s, then "
            rf"`tuner resume {study}`"
        )
        with pytest.raises(StudyBusyError, match=expected), DatabaseLock(db_url, study):
            pass
        assert _row(db_url, study) == row  # the refused one changed nothing
        assert first.beat()
    assert _row(db_url, study) is None  # released
    with DatabaseLock(db_url, study) as again:
        assert not again.lost.is_set()


def test_study_lock_is_the_file_lock_without_a_storage_url(make_spec: Callable[..., Any]) -> None:
    spec = make_spec()
    with study_lock(spec) as lock:
        assert location(spec).orchestrator.read_text() == f"{this_host()} {os.getpid()}"
        assert not lock.lost.is_set()
        with pytest.raises(StudyBusyError, match=f"run by process {os.getpid()}"):
            study_lock(spec).__enter__()
    assert not location(spec).orchestrator.exists()


def test_study_lock_is_a_database_row_with_a_storage_url(
    make_spec: Callable[..., Any], db_url: str, tmp_path: Path
) -> None:
    spec = make_spec(name=_name(), storage={"dir": str(tmp_path / "a"), "url": db_url})
    elsewhere = make_spec(name=spec.name, storage={"dir": str(tmp_path / "b"), "url": db_url})
    with study_lock(spec) as lock:
        assert isinstance(lock, DatabaseLock)
        assert not location(spec).orchestrator.exists()
        with pytest.raises(StudyBusyError, match=f"process {os.getpid()}"):
            study_lock(elsewhere).__enter__()
    assert _row(db_url, spec.name) is None


def test_an_unreachable_database_is_named_without_its_password() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg2://tuner:hunter2@127.0.0.1:{port}/studies"
    with pytest.raises(StudyLockError) as caught:
        DatabaseLock(url, "s").acquire()
    assert f"tuner:****@127.0.0.1:{port}/studies" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "check that the database server runs" in str(caught.value)


def _spec_yaml(name: str, studies: Path, url: str, gate: Path) -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        objective: {{metric: loss, direction: minimize}}
        space:
          x: {{type: float, low: -2.0, high: 2.0}}
          gate: {{type: categorical, choices: ['{gate}']}}
        strategy: {{type: random, seed: 1}}
        budget: {{max_trials: 2, max_concurrent: 2}}
        trial: {{function: examples.functions:gated}}
        backend: {{type: inprocess}}
        tracking: {{mlflow: null}}
        storage: {{dir: '{studies}', url: '{url}'}}
        """
    )


def test_a_second_machine_cannot_run_a_study_that_a_live_tuner_holds(
    postgres_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    name, gate = _name(), tmp_path / "gate"
    first_spec, second_spec = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first_spec.write_text(_spec_yaml(name, tmp_path / "first-studies", postgres_url, gate))
    second_spec.write_text(_spec_yaml(name, tmp_path / "second-studies", postgres_url, gate))
    # the second machine ran the study before, so it can `resume` it by its folder
    second_folder = tmp_path / "second-studies" / name
    second_folder.mkdir(parents=True)
    (second_folder / "spec.yaml").write_text(second_spec.read_text())

    first = start_tuner("run", str(first_spec), cwd=tmp_path, TUNER_LOCK_HEARTBEAT="0.5")
    processes.append(first)
    deadline = time.monotonic() + 120
    while (row := _row(postgres_url, name)) is None:
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the first tuner never took the study's lock"
        time.sleep(0.2)
    assert row["holder_pid"] == first.pid

    for args in (("run", str(second_spec)), ("resume", str(second_folder))):
        refused = run_tuner(*args, cwd=tmp_path)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"being run by process {first.pid} on {this_host()}" in refused.stderr
        assert f"tuner resume {name}" in refused.stderr

    gate.touch()
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert _row(postgres_url, name) is None


def test_a_killed_holder_of_another_machine_is_taken_over_once_its_heartbeat_lapses(
    postgres_url: str, processes: list[subprocess.Popen[str]]
) -> None:
    study = _name()
    holder = _hold(postgres_url, study, TUNER_HOSTNAME=OTHER_HOST, TUNER_LOCK_HEARTBEAT="1")
    processes.append(holder)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()

    # its pid cannot be checked from here, so only the lapse (3 s) frees the study
    with pytest.raises(StudyBusyError, match=rf"process {holder.pid} on {OTHER_HOST} .*lapses in"):
        DatabaseLock(postgres_url, study).acquire()
    lock = _take_when_free(postgres_url, study)
    try:
        row = _row(postgres_url, study)
        assert row is not None
        assert (row["holder_host"], row["holder_pid"]) == (this_host(), os.getpid())
    finally:
        lock.release()


def test_a_killed_holder_of_this_machine_is_taken_over_at_once(
    postgres_url: str, processes: list[subprocess.Popen[str]]
) -> None:
    study = _name()
    holder = _hold(postgres_url, study, TUNER_LOCK_HEARTBEAT="600")  # lapses in 30 min
    processes.append(holder)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    with DatabaseLock(postgres_url, study):
        row = _row(postgres_url, study)
        assert row is not None
        assert row["holder_pid"] == os.getpid()


def test_a_holder_whose_lock_was_taken_over_finds_it_lost(
    postgres_url: str, processes: list[subprocess.Popen[str]]
) -> None:
    study = _name()
    holder = _hold(postgres_url, study, TUNER_HOSTNAME=OTHER_HOST, TUNER_LOCK_HEARTBEAT="0.5")
    processes.append(holder)
    os.killpg(holder.pid, signal.SIGSTOP)  # a machine that hangs, or is cut off, for a while
    lock = _take_when_free(postgres_url, study)
    try:
        os.killpg(holder.pid, signal.SIGCONT)
        out, _ = holder.communicate(timeout=60)
        assert out.startswith(f"lost: study `{study}` was taken over by another orchestrator")
        assert f"process {os.getpid()} on {this_host()} holds it now" in out
        assert holder.returncode == 0
        assert lock.beat()  # leaving, the old holder did not delete the new one's row
        assert not lock.lost.is_set()
    finally:
        lock.release()
    assert _row(postgres_url, study) is None
