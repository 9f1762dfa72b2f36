"""A real two-node Ray cluster on this machine, started with `ray start` and stopped after.

The study runs as a `tuner run` process connecting by address, as a researcher would run it
against a shared cluster. Everything started here is stopped by its process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from conftest import TESTS, subprocess_env
from ray_nodes import RAY_ENV as ENV
from ray_nodes import Node, two_node_cluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Node, Node]]:
    with two_node_cluster() as running:
        yield running


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
