"""Tracking cost: tuner's MLflow mirror against optuna-integration's and Ray Tune's callbacks.

``python -m benchmarks.tracking makespan on|off``: 1,000 trials of 50 ms on 2 workers (ideal
25 s), with tuner's MLflow tracking on or off; the study's whole run, including writing every
MLflow run, is timed.

``python -m benchmarks.tracking cost TOOL``: seconds of tracking work per trial on MLflow's
sqlite store, over 200 trials that each report 5 intermediate values:

- ``tuner``: the MLflow tracker fed a study's events; timed until every write is done
  (the writer's whole cost, which in a study runs beside the trials, not in their way).
- ``optuna-callback``: optuna-integration's ``MLflowCallback`` on ``study.optimize``
  (flat runs, final values only), minus the same optimisation without it.
- ``raytune-callback``: Ray Tune's ``MLflowLoggerCallback`` (reuse_actors=True), minus the
  same run without it.

Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

TRIALS = 200
REPORTS = 5


def makespan(tracking: bool, workdir: Path) -> float:
    import optuna

    import tuner
    from benchmarks.overhead import _init_ray
    from tuner.orchestrator import Orchestrator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["BENCH_TRIAL_SECONDS"] = "0.05"
    _init_ray()
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    if tracking:
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments()  # the store's schema, made once
    spec = tuner.StudySpec(
        name="tracked" if tracking else "untracked",
        objective={"metric": "loss"},
        space={"x": tuner.Float(0.0, 1.0)},
        strategy={"type": "random", "seed": 0},
        budget={"max_trials": 1000, "max_concurrent": 2},
        trial={"function": "benchmarks.overhead:objective"},
        tracking={"mlflow": {"tracking_uri": uri} if tracking else None},
        storage={"dir": str(workdir / "studies")},
    )
    started = time.perf_counter()
    Orchestrator(spec).run()
    elapsed = time.perf_counter() - started
    if tracking:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("tracked")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], max_results=2000)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        assert len(finished) == 1001, len(finished)  # every trial's run and the parent
    return elapsed


def cost_tuner(uri: str) -> float:
    import tuner
    from tuner.events import StudyStart
    from tuner.records import StudySummary, TrialRecord, TrialState
    from tuner.spec import MlflowTracking
    from tuner.tracking import MlflowTracker

    spec = tuner.StudySpec(
        name="cost",
        objective={"metric": "loss"},
        space={"x": tuner.Float(0.0, 1.0)},
        strategy={"type": "random", "seed": 0},
        budget={"max_trials": TRIALS, "max_concurrent": 2},
        trial={"function": "benchmarks.overhead:objective"},
        tracking={"mlflow": {"tracking_uri": uri}},
    )
    started = time.perf_counter()
    tracker = MlflowTracker(MlflowTracking(tracking_uri=uri), runs_ahead=True)
    tracker.study_started(StudyStart(spec, "random", 0, False, backend="ray"))
    counts = dict.fromkeys(TrialState, 0)
    now = datetime.now()
    for number in range(TRIALS):
        params = {"x": number / TRIALS}
        tracker.trial_environment(number)
        record = TrialRecord(number, TrialState.RUNNING, params, started=now)
        tracker.trial_started(record)
        for step in range(REPORTS):
            tracker.trial_reported(number, step, {"loss": 1.0 / (step + 1)})
        done = TrialRecord(
            number,
            TrialState.COMPLETE,
            params,
            value=0.5,
            metrics={"loss": 0.5},
            started=now,
            finished=now + timedelta(seconds=0.05),
        )
        tracker.trial_finished(done)
        counts[TrialState.COMPLETE] += 1
        tracker.study_progress(StudySummary("cost", "loss", "minimize", dict(counts), done))
    tracker.study_finished(StudySummary("cost", "loss", "minimize", dict(counts), None))
    tracker.close()
    return (time.perf_counter() - started) / TRIALS


def cost_optuna(uri: str) -> float:
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(REPORTS):
            trial.report(1.0 / (step + 1), step)
        return x

    def timed(callbacks: list[Any]) -> float:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        started = time.perf_counter()
        study.optimize(objective, n_trials=TRIALS, callbacks=callbacks)
        return time.perf_counter() - started

    base = timed([])
    with_callback = timed([MLflowCallback(tracking_uri=uri, metric_name="loss")])
    return (with_callback - base) / TRIALS


def cost_raytune(uri: str, workdir: Path) -> float:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from benchmarks.overhead import _init_ray

    _init_ray()

    def trainable(config: dict[str, Any]) -> None:
        for step in range(REPORTS):
            tune.report({"loss": config["x"] / (step + 1)})

    def timed(callbacks: list[Any], name: str) -> float:
        tuner_ = tune.Tuner(
            trainable,
            param_space={"x": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(
                num_samples=TRIALS, max_concurrent_trials=2, reuse_actors=True
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=str(workdir / "ray_results"), verbose=0, callbacks=callbacks
            ),
        )
        started = time.perf_counter()
        tuner_.fit()
        return time.perf_counter() - started

    base = timed([], "base")
    logged = timed([MLflowLoggerCallback(tracking_uri=uri, experiment_name="raytune")], "logged")
    return (logged - base) / TRIALS


def main() -> None:
    mode, what = sys.argv[1], sys.argv[2]
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="tuner-bench-tracking-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        if mode == "makespan":
            seconds = makespan(what == "on", workdir)
        else:
            from mlflow.tracking import MlflowClient

            MlflowClient(uri).search_experiments()  # schema creation is not a per-trial cost
            seconds = {
                "tuner": lambda: cost_tuner(uri),
                "optuna-callback": lambda: cost_optuna(uri),
                "raytune-callback": lambda: cost_raytune(uri, workdir),
            }[what]()
    print(json.dumps({"mode": mode, "what": what, "seconds": seconds}))


if __name__ == "__main__":
    main()
