"""An independent check that a study's MLflow mirror equals its optuna store.

Written for the crash tests without any of tuner's code: the store is read with optuna, MLflow
with ``MlflowClient``, and the rule is restated here from what a researcher expects to see:

- every trial that has started (not WAITING) has exactly one child run under the study's one
  parent run, in the same state: COMPLETE -> FINISHED + ``tuner.state`` COMPLETE, PRUNED ->
  FINISHED + PRUNED, FAIL with ``tuner.cancelled`` -> KILLED + CANCELLED, other FAIL ->
  FAILED + FAILED;
- with the same params (``str`` of each value), the same final metrics (the store's
  ``tuner.metrics``) and the same intermediate values of the objective (the run's history of
  the objective is the store's intermediate values, each once, and at most the final value
  besides);
- no run is left RUNNING, no run made ahead of need (``tuner.state = POOL``) is left, and the
  parent run is not RUNNING.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

CANCELLED_ATTR = "tuner.cancelled"
METRICS_ATTR = "tuner.metrics"


def load_store(study: str, journal: Path | None = None, url: str | None = None) -> Any:
    """The optuna study as stored (a journal file, or any optuna storage URL)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url is not None:
        storage: Any = url
    else:
        assert journal is not None, "give the journal file or the storage URL"
        backend = optuna.storages.journal.JournalFileBackend(str(journal))
        storage = optuna.storages.journal.JournalStorage(backend)
    return optuna.load_study(study_name=study, storage=storage)


def expected_run_state(trial: Any) -> tuple[str, str] | None:
    """(MLflow run status, ``tuner.state`` tag) a stored trial's run must have; None: no run."""
    from optuna.trial import TrialState

    if trial.state == TrialState.WAITING:
        return None
    if trial.state == TrialState.COMPLETE:
        return "FINISHED", "COMPLETE"
    if trial.state == TrialState.PRUNED:
        return "FINISHED", "PRUNED"
    if trial.state == TrialState.FAIL:
        if trial.user_attrs.get(CANCELLED_ATTR):
            return "KILLED", "CANCELLED"
        return "FAILED", "FAILED"
    return "RUNNING", "RUNNING"  # RUNNING in the store: reported below as unfinished


def mirror_divergences(
    study_name: str,
    tracking_uri: str,
    experiment: str,
    objective: str,
    *,
    journal: Path | None = None,
    storage_url: str | None = None,
) -> list[str]:
    """Every way the MLflow mirror differs from the store, in words (empty: they are equal)."""
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    study = load_store(study_name, journal, storage_url)
    client = MlflowClient(tracking_uri)
    problems: list[str] = []

    found = client.get_experiment_by_name(experiment)
    if found is None:
        return [f"no MLflow experiment {experiment!r}"]
    runs = _search(client, found.experiment_id, "")
    parents = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags
        and r.data.tags.get("tuner.study") == study_name
        and "tuner.trial" not in r.data.tags
    ]
    if len(parents) != 1:
        states = ", ".join(f"{p.info.run_id[:8]} {p.info.status}" for p in parents)
        problems.append(f"the study has {len(parents)} parent runs, not 1 ({states})")
    if not parents:
        return problems
    parent = parents[0]
    if parent.info.status == "RUNNING":
        problems.append(f"the parent run {parent.info.run_id[:8]} is still RUNNING")

    children = _search(
        client, found.experiment_id, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_trial: dict[int, list[Any]] = {}
    for run in children:
        tags = run.data.tags
        if tags.get("tuner.state") == "POOL":
            problems.append(f"run {run.info.run_id[:8]} made ahead of need (POOL) was left")
            continue
        if "tuner.trial" not in tags:
            problems.append(f"child run {run.info.run_id[:8]} has no tuner.trial tag")
            continue
        by_trial.setdefault(int(tags["tuner.trial"]), []).append(run)
    for run in runs:
        if run.info.status == "RUNNING" and run.info.run_id != parent.info.run_id:
            trial = run.data.tags.get("tuner.trial", "?")
            problems.append(f"run {run.info.run_id[:8]} (trial {trial}) is left RUNNING")

    stored = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in sorted(set(by_trial) - set(stored)):
        count = len(by_trial[number])
        problems.append(f"trial {number} has {count} run(s) but is not in the store")
    for number, trial in sorted(stored.items()):
        expected = expected_run_state(trial)
        found_runs = by_trial.get(number, [])
        if expected is None:
            if found_runs:
                problems.append(f"trial {number} is WAITING but has {len(found_runs)} run(s)")
            continue
        if trial.state == TrialState.RUNNING:
            problems.append(f"trial {number} is still RUNNING in the store")
        if len(found_runs) != 1:
            problems.append(
                f"trial {number} ({_state_name(trial)}) has {len(found_runs)} runs, not 1"
            )
            if not found_runs:
                continue
        problems.extend(_compare_trial(client, trial, found_runs[0], expected, objective))
    return problems


def _compare_trial(
    client: Any, trial: Any, run: Any, expected: tuple[str, str], objective: str
) -> list[str]:
    from optuna.trial import TrialState

    number = trial.number
    problems: list[str] = []
    status, state_tag = expected
    got = (run.info.status, run.data.tags.get("tuner.state"))
    if got != (status, state_tag):
        problems.append(
            f"trial {number} ({_state_name(trial)}): run is {got[0]} + tuner.state {got[1]}, "
            f"expected {status} + {state_tag}"
        )
    params = {k: str(v) for k, v in trial.params.items()}
    if run.data.params != params:
        problems.append(f"trial {number}: run params {run.data.params} != stored {params}")

    raw = trial.user_attrs.get(METRICS_ATTR)
    metrics = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    for key, value in sorted(metrics.items()):
        if not _finite(value):
            continue
        logged = run.data.metrics.get(key)
        if logged is None or not _same(logged, value):
            problems.append(f"trial {number}: final metric {key} is {logged} in MLflow, {value}")

    final = metrics.get(objective)
    if final is None and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        final = trial.value
    stored_curve = Counter(
        (int(s), _key(v)) for s, v in trial.intermediate_values.items() if _finite(v)
    )
    history = client.get_metric_history(run.info.run_id, objective)
    logged_curve = Counter((int(m.step), _key(m.value)) for m in history)
    missing = stored_curve - logged_curve
    extra = logged_curve - stored_curve
    if missing:
        problems.append(f"trial {number}: intermediate values missing in MLflow: {_pairs(missing)}")
    # Besides the curve, the history may hold the final value once (logged at the end).
    final_once = final is not None and _finite(final) and sum(extra.values()) == 1
    if extra and not (final_once and next(iter(extra))[1] == _key(final)):
        problems.append(
            f"trial {number}: MLflow's {objective} history has values the store has not: "
            f"{_pairs(extra)}"
        )
    return problems


def _search(client: Any, experiment_id: str, condition: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], condition, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _state_name(trial: Any) -> str:
    name = str(trial.state.name)
    return "FAIL (cancelled)" if trial.user_attrs.get(CANCELLED_ATTR) else name


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _key(value: float) -> float:
    return round(float(value), 9)


def _pairs(points: Counter[tuple[int, float]]) -> str:
    shown = (f"step {s}={v:g}" + (f" x{n}" if n > 1 else "") for (s, v), n in points.items())
    return ", ".join(shown)
