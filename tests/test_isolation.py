"""A trial never sees what an earlier trial in the same worker process changed."""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tuner.backend import FunctionEntry
from tuner.orchestrator import Orchestrator
from tuner.records import TrialState
from tuner.store import load_study, records
from tuner.trial_runner import run_function

MESS = FunctionEntry("trial_functions:leaves_a_mess")
LEFT = ("cwd_left", "path_left", "handler_left", "filter_left")


def run(params: dict[str, Any]) -> dict[str, float]:
    result = run_function(MESS, params, "loss", lambda step, metrics: None)
    assert result.status.value == "COMPLETED", result.error
    return dict(result.metrics)


def test_what_a_trial_changes_in_its_process_is_put_back() -> None:
    cwd, path = os.getcwd(), list(sys.path)
    handlers, level = list(logging.getLogger().handlers), logging.getLogger().level
    filters = list(warnings.filters)
    run({"x": 1.0})
    assert os.getcwd() == cwd
    assert sys.path == path
    assert logging.getLogger().handlers == handlers
    assert logging.getLogger().level == level
    assert list(warnings.filters) == filters


def test_the_next_trial_in_the_process_starts_clean_with_fresh_random_streams() -> None:
    first, second = run({"x": 1.0}), run({"x": 2.0})
    assert all(second[name] == 0.0 for name in LEFT), second
    # The first trial seeded the global generators; the second must not inherit that seed,
    # nor share a stream with the first (each trial starts from fresh entropy).
    random.seed(0)
    np.random.seed(0)
    seeded = (random.random(), float(np.random.random()))
    assert (second["random"], second["numpy"]) != seeded
    assert (second["random"], second["numpy"]) != (first["random"], first["numpy"])


def test_the_trials_environment_is_theirs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_TEST_VAR", raising=False)
    seen = []
    entry = FunctionEntry("t:f", (), lambda p: seen.append(os.environ.get("TUNER_TEST_VAR")) or 1.0)
    run_function(entry, {}, "loss", lambda step, metrics: None, env={"TUNER_TEST_VAR": "yes"})
    assert seen == ["yes"]
    assert "TUNER_TEST_VAR" not in os.environ


@pytest.mark.ray
def test_trials_sharing_a_ray_worker_do_not_see_each_others_mess(
    ray_cluster: Any, make_spec: Callable[..., Any]
) -> None:
    spec = make_spec(
        name="messy",
        budget={"max_trials": 6, "max_concurrent": 1},
        trial={"function": "trial_functions:leaves_a_mess"},
        backend={"type": "ray"},
    )
    summary = Orchestrator(spec).run()
    assert summary.counts[TrialState.COMPLETE] == 6
    trials = records(load_study(spec))
    pids = [t.metrics["pid"] for t in trials]
    assert len(set(pids)) < len(pids), "the test needs a worker that runs several trials"
    for trial in trials:
        assert all(trial.metrics[name] == 0.0 for name in LEFT), (trial.number, trial.metrics)
    streams = [(t.metrics["random"], t.metrics["numpy"]) for t in trials]
    assert len(set(streams)) == len(streams)  # no trial inherits another's seeded stream


ROUTING = """
import sys
from tuner.backend import FunctionEntry
from tuner.trial_runner import run_function

def quiet(params):
    return 1.0

def logs(params):
    import mlflow  # first imported here, inside the trial
    return float(getattr(mlflow.start_run, "__tuner_routed__", False))

env = {"MLFLOW_RUN_ID": "0" * 32}
report = lambda step, metrics: None
run_function(FunctionEntry("m:quiet", (), quiet), {}, "loss", report, env=env)
print("mlflow" in sys.modules)
print(run_function(FunctionEntry("m:logs", (), logs), {}, "loss", report, env=env).metrics["loss"])
"""


def test_mlflow_is_routed_when_a_trial_imports_it_and_never_imported_for_one_that_does_not() -> (
    None
):
    import subprocess

    from conftest import subprocess_env

    out = subprocess.run(
        [sys.executable, "-c", ROUTING], env=subprocess_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "1.0"]


def test_a_trial_on_another_thread_never_undoes_what_the_process_changed_meanwhile() -> None:
    """The in-process backend runs trials on threads that may outlive a test: one that ends
    must not put back a sys.path, cwd or environment that the main thread has changed since."""
    import threading

    started, release = threading.Event(), threading.Event()

    def trial(params: dict[str, Any]) -> float:
        started.set()
        release.wait(10)
        return 1.0

    entry = FunctionEntry("t:trial", (), trial)
    worker = threading.Thread(target=lambda: run_function(entry, {}, "loss", lambda s, m: None))
    worker.start()
    assert started.wait(10)
    sys.path.insert(0, "/added-meanwhile")
    os.environ["TUNER_ADDED_MEANWHILE"] = "1"
    try:
        release.set()
        worker.join(10)
        assert sys.path[0] == "/added-meanwhile"
        assert os.environ.get("TUNER_ADDED_MEANWHILE") == "1"
    finally:
        sys.path.remove("/added-meanwhile")
        os.environ.pop("TUNER_ADDED_MEANWHILE", None)
