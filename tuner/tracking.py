"""Study listeners, and the MLflow mirror: a parent run per study, a nested child run per trial.

Everything is written through ``MlflowClient`` with explicit run ids (never MLflow's global
fluent API) by one background thread, so the study loop never waits on the tracking server.
Run ids are kept in the study's optuna storage as soon as MLflow hands them out; a resumed
study writes into the runs it already has.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tuner.records import StopReason, StudySummary, TrialRecord, TrialState

if TYPE_CHECKING:
    from tuner.spec import MlflowTracking, StudySpec

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyStart:
    """What listeners learn when a study (re)starts."""

    spec: StudySpec
    engine: str
    seed: int
    resumed: bool
    trials: tuple[TrialRecord, ...] = ()
    mlflow_parent_run_id: str | None = None
    backend: str = ""


class StudyListener(Protocol):
    """Receives the study's events, in order, from the study loop's thread."""

    def study_started(self, start: StudyStart) -> None:
        """The study is about to launch trials."""

    def trial_started(self, record: TrialRecord) -> None:
        """A trial was submitted to the backend."""

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        """A running trial reported intermediate metrics."""

    def trial_finished(self, record: TrialRecord) -> None:
        """A trial reached its final state (or was cancelled)."""

    def trial_retried(self, number: int, attempt: int, error: str) -> None:
        """A trial failed for a reason that allows a retry, and runs again."""

    def study_progress(self, summary: StudySummary) -> None:
        """Counts or the best trial changed."""

    def study_finished(self, summary: StudySummary) -> None:
        """The study stopped; ``summary.stop_reason`` says why."""

    def close(self) -> None:
        """Flushes what is pending; called once, last."""


class NullListener:
    """A listener that ignores everything; subclass it to handle only some events."""

    def study_started(self, start: StudyStart) -> None:
        return None

    def trial_started(self, record: TrialRecord) -> None:
        return None

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def trial_finished(self, record: TrialRecord) -> None:
        return None

    def trial_retried(self, number: int, attempt: int, error: str) -> None:
        return None

    def study_progress(self, summary: StudySummary) -> None:
        return None

    def study_finished(self, summary: StudySummary) -> None:
        return None

    def close(self) -> None:
        return None


RunIdSink = Callable[[int | None, str], None]
"""Keeps a run id: ``(trial number, run id)``, or ``(None, run id)`` for the parent run."""

_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "FINISHED",
    TrialState.FAILED: "FAILED",
    TrialState.CANCELLED: "KILLED",
}


@dataclass
class _WriterState:
    experiment_id: str | None = None
    parent_run_id: str | None = None
    run_ids: dict[int, str] = field(default_factory=dict)
    last_step: dict[int, int] = field(default_factory=dict)


class MlflowTracker(NullListener):
    """Mirrors a study into MLflow from a background thread.

    Args:
        config: the ``tracking.mlflow`` section of the spec.
        keep_run_id: stores each run id as soon as it exists (the study passes its storage).
        retries: attempts per write before it is given up with a warning.

    Example:
        >>> from tuner.spec import MlflowTracking
        >>> tracker = MlflowTracker(MlflowTracking(tracking_uri="sqlite:///mlflow.db"))
        >>> tracker.close()
    """

    def __init__(
        self,
        config: MlflowTracking,
        keep_run_id: RunIdSink | None = None,
        *,
        retries: int = 5,
    ):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(config.tracking_uri)
        self._config = config
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        self._keep_run_id = keep_run_id or (lambda number, run_id: None)
        self._retries = retries
        self._state = _WriterState()
        self._common_tags: dict[str, str] = {}
        self._progress_lock = threading.Lock()
        self._latest_progress: StudySummary | None = None
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="tuner-mlflow", daemon=True)
        self._thread.start()
        self.failed_writes = 0

    # --- the writer thread ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._run(job)
            finally:
                self._queue.task_done()

    def _run(self, job: Callable[[], None]) -> None:
        delay = 0.2
        for attempt in range(1, self._retries + 1):
            try:
                job()
                return
            except Exception as exc:  # the tracking server is a mirror: never stop the study
                if attempt == self._retries:
                    self.failed_writes += 1
                    _log.warning("MLflow write failed %d times, giving up: %s", attempt, exc)
                    return
                _log.info("MLflow write failed (attempt %d), retrying: %s", attempt, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _keep(self, number: int | None, run_id: str) -> None:
        """Hands a new run id to the study; a failure there must not repeat the MLflow write."""
        try:
            self._keep_run_id(number, run_id)
        except Exception:
            _log.warning(
                "could not store MLflow run id %s of trial %s", run_id, number, exc_info=True
            )

    def _submit(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def flush(self) -> None:
        """Waits until everything submitted so far is written (or given up)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    # --- events --------------------------------------------------------------------------

    def study_started(self, start: StudyStart) -> None:
        state = self._state
        known = {r.number: r.mlflow_run_id for r in start.trials if r.mlflow_run_id}
        spec = start.spec
        experiment = self._config.experiment or spec.name
        self._common_tags = {
            "tuner.study": spec.name,
            "tuner.strategy": spec.strategy.type,
            "tuner.engine": start.engine,
            "tuner.backend": start.backend,
        }
        common = self._common_tags

        def open_parent() -> None:
            state.run_ids.update(known)
            found = self._client.get_experiment_by_name(experiment)
            if found is None:
                state.experiment_id = self._client.create_experiment(experiment)
            else:
                state.experiment_id = found.experiment_id
            if start.mlflow_parent_run_id:
                state.parent_run_id = start.mlflow_parent_run_id
                self._client.update_run(state.parent_run_id, status="RUNNING")
                return
            run = self._client.create_run(
                state.experiment_id,
                run_name=spec.name,
                tags={
                    **common,
                    "tuner.objective": spec.objective.metric,
                    "tuner.direction": spec.objective.direction.value,
                },
            )
            state.parent_run_id = run.info.run_id
            self._keep(None, state.parent_run_id)

        def log_study() -> None:
            from mlflow.entities import Param

            if state.parent_run_id is None or start.mlflow_parent_run_id:
                return
            params = {
                "strategy": spec.strategy.type,
                "engine": start.engine,
                "seed": start.seed,
                "objective": spec.objective.metric,
                "direction": spec.objective.direction.value,
                **{f"budget.{k}": v for k, v in spec.budget.model_dump().items()},
            }
            self._client.log_batch(
                state.parent_run_id, params=[Param(k, str(v)) for k, v in params.items()]
            )
            self._client.log_text(state.parent_run_id, spec.to_yaml(), "spec.yaml")

        self._submit(open_parent)
        self._submit(log_study)

    def trial_started(self, record: TrialRecord) -> None:
        state = self._state
        common = self._common_tags

        def create_child() -> None:
            if record.number in state.run_ids or state.experiment_id is None:
                return
            run = self._client.create_run(
                state.experiment_id,
                run_name=f"trial-{record.number:04d}",
                tags={
                    **common,
                    "mlflow.parentRunId": state.parent_run_id or "",
                    "tuner.trial": str(record.number),
                    "tuner.state": TrialState.RUNNING.value,
                },
            )
            state.run_ids[record.number] = run.info.run_id
            self._keep(record.number, run.info.run_id)

        def log_params() -> None:
            from mlflow.entities import Param

            run_id = state.run_ids.get(record.number)
            if run_id is not None:
                params = [Param(k, str(v)) for k, v in record.params.items()]
                self._client.log_batch(run_id, params=params)

        self._submit(create_child)
        self._submit(log_params)

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        state = self._state
        stamp = _now_ms()

        def log_metrics() -> None:
            from mlflow.entities import Metric

            run_id = state.run_ids.get(number)
            if run_id is None:
                return
            state.last_step[number] = max(step, state.last_step.get(number, 0))
            self._client.log_batch(
                run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()]
            )

        self._submit(log_metrics)

    def trial_finished(self, record: TrialRecord) -> None:
        state = self._state
        stamp = _now_ms()
        end = int(record.finished.timestamp() * 1000) if record.finished else stamp

        def close_child() -> None:
            from mlflow.entities import Metric, RunTag

            run_id = state.run_ids.get(record.number)
            if run_id is None:
                return
            step = state.last_step.get(record.number, 0)
            tags = {"tuner.state": record.state.value, "tuner.attempts": str(record.attempts)}
            if record.node:
                tags["tuner.node"] = record.node
            if record.error:
                tags["tuner.error"] = record.error[:5000]
            self._client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), stamp, step) for k, v in record.metrics.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            if record.traceback:
                self._client.log_text(run_id, record.traceback, "error.txt")
            if record.log:
                self._client.log_text(run_id, record.log, "logs/trial.log")
            self._client.set_terminated(run_id, _STATUS.get(record.state, "FINISHED"), end)

        self._submit(close_child)

    def study_progress(self, summary: StudySummary) -> None:
        """Updates the parent run with counts and the best trial so far.

        Updates coalesce: while one is waiting to be written, a newer summary replaces it.
        """
        with self._progress_lock:
            pending = self._latest_progress is not None
            self._latest_progress = summary
        if not pending:
            self._submit(self._write_progress)

    def _write_progress(self) -> None:
        from mlflow.entities import Metric, RunTag

        with self._progress_lock:
            summary, self._latest_progress = self._latest_progress, None
        state = self._state
        if summary is None or state.parent_run_id is None:
            return
        stamp = _now_ms()
        step = summary.finished
        metrics = [
            Metric(f"trials_{s.value.lower()}", float(n), stamp, step)
            for s, n in summary.counts.items()
            if s is not TrialState.WAITING
        ]
        tags: list[RunTag] = []
        if summary.best is not None and summary.best.value is not None:
            metrics.append(Metric(f"best_{summary.metric}", summary.best.value, stamp, step))
            tags.append(RunTag("tuner.best_trial", str(summary.best.number)))
            tags.extend(RunTag(f"best.{k}", str(v)[:5000]) for k, v in summary.best.params.items())
        self._client.log_batch(state.parent_run_id, metrics=metrics, tags=tags)

    def study_finished(self, summary: StudySummary) -> None:
        state = self._state
        self.study_progress(summary)

        def close_parent() -> None:
            if state.parent_run_id is None:
                return
            reason = summary.stop_reason
            self._client.set_tag(
                state.parent_run_id, "tuner.stop_reason", str(reason and reason.value)
            )
            status = "KILLED" if reason is StopReason.INTERRUPTED else "FINISHED"
            self._client.set_terminated(state.parent_run_id, status)

        self._submit(close_parent)


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, or MLflow's default (``MLFLOW_TRACKING_URI``, else ``./mlflow.db``), absolute."""
    import mlflow

    return uri or mlflow.get_tracking_uri()


def _now_ms() -> int:
    return int(time.time() * 1000)
