"""MLflow as researchers see it: a real `mlflow server` on loopback, killed and restarted."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import tuner.tracking
from servers import MlflowServer, free_port
from tuner.events import Listener as NullListener
from tuner.orchestrator import Orchestrator
from tuner.records import StopReason, TrialRecord, TrialState
from tuner.store import load_study, location
from tuner.sync import sync_study
from tuner.tracking import PENDING_FILE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    folder = tmp_path / "mlflow-server"
    folder.mkdir()
    running = MlflowServer(folder).start()
    try:
        yield running
    finally:
        running.stop()


def child_runs(client: MlflowClient, experiment: str) -> dict[int, list[Any]]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], max_results=1000)
    by_trial: dict[int, list[Any]] = {}
    for run in runs:
        if "tuner.trial" in run.data.tags:
            by_trial.setdefault(int(run.data.tags["tuner.trial"]), []).append(run)
    return by_trial


@pytest.mark.ray
def test_runs_on_a_real_server_have_the_layout_researchers_review(
    ray_cluster: Any, server: MlflowServer, make_spec: Callable[..., Any]
) -> None:
    spec = make_spec(
        name="served",
        space={
            "x": {"type": "float", "low": -2.0, "high": 2.0},
            "kind": {"type": "categorical", "choices": ["a", "b"]},
            "depth": {"type": "int", "low": 1, "high": 3, "when": {"kind": "b"}},
        },
        budget={"max_trials": 6, "max_concurrent": 2},
        trial={"function": "trial_functions:logs_into_its_own_run"},
        backend={"type": "ray"},
        tracking={"mlflow": {"tracking_uri": server.uri}},
    )
    summary = Orchestrator(spec).run()
    assert summary.counts[TrialState.COMPLETE] == 6
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("served")
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id],
        "tags.`tuner.study` = 'served' and attributes.run_name = 'served'",
    )
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["tuner.strategy"] == "random"
    assert parent.data.tags["tuner.backend"] == "ray"
    assert parent.data.metrics["trials_complete"] == 6
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "trials.csv", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {
        "plots/optimization_history.png",
        "plots/parallel_coordinate.png",
        "plots/plots.html",
    } <= plots

    runs = child_runs(client, "served")
    assert sorted(runs) == list(range(6))
    study = load_study(spec)
    for trial in study.trials:
        (run,) = runs[trial.number]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial-{trial.number:04d}"
        assert tags["tuner.study"] == "served"
        assert tags["tuner.state"] == "COMPLETE"
        assert tags["tuner.strategy"] == "random"
        assert tags["tuner.backend"] == "ray"
        assert tags["tuner.node"]
        assert run.data.params == {k: str(v) for k, v in trial.params.items()}
        # The trial's own code logged into this run through MLFLOW_RUN_ID.
        assert run.data.metrics["from_inside"] == pytest.approx(trial.params["x"])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in sorted(history, key=lambda m: m.step)][:3] == [0, 1, 2], (
            trial.number,
            trial.params,
            history,
        )
        assert "logs/trial.log" in {a.path for a in client.list_artifacts(run.info.run_id, "logs")}


class KillsTheServer(NullListener):
    """Kills the tracking server after a trial finishes, and brings it back later."""

    def __init__(self, server: MlflowServer, down_at: int, up_at: int):
        self.server, self.down_at, self.up_at = server, down_at, up_at
        self.finished = 0
        self.restarted = False

    def trial_finished(self, record: TrialRecord) -> None:
        self.finished += 1
        if self.finished == self.down_at:
            self.server.stop()
        if self.finished == self.up_at:
            self.server.start()
            self.restarted = True


def test_a_tracking_server_outage_loses_nothing_and_writes_nothing_twice(
    server: MlflowServer, make_spec: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuner.tracking, "RETRY_INTERVAL", 0.3)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    spec = make_spec(
        name="outage",
        trial={"function": "examples.functions:curve"},
        space={
            "x": {"type": "float", "low": -1.0, "high": 1.0},
            "sleep": {"type": "categorical", "choices": [0.02]},
        },
        budget={"max_trials": 12, "max_concurrent": 2},
        tracking={"mlflow": {"tracking_uri": server.uri}},
    )
    outage = KillsTheServer(server, down_at=3, up_at=8)
    summary = Orchestrator(spec, listeners=[outage]).run()
    assert outage.restarted
    assert summary.counts[TrialState.COMPLETE] == 12
    client = MlflowClient(server.uri)
    runs = child_runs(client, "outage")
    assert sorted(runs) == list(range(12))
    for number, found in runs.items():
        assert len(found) == 1, f"trial {number} has {len(found)} runs"
        (run,) = found
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "loss")
        steps = sorted(m.step for m in history)
        assert steps[:5] == [0, 1, 2, 3, 4]
        assert len([s for s in steps if s < 4]) == 4  # no intermediate value twice
    assert not (location(spec).root / PENDING_FILE).exists()


def test_writes_left_when_the_server_never_returns_are_written_by_sync(
    tmp_path: Path, make_spec: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuner.tracking, "RETRY_INTERVAL", 0.2)
    monkeypatch.setattr(tuner.tracking, "FLUSH_TIMEOUT", 1.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    folder = tmp_path / "late-server"
    folder.mkdir()
    late = MlflowServer(folder)  # not started: the tracking server is down all study long
    spec = make_spec(
        name="offline",
        trial={"function": "examples.functions:curve"},
        budget={"max_trials": 4, "max_concurrent": 2},
        tracking={"mlflow": {"tracking_uri": late.uri}},
    )
    summary = Orchestrator(spec).run()
    assert summary.counts[TrialState.COMPLETE] == 4
    assert (location(spec).root / PENDING_FILE).exists()
    late.start()
    try:
        report = sync_study(spec)
        assert report.unwritten == 0
        client = MlflowClient(late.uri)
        runs = child_runs(client, "offline")
        assert sorted(runs) == [0, 1, 2, 3]
        assert all(len(r) == 1 and r[0].info.status == "FINISHED" for r in runs.values())
        assert all(
            len(client.get_metric_history(r[0].info.run_id, "loss")) >= 5 for r in runs.values()
        )
        assert not (location(spec).root / PENDING_FILE).exists()
        again = sync_study(spec)  # nothing left to do, nothing duplicated
        assert (again.repairs, again.replayed) == ((), 0)
        assert all(len(r) == 1 for r in child_runs(client, "offline").values())
    finally:
        late.stop()


def test_resume_after_a_killed_orchestrator_duplicates_no_run(
    tmp_path: Path, mlflow_uri: str
) -> None:
    from conftest import run_tuner, start_tuner

    gate = tmp_path / "gate"
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(
        f"""
