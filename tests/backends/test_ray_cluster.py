"""A real two-node Ray cluster on this machine, started with `ray start` and stopped after.

The study runs as a `tuner run` process connecting by address, as a researcher would run it
against a shared cluster. Everything started here is stopped by its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from conftest import TESTS, subprocess_env

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class Node:
    """One `ray start --block` process and everything it starts, in its own process group."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [
                RAY,
                "start",
                "--block",
                "--num-cpus=1",
                "--node-ip-address=127.0.0.1",
                "--disable-usage-stats",
                *args,
            ],
            env={**os.environ, **ENV},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, limit: float = 90.0) -> None:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Node, Node]]:
    # A short temp dir: Ray's unix sockets must fit in 107 characters.
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
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


def write_spec(tmp_path: Path, address: str, **budget: int) -> Path:
    spec = tmp_path / "study.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: on-cluster
            objective: {{metric: loss}}
            space:
              x: {{type: float, low: -1.0, high: 1.0}}
              seconds: {{type: categorical, choices: [{budget.pop("seconds", 1)}]}}
            strategy: {{type: random, seed: 0}}
            budget: {json.dumps({"max_concurrent": 2, **budget})}
            trial: {{function: "trial_functions:where_am_i", path: ["{TESTS}"], max_retries: 2}}
            backend: {{type: ray, address: "{address}"}}
            tracking: {{mlflow: null}}
            """
        )
    )
    return spec


def run_tuner(spec: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "run", str(spec)],
        cwd=cwd,
        env={**subprocess_env(), **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def load(cwd: Path) -> optuna.Study:
    journal = cwd / "tuner-studies" / "on-cluster" / "journal.log"
    storage = optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    return optuna.load_study(study_name="on-cluster", storage=storage)


def finish(process: subprocess.Popen[str], limit: float = 300) -> str:
    try:
        out, _ = process.communicate(timeout=limit)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return out


def test_a_study_by_address_runs_trials_on_both_nodes(
    cluster: tuple[str, Node, Node], tmp_path: Path
) -> None:
    address, _, _ = cluster
    process = run_tuner(write_spec(tmp_path, address, max_trials=6), tmp_path)
    out = finish(process)
    assert process.returncode == 0, out
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    nodes = {t.user_attrs["tuner.node"] for t in study.trials}
    assert len(nodes) == 2, nodes


def test_losing_a_node_mid_study_retries_its_trials_and_loses_nothing(
    cluster: tuple[str, Node, Node], tmp_path: Path
) -> None:
    address, _, worker = cluster
    process = run_tuner(write_spec(tmp_path, address, max_trials=6, seconds=4), tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            journal = tmp_path / "tuner-studies" / "on-cluster" / "journal.log"
            if (
                journal.exists()
                and sum(t.state == optuna.trial.TrialState.RUNNING for t in load(tmp_path).trials)
                == 2
            ):
                break
            time.sleep(0.2)
        time.sleep(1.5)  # both trials are now inside their 4 s sleep, one on each node
        worker.stop(signal.SIGKILL)
        out = finish(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, out
    study = load(tmp_path)
    assert len(study.trials) == 6  # no trial counted twice
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    retried = [t for t in study.trials if t.user_attrs.get("tuner.attempts", 1) > 1]
    assert retried, out
    assert all("tuner.retries" in t.user_attrs for t in retried)
