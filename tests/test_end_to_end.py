"""A whole study on the real embedded Ray cluster, tracked in a real MLflow store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tuner.orchestrator import Orchestrator
from tuner.records import StopReason, TrialState
from tuner.store import location

pytestmark = pytest.mark.ray


def test_a_study_on_ray_writes_a_parent_run_and_a_child_run_per_trial(
    ray_cluster: Any, make_spec: Callable[..., Any], mlflow_uri: str
) -> None:
    spec = make_spec(
        name="e2e",
        space={
            "x": {"type": "float", "low": -2.0, "high": 2.0},
            "kind": {"type": "categorical", "choices": ["a", "b"]},
            "depth": {"type": "int", "low": 1, "high": 3, "when": {"kind": "b"}},
        },
        strategy={"type": "bayesian", "seed": 3, "n_startup_trials": 3},
        budget={"max_trials": 6, "max_concurrent": 2},
        trial={"function": "examples.functions:curve"},
        backend={"type": "ray"},
        tracking={"mlflow": {"tracking_uri": mlflow_uri, "experiment": "e2e-exp"}},
    )
    summary = Orchestrator(spec).run()
    assert summary.stop_reason is StopReason.MAX_TRIALS
    assert summary.counts[TrialState.COMPLETE] == 6

    # The journal is a plain optuna storage.
    storage = JournalStorage(JournalFileBackend(str(location(spec).journal)))
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert len(study.trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("e2e-exp")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "e2e"
    assert parent.info.status == "FINISHED"
    assert parent.data.params["strategy"] == "bayesian"
    assert parent.data.params["engine"] == "auto"
    assert parent.data.params["budget.max_trials"] == "6"
    assert parent.data.metrics["best_loss"] == pytest.approx(summary.best.value)
    assert parent.data.tags["tuner.best_trial"] == str(summary.best.number)
    assert "spec.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]

    assert len(children) == 6
    by_trial = {int(r.data.tags["tuner.trial"]): r for r in children}
    assert sorted(by_trial) == list(range(6))
    for trial in study.trials:
        run = by_trial[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial-{trial.number:04d}"
        assert run.info.status == "FINISHED"
        assert run.data.tags["tuner.state"] == "COMPLETE"
        assert run.data.params == {k: str(v) for k, v in trial.params.items()}
        assert ("depth" in run.data.params) == (trial.params["kind"] == "b")
        assert run.data.metrics["loss"] == pytest.approx(trial.value)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]  # the last step once
        assert study.user_attrs[f"tuner.mlflow_run_id.{trial.number}"] == run.info.run_id
        assert run.data.tags["tuner.engine"] == trial.user_attrs["tuner.engine"]
    assert study.user_attrs["tuner.mlflow_parent_run_id"] == parent.info.run_id
    # The default engine's start-up trials are random; by the last trial at least three have
    # completed, and a categorical, conditional space is TPE's.
    engines = [by_trial[n].data.tags["tuner.engine"] for n in range(6)]
    assert engines[:2] == ["random", "random"]
    assert engines[5] == "tpe"


def test_failed_trials_reach_mlflow_with_their_error(
    ray_cluster: Any, make_spec: Callable[..., Any], mlflow_uri: str
) -> None:
    spec = make_spec(
        name="e2e-failures",
        space={"x": {"type": "float", "low": -1.0, "high": -0.5}},
        budget={"max_trials": 4, "max_concurrent": 2, "max_failures": 2},
        trial={"function": "examples.functions:flaky"},
        backend={"type": "ray"},
        tracking={"mlflow": {"tracking_uri": mlflow_uri}},
    )
    summary = Orchestrator(spec).run()
    assert summary.stop_reason is StopReason.MAX_FAILURES
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("e2e-failures")
    runs = client.search_runs([experiment.experiment_id], "tags.tuner.state = 'FAILED'")
    assert len(runs) == summary.counts[TrialState.FAILED] >= 2
    for run in runs:
        assert run.info.status == "FAILED"
        assert "is negative" in run.data.tags["tuner.error"]
        assert "error.txt" in [a.path for a in client.list_artifacts(run.info.run_id)]