name: killed
objective: {{metric: loss}}
space:
  x: {{type: float, low: 0.0, high: 1.0}}
  gate: {{type: categorical, choices: ['{gate}']}}
strategy: {{type: random, seed: 3}}
budget: {{max_trials: 5, max_concurrent: 2}}
trial: {{function: examples.functions:gated}}
backend: {{type: inprocess}}
tracking: {{mlflow: {{tracking_uri: "{mlflow_uri}"}}}}
"""
    )
    client = MlflowClient(mlflow_uri)
    client.search_experiments()  # creates the store first: MLflow's migrations race otherwise
    process = start_tuner("run", str(spec_file), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name("killed")
            if experiment and len(child_runs(client, "killed")) == 2:
                break
            time.sleep(0.3)
        os.killpg(process.pid, signal.SIGKILL)  # no cleanup at all: runs left open
        process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert sorted(child_runs(client, "killed")) == [0, 1]

    gate.touch()
    resumed = run_tuner("resume", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    runs = child_runs(client, "killed")
    assert all(len(found) == 1 for found in runs.values()), runs
    # Trials 0 and 1 were interrupted: their runs are closed as KILLED, their configurations
    # ran again as new trials, and five trials completed in all.
    assert runs[0][0].info.status == "KILLED"
    assert runs[0][0].data.tags["tuner.state"] == "CANCELLED"
    complete = [n for n, (run,) in runs.items() if run.data.tags["tuner.state"] == "COMPLETE"]
    assert len(complete) == 5
    experiment = client.get_experiment_by_name("killed")
    assert experiment is not None
    parents = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "tuner.trial" not in r.data.tags
    ]
    assert len(parents) == 1
    pool = client.search_runs([experiment.experiment_id], "tags.`tuner.state` = 'POOL'")
    assert pool == []


def test_a_study_without_a_tracking_server_still_runs(
    make_spec: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuner.tracking, "FLUSH_TIMEOUT", 0.5)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    spec = make_spec(
        name="no-server",
        budget={"max_trials": 3, "max_concurrent": 1},
        tracking={"mlflow": {"tracking_uri": f"http://127.0.0.1:{free_port()}"}},
    )
    summary = Orchestrator(spec).run()
    assert summary.stop_reason is StopReason.MAX_TRIALS
    assert summary.counts[TrialState.COMPLETE] == 3


def test_sync_repairs_every_divergence_and_says_what_it_repaired(
    tmp_path: Path, mlflow_uri: str
) -> None:
    from conftest import run_tuner

    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(
        f"""
