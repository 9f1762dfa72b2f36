"""What each write of the MLflow mirror does, as MLflow calls (the writer thread's side).

:class:`~tuner.tracking.MlflowTracker` turns the study's events into ordered writes
(:class:`~tuner.writer.Op`); this class applies them with ``MlflowClient`` and explicit run ids:
the parent run, the child runs (made ahead of need, or on demand), batched metrics, the end of
each run, the parent's progress and end-of-study artifacts, and the convergence to the store.
Only the writer thread runs these methods, and only they touch :class:`_State`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner import failpoints
from tuner.mirror import POOL_STATE, Mirror, Repair, converge
from tuner.records import TrialState
from tuner.writer import Op, short

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

_log = logging.getLogger("tuner.tracking")

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""The experiment tag with which MLflow 3's UI tells model training from GenAI experiments."""
MODEL_TRAINING = "custom_model_development"
"""The kind of a study's experiment: model training (runs), not GenAI (traces)."""
_BATCH_LIMIT = 1000
"""Metrics in one ``log_batch`` call (MLflow's own limit)."""


@dataclass
class _State:
    """What the writer thread knows; only it touches this."""

    experiment_id: str | None = None
    parent_run_id: str | None = None
    run_ids: dict[int, str] = field(default_factory=dict)
    last_step: dict[int, int] = field(default_factory=dict)
    last_rows: dict[int, dict[str, tuple[int, float]]] = field(default_factory=dict)
    """Per trial, each metric's last logged step and value: a final metric equal to it is
    not logged again at the same step."""


