"""Shared fixtures: the in-process backend's registration, one embedded Ray cluster, MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _register_inprocess_backend() -> Path:
    """Registers tests/inprocess.py as the `inprocess` backend through a real entry point."""
    site = Path(tempfile.mkdtemp(prefix="tuner-test-plugins-"))
    dist = site / "tuner_test_backends-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tuner-test-backends\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[tuner.backends]\ninprocess = inprocess:InProcessBackend\n"
    )
    sys.path.append(str(site))
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return site


PLUGIN_SITE = _register_inprocess_backend()


def start_tuner(
    *args: str, cwd: Path, ignore_sigint: bool = False, **extra_env: str
) -> subprocess.Popen[str]:
    """A `tuner` process in its own session (stop it with os.killpg), output merged.

    Its SIGINT disposition is set, not inherited from whoever started the tests: default, or
    ignored as `cmd &` in a script leaves it (``ignore_sigint``).
    """
    disposition = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL

    def set_sigint() -> None:
        signal.signal(signal.SIGINT, disposition)

    return subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", *args],
        cwd=cwd,
        env={**subprocess_env(), **extra_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=set_sigint,
    )


def run_tuner(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Runs `tuner` to its end and returns what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def subprocess_env() -> dict[str, str]:
    """The environment for a `tuner` subprocess that sees the test backend and examples."""
    path = os.pathsep.join([str(ROOT), str(TESTS), str(PLUGIN_SITE)])
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder (study state, mlflow.db), importing from the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    return tmp_path


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    """A fresh MLflow sqlite store."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., Any]:
    """Builds a StudySpec from keyword sections, with test-friendly defaults."""
    from tuner.spec import StudySpec

    def make(**sections: Any) -> StudySpec:
        data: dict[str, Any] = {
            "name": "test-study",
            "objective": {"metric": "loss", "direction": "minimize"},
            "space": {"x": {"type": "float", "low": -2.0, "high": 2.0}},
            "strategy": {"type": "random", "seed": 7},
            "budget": {"max_trials": 6, "max_concurrent": 2},
            "trial": {"function": "examples.functions:quadratic"},
            "backend": {"type": "inprocess"},
            "tracking": {"mlflow": None},
            "storage": {"dir": str(tmp_path / "studies")},
        }
        data.update(sections)
        return StudySpec.model_validate(data, context={"spec_dir": str(ROOT)})

    return make


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One embedded Ray cluster for the whole session (ray.init takes seconds on 2 cores)."""
    import logging

    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def _fake_sagemaker_server() -> Iterator[Any]:
    from fake_sagemaker import FakeSageMaker

    fake = FakeSageMaker().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def sagemaker(_fake_sagemaker_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """SageMaker on loopback (moto, patched into real job lifecycles), empty for each test;
    boto3 in this process and in `tuner` subprocesses reaches it."""
    fake = _fake_sagemaker_server
    for name, value in fake.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    fake.reset()
    return fake


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database on a throwaway PostgreSQL server (Debian's, which `make test` installs) for
    the session. Skipped without the server's binaries, except under CI, where that fails."""
    import importlib.util

    from postgres import PostgresServer, server_binaries

    missing = []
    if server_binaries() is None:
        missing.append("PostgreSQL's server (apt-get install postgresql)")
    if importlib.util.find_spec("psycopg2") is None:
        missing.append("psycopg2 (pip install -e '.[dev]')")
    if missing:
        reason = f"needs {' and '.join(missing)}; `make test` installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer.start()
    try:
        yield server.create_database("tuner_test")
    finally:
        server.stop()