name: diverged
objective: {{metric: loss}}
space:
  x: {{type: float, low: -1.0, high: 1.0}}
  sleep: {{type: categorical, choices: [0.0]}}
strategy: {{type: random, seed: 3}}
budget: {{max_trials: 5, max_concurrent: 1}}
trial: {{function: examples.functions:curve}}
backend: {{type: inprocess}}
tracking: {{mlflow: {{tracking_uri: "{mlflow_uri}"}}}}
"""
    )
    assert run_tuner("run", str(spec_file), cwd=tmp_path).returncode == 0
    client = MlflowClient(mlflow_uri)
    runs = {n: found[0] for n, found in child_runs(client, "diverged").items()}
    experiment = runs[0].info.experiment_id
    client.delete_run(runs[0].info.run_id)  # a missing run
    client.update_run(runs[1].info.run_id, status="RUNNING")  # a ghost
    client.log_metric(runs[2].info.run_id, "loss", 123.0, step=99)  # a wrong final value
    client.set_tag(runs[3].info.run_id, "tuner.state", "FAILED")  # a wrong state
    client.create_run(  # a second run of trial 4, as a retried create whose answer was lost
        experiment,
        run_name="trial-0004",
        tags={"tuner.trial": "4", "mlflow.parentRunId": runs[4].data.tags["mlflow.parentRunId"]},
    )

    synced = run_tuner("sync", "diverged", cwd=tmp_path)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    said = synced.stdout
    assert "trial 0: its run was missing; created it" in said
    assert "trial 1: was RUNNING, closed it as FINISHED" in said
    assert "trial 2: logged final loss" in said
    assert "trial 3: set tuner.state" in said
    assert "trial 4: deleted a second run" in said

    study = load_study_for(tmp_path, "diverged")
    after = child_runs(client, "diverged")
    assert sorted(after) == [0, 1, 2, 3, 4]
    for frozen in study.trials:
        (run,) = after[frozen.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["tuner.state"] == "COMPLETE"
        assert run.data.metrics["loss"] == pytest.approx(frozen.value)
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "loss")}
        assert set(frozen.intermediate_values) <= steps
    again = run_tuner("sync", "diverged", cwd=tmp_path)
    assert "MLflow equals the store" in again.stdout, again.stdout


def load_study_for(folder: Path, name: str) -> Any:
    import optuna

    from tuner.journal import DurableJournalFile

    journal = folder / "tuner-studies" / name / "journal.log"
    storage = optuna.storages.JournalStorage(DurableJournalFile(str(journal)))
    return optuna.load_study(study_name=name, storage=storage)


def test_secret_looking_values_appear_nowhere_a_researcher_or_mlflow_sees(
    tmp_path: Path, mlflow_uri: str
) -> None:
    from conftest import run_tuner

    secret = "s3cr3t-do-not-show"
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(
        f"""
name: secretive
objective: {{metric: loss}}
space: {{x: {{type: float, low: -1.0, high: 1.0}}}}
strategy: {{type: random, seed: 3}}
budget: {{max_trials: 2, max_concurrent: 1}}
trial:
  function: examples.functions:quadratic
  env: {{WANDB_API_KEY: {secret}, HF_TOKEN: {secret}, MODE: fast}}
backend: {{type: inprocess}}
tracking: {{mlflow: {{tracking_uri: "{mlflow_uri}"}}}}
"""
    )
    shown = [
        run_tuner("run", str(spec_file), cwd=tmp_path),
        run_tuner("status", "secretive", cwd=tmp_path),
    ]
    assert all(result.returncode == 0 for result in shown)
    for result in shown:
        assert secret not in result.stdout + result.stderr
    assert "WANDB_API_KEY=****" in shown[1].stdout
    journal = tmp_path / "tuner-studies" / "secretive" / "journal.log"
    assert secret.encode() not in journal.read_bytes()

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("secretive")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    for run in runs:
        assert secret not in str(run.data.params) + str(run.data.tags)
    parent = next(r for r in runs if "tuner.trial" not in r.data.tags)
    logged = Path(client.download_artifacts(parent.info.run_id, "spec.yaml", str(tmp_path)))
    assert secret not in logged.read_text()
    assert (
        "WANDB_API_KEY: '****'" in logged.read_text() or "WANDB_API_KEY: ****" in logged.read_text()
    )
