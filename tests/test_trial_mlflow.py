"""Code inside a trial logs to MLflow into its own run, however Ray reuses its workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tuner.orchestrator import Orchestrator
from tuner.records import TrialState


@pytest.mark.ray
def test_every_mlflow_call_of_a_trial_lands_in_its_own_run(
    ray_cluster: Any, make_spec: Callable[..., Any], tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = make_spec(
        name="inside",
        space={"x": {"type": "float", "low": -2.0, "high": 2.0}},
        budget={"max_trials": 6, "max_concurrent": 1},
        trial={"function": "trial_functions:logs_every_way"},
        backend={"type": "ray"},
        tracking={"mlflow": {"tracking_uri": uri}},
    )
    summary = Orchestrator(spec).run()
    assert summary.counts[TrialState.COMPLETE] == 6

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("inside")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = next(r for r in runs if r.info.run_name == "inside")
    trials = {int(r.data.tags["tuner.trial"]): r for r in runs if "tuner.trial" in r.data.tags}
    nested = [r for r in runs if r.info.run_name == "inner-step"]
    assert len(runs) == 1 + 6 + 6, [r.info.run_name for r in runs]  # no stray run anywhere
    assert sorted(trials) == list(range(6))

    pids = [run.data.metrics["pid"] for run in trials.values()]
    assert len(set(pids)) < len(pids), "the test needs a worker that runs several trials"
    for number, run in trials.items():
        x = run.data.params["x"]
        metrics = run.data.metrics
        for name in ("inner", "first_block", "second_block", "from_thread"):
            assert metrics[name] == pytest.approx(float(x)), (number, name)
        assert run.data.tags["who"] == str(number)
        assert float(run.data.params["C"]) == pytest.approx(abs(float(x)) + 0.1)  # autolog
        assert metrics["saw_a_leak"] == 0.0
        assert run.info.status == "FINISHED"
        assert run.data.tags["tuner.state"] == "COMPLETE"
        assert run.info.run_name == f"trial-{number:04d}"
    assert sorted(r.data.tags["mlflow.parentRunId"] for r in nested) == sorted(
        r.info.run_id for r in trials.values()
    )
    assert not {"inner", "nested", "from_thread"} & set(parent.data.metrics)
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])
    elsewhere = client.get_experiment_by_name("somewhere-else")
    assert elsewhere is None or not client.search_runs([elsewhere.experiment_id])


@pytest.mark.ray
def test_a_command_trial_logs_into_its_own_run(
    ray_cluster: Any, make_spec: Callable[..., Any], tmp_path: Path
) -> None:
    from conftest import TESTS

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = make_spec(
        name="script",
        space={"x": {"type": "float", "low": -2.0, "high": 2.0}},
        budget={"max_trials": 4, "max_concurrent": 1},
        trial={
            "command": ["python", str(TESTS / "scripts" / "logs_to_mlflow.py")],
            "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.eE+-]+)"}],
        },
        backend={"type": "ray"},
        tracking={"mlflow": {"tracking_uri": uri}},
    )
    summary = Orchestrator(spec).run()
    assert summary.counts[TrialState.COMPLETE] == 4
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("script")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    trials = [r for r in runs if "tuner.trial" in r.data.tags]
    assert len(runs) == 1 + 4  # the parent and one run per trial: nothing stray
    for run in trials:
        assert run.data.metrics["inner"] == pytest.approx(float(run.data.params["x"]))
        assert run.data.params["script"] == "logs_to_mlflow"
        assert run.info.status == "FINISHED"