class MlflowWrites:
    """The writes of the MLflow mirror; :class:`~tuner.tracking.MlflowTracker` sets up what
    they share (the client, the state, the pool of runs made ahead of need)."""

    _client: MlflowClient
    _state: _State
    _lock: threading.Lock
    _metrics: dict[int, list[tuple[str, float, int, int]]]
    _pool: queue.SimpleQueue[str]
    _pool_ready: threading.Condition
    _pool_target: int
    _pooled: int
    _closing: bool
    _common_tags: dict[str, str]
    _objective: str
    _load_study: Callable[[], optuna.Study] | None
    _keep_run_id: Callable[[int | None, str], None]
    experiment_id: str | None

    def _fill_pool(self) -> None:
        state = self._state
        if self._closing or state.experiment_id is None or state.parent_run_id is None:
            return
        try:
            while self._pooled < self._pool_target:
                run = self._client.create_run(
                    state.experiment_id,
                    run_name="trial-pending",
                    tags={
                        **self._common_tags,
                        "mlflow.parentRunId": state.parent_run_id,
                        "tuner.state": POOL_STATE,
                    },
                )
                self._pool.put(run.info.run_id)
                self._pooled += 1
                with self._pool_ready:
                    self._pool_ready.notify_all()
        except Exception as exc:
            _log.info("could not create a child run ahead of need: %s", short(exc))

    # --- applying ops (the writer thread) ----------------------------------------------------

    def _apply(self, op: Op) -> None:
        getattr(self, f"_apply_{op.kind}")(op.data)

    def _apply_known_runs(self, data: dict[str, Any]) -> None:
        self._state.run_ids.update({int(n): r for n, r in data["runs"].items()})

    def _apply_open_parent(self, data: dict[str, Any]) -> None:
        from mlflow.entities import Param

        state = self._state
        client = self._client
        if state.experiment_id is None:
            found = client.get_experiment_by_name(data["experiment"])
            # MLflow 3 releases without the sidebar's view switch open the runs table (not the
            # GenAI view) for this kind, and ask for one when it is missing; see tuner.mlflow_ui.
            # An experiment the user gave another kind keeps it.
            if found is None:
                kind = {EXPERIMENT_KIND_TAG: MODEL_TRAINING}
                state.experiment_id = client.create_experiment(data["experiment"], tags=kind)
            else:
                state.experiment_id = found.experiment_id
                if EXPERIMENT_KIND_TAG not in found.tags:
                    client.set_experiment_tag(
                        state.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING
                    )
            self.experiment_id = state.experiment_id
        if state.parent_run_id is None and data.get("parent_run_id"):
            state.parent_run_id = data["parent_run_id"]
            if data.get("reopen", True):
                client.update_run(state.parent_run_id, status="RUNNING")
                # What an earlier, killed orchestrator left: ghost runs, unused pooled runs.
                self._converge(finished_only=True)
            return
        if state.parent_run_id is None:
            run = client.create_run(state.experiment_id, run_name=data["name"], tags=data["tags"])
            state.parent_run_id = run.info.run_id
            self._keep(None, state.parent_run_id)
        params = [Param(k, str(v)) for k, v in data["params"].items()]
        client.log_batch(state.parent_run_id, params=params)
        if data.get("spec"):
            client.log_text(state.parent_run_id, data["spec"], "spec.yaml")

    def _children(self, condition: str, limit: int) -> list[Any]:
        """Child runs of the study's parent run that meet ``condition`` (MLflow search)."""
        state = self._state
        assert state.experiment_id is not None
        found: list[Any] = self._client.search_runs(
            [state.experiment_id],
            f"tags.`mlflow.parentRunId` = '{state.parent_run_id}' and {condition}",
            max_results=limit,
        )
        return found

    def _apply_open_child(self, data: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        state = self._state
        number = int(data["number"])
        name = f"trial-{number:04d}"
        tags = {**data["tags"], "tuner.trial": str(number), "tuner.state": "RUNNING"}
        run_id = state.run_ids.get(number)
        if run_id is None and data.get("run_id"):
            run_id = data["run_id"]  # claimed from the pool; the store has kept its id
            self._pooled -= 1
            tags["mlflow.runName"] = name
            state.run_ids[number] = run_id
        if run_id is None:
            assert state.experiment_id is not None
            # Only a retried create may have happened already (its answer lost on the way).
            run_id = (
                self._find_child(number) if data.get("retried") else None
            ) or self._client.create_run(
                state.experiment_id,
                start_time=data.get("started"),
                run_name=name,
                tags={**tags, "mlflow.parentRunId": state.parent_run_id or ""},
            ).info.run_id
        if number not in state.run_ids:
            state.run_ids[number] = run_id
            self._keep(number, run_id)
        self._client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in data["params"].items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def _find_child(self, number: int) -> str | None:
        """A child run of this trial that exists already (a create whose answer was lost)."""
        found = self._children(f"tags.`tuner.trial` = '{number}'", 1)
        return str(found[0].info.run_id) if found else None

    def _apply_metrics(self, data: dict[str, Any]) -> None:
        # Metrics coalesce, so this op can come before the open_child of a trial that started
        # after it was queued: such rows go back to the buffer, for that trial's close_child.
        unknown = {n: rows for n, rows in data["runs"].items() if int(n) not in self._state.run_ids}
        if unknown:
            data["runs"] = {n: r for n, r in data["runs"].items() if n not in unknown}
            with self._lock:
                for n, rows in unknown.items():
                    self._metrics[int(n)] = [*map(tuple, rows), *self._metrics.get(int(n), [])]
        for number, rows in data["runs"].items():
            self._log_rows(int(number), rows)

    def _log_rows(self, number: int, rows: list[Any]) -> None:
        from mlflow.entities import Metric

        run_id = self._state.run_ids[number]
        steps = self._state.last_step
        steps[number] = max([steps.get(number, 0), *(int(r[3]) for r in rows)])
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in rows if _finite(v)]
        self._remember(number, metrics)
        for start in range(0, len(metrics), _BATCH_LIMIT):
            self._client.log_batch(run_id, metrics=metrics[start : start + _BATCH_LIMIT])

    def _remember(self, number: int, metrics: list[Any]) -> dict[str, tuple[int, float]]:
        """Keeps each metric's last step and value of trial ``number``; returns them all."""
        last = self._state.last_rows.setdefault(number, {})
        for metric in metrics:
            if metric.key not in last or metric.step >= last[metric.key][0]:
                last[metric.key] = (metric.step, metric.value)
        return last

    def _apply_close_child(self, data: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        number = int(data["number"])
        run_id = self._state.run_ids.get(number)
        if run_id is None:
            return
        if "rows" not in data:
            with self._lock:
                data["rows"] = self._metrics.pop(number, [])
        rows = data["rows"]
        steps = self._state.last_step
        step = max([steps.get(number, 0), *(int(r[3]) for r in rows)])
        steps[number] = step
        # The trial's last intermediate metrics, its final ones and its tags: one call. A final
        # metric its curve already ends with, at the same step, is not logged twice.
        metrics = [Metric(k, v, ts, s) for k, v, ts, s in rows if _finite(v)]
        last = self._remember(number, metrics)
        self._state.last_rows.pop(number, None)
        metrics += [
            Metric(k, float(v), data["end"], step)
            for k, v in data["metrics"].items()
            if _finite(v) and last.get(k) != (step, float(v))
        ]
        tags = [RunTag(k, v) for k, v in data["tags"].items()]
        for start in range(0, max(1, len(metrics)), _BATCH_LIMIT):
            chunk = metrics[start : start + _BATCH_LIMIT]
            self._client.log_batch(run_id, metrics=chunk, tags=tags if start == 0 else [])
        failpoints.hit("mlflow.batch")
        if data.get("traceback"):
            self._client.log_text(run_id, data["traceback"], "error.txt")
        if data.get("log"):
            self._client.log_text(run_id, data["log"], "logs/trial.log")
        self._client.set_terminated(run_id, data["status"], data["end"])

    def _apply_progress(self, data: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        summary = data.get("summary")
        state = self._state
        if summary is None or state.parent_run_id is None:
            return
        stamp, step = summary["stamp"], summary["finished"]
        metrics = [
            Metric(f"trials_{name.lower()}", float(n), stamp, step)
            for name, n in summary["counts"].items()
            if name != TrialState.WAITING.value
        ]
        tags: list[RunTag] = []
        best = summary.get("best")
        if summary.get("cost") is not None:
            metrics.append(Metric("tuner.cost_usd", summary["cost"], stamp, step))
        metrics.extend(Metric(k, v, stamp, step) for k, v in summary.get("totals", {}).items())
        if best is not None:
            metrics.append(Metric(f"best_{summary['metric']}", best["value"], stamp, step))
            tags.append(RunTag("tuner.best_trial", str(best["number"])))
            tags.extend(RunTag(f"best.{k}", str(v)[:5000]) for k, v in best["params"].items())
        self._client.log_batch(state.parent_run_id, metrics=metrics, tags=tags)

    def _apply_artifacts(self, data: dict[str, Any]) -> None:
        state = self._state
        if state.parent_run_id is None or self._load_study is None:
            return
        from tuner.plots import write_study_artifacts

        write_study_artifacts(self._client, state.parent_run_id, self._load_study())

    def _apply_pareto(self, data: dict[str, Any]) -> None:
        """Tags the runs of a multi-objective study's completed trials ``tuner.pareto``."""
        from mlflow.entities import RunTag

        from tuner.mirror import pareto_numbers
        from tuner.store import records

        if self._load_study is None:
            return
        study = self._load_study()
        trials = records(study)
        front = pareto_numbers(study, trials)
        if front is None:
            return
        for record in trials:
            run_id = self._state.run_ids.get(record.number)
            if run_id is not None and record.state is TrialState.COMPLETE:
                tag = RunTag("tuner.pareto", str(record.number in front).lower())
                self._client.log_batch(run_id, tags=[tag])

    def _apply_close_parent(self, data: dict[str, Any]) -> None:
        state = self._state
        if state.parent_run_id is None:
            return
        self._client.set_tag(state.parent_run_id, "tuner.stop_reason", data["stop_reason"])
        self._client.set_terminated(state.parent_run_id, data["status"])

    def _apply_converge(self, data: dict[str, Any]) -> None:
        data["repairs"] = self._converge(deep=bool(data.get("deep")))

    def _converge(self, *, finished_only: bool = False, deep: bool = False) -> list[Repair]:
        state = self._state
        if state.experiment_id is None or state.parent_run_id is None or not self._load_study:
            return []
        study = self._load_study()
        mirror = Mirror(self._client, state.experiment_id, state.parent_run_id, self._common_tags)

        def keep(number: int, run_id: str) -> None:
            state.run_ids[number] = run_id
            self._keep(number, run_id)

        repairs = converge(
            mirror, study, self._objective, keep_run_id=keep, finished_only=finished_only, deep=deep
        )
        for repair in repairs:
            _log.info("MLflow mirror repaired: %s", repair)
        return repairs

    def _apply_drain_pool(self, data: dict[str, Any]) -> None:
        while True:
            try:
                run_id = self._pool.get_nowait()
            except queue.Empty:
                return
            self._pooled -= 1
            self._client.delete_run(run_id)

    def _keep(self, number: int | None, run_id: str) -> None:
        """Hands a new run id to the study; a failure there must not repeat the MLflow write."""
        try:
            self._keep_run_id(number, run_id)
        except Exception:
            _log.warning("could not store MLflow run id %s of trial %s", run_id, number)


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _now_ms() -> int:
    return int(time.time() * 1000)
