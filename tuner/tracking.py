"""Study listeners, and the MLflow mirror: a parent run per study, a nested child run per trial.

Everything is written through ``MlflowClient`` with explicit run ids (never MLflow's global
fluent API) by one background thread, so the study loop never waits on the tracking server.

Nothing is lost when the server is away: a write that fails goes to a backlog, and every later
write queues behind it (so a run's writes keep their order); the backlog is retried until the
server answers. What is still unwritten when the study ends is saved to the study's folder
(``mlflow-pending.jsonl``) and written by ``tuner sync`` or the next ``tuner resume``. Run ids
are kept in the study store as soon as MLflow hands them out, so a resumed study writes into the
runs it already has.

To let code inside a trial log into its own run (``mlflow.log_metric``, ``mlflow.autolog()``),
the writer keeps a few child runs created ahead of need; a starting trial takes one, and its
``MLFLOW_RUN_ID`` is in the trial's environment from its first line.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import failpoints
from tuner.events import Listener, StudyStart
from tuner.records import StopReason, StudySummary, TrialRecord, TrialState
from tuner.sync import POOL_STATE, RUN_STATUS, Mirror, Repair, converge

if TYPE_CHECKING:
    import optuna

    from tuner.spec import MlflowTracking, StudySpec

_log = logging.getLogger(__name__)

PENDING_FILE = "mlflow-pending.jsonl"
"""Writes that could not reach MLflow before the study ended, one JSON object a line."""
_BATCH_LIMIT = 1000
"""Metrics in one ``log_batch`` call (MLflow's own limit)."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
PROGRESS_INTERVAL = 1.0
"""Seconds between updates of the parent run's counts and best trial."""
RETRY_INTERVAL = 5.0
"""Seconds between attempts to write the backlog while the tracking server is away."""
FLUSH_TIMEOUT = 30.0
"""Seconds the tracker keeps trying at the end of a study before it saves the backlog."""


RunIdSink = Callable[[int | None, str], None]
"""Keeps a run id: ``(trial number, run id)``, or ``(None, run id)`` for the parent run."""


@dataclass
class _Op:
    """One write, as data: it can wait in the backlog and be saved for ``tuner sync``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    """What the writer thread knows; only it touches this."""

    experiment_id: str | None = None
    parent_run_id: str | None = None
    run_ids: dict[int, str] = field(default_factory=dict)
    last_step: dict[int, int] = field(default_factory=dict)


class MlflowTracker(Listener):
    """Mirrors a study into MLflow from a background thread.

    Args:
        config: the ``tracking.mlflow`` section of the spec.
        keep_run_id: stores each run id as soon as it exists (the study passes its storage).
        study_dir: where unwritten writes are saved when the study ends (none: kept in memory).
        load_study: gives the optuna study for the end-of-study plots and trials table.
        runs_ahead: create child runs ahead of need, so each trial starts with its run id.
        retry_interval: seconds between attempts to write the backlog.
        flush_timeout: how long :meth:`close` keeps trying before it saves the backlog.

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
        study_dir: Path | None = None,
        load_study: Callable[[], optuna.Study] | None = None,
        retry_interval: float | None = None,
        flush_timeout: float | None = None,
        runs_ahead: bool = True,
    ):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(config.tracking_uri)
        self._config = config
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        self._keep_run_id = keep_run_id or (lambda number, run_id: None)
        self._study_dir = study_dir
        self._load_study = load_study
        self._retry_interval = RETRY_INTERVAL if retry_interval is None else retry_interval
        self._flush_timeout = FLUSH_TIMEOUT if flush_timeout is None else flush_timeout
        self._state = _State()
        self._common_tags: dict[str, str] = {}
        self._objective = ""
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._backlog: list[_Op] = []
        self._lock = threading.Lock()
        self._metrics: dict[int, list[tuple[str, float, int, int]]] = {}
        self._metrics_queued = False
        self._progress: StudySummary | None = None
        self._progress_at = 0.0
        self._progress_queued = False
        self._pool: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pool_target = 0
        self._runs_ahead = runs_ahead
        self._pooled = 0
        self._claimed: dict[int, str] = {}
        self._idle = threading.Condition()
        self._pool_ready = threading.Condition()
        self._busy = 0
        self._closing = False
        self.unwritten = 0
        """Writes saved for ``tuner sync`` when the tracker closed."""
        self.experiment_id: str | None = None
        """The study's experiment, once the writer has found or made it."""
        self._thread = threading.Thread(target=self._work, name="tuner-mlflow", daemon=True)
        self._thread.start()

    # --- events (the study loop's thread) --------------------------------------------------

    def study_started(self, start: StudyStart) -> None:
        spec = start.spec
        self._common_tags = _common_tags(start)
        self._objective = spec.objective.metric
        self._pool_target = spec.budget.max_concurrent + 2 if self._runs_ahead else 0
        known = {r.number: r.mlflow_run_id for r in start.trials if r.mlflow_run_id}
        self._submit(_Op("known_runs", {"runs": known}))
        self._submit(
            _Op(
                "open_parent",
                {
                    "experiment": self._config.experiment or spec.name,
                    "parent_run_id": start.mlflow_parent_run_id,
                    "name": spec.name,
                    "tags": {
                        **self._common_tags,
                        "tuner.objective": spec.objective.metric,
                        "tuner.direction": spec.objective.direction.value,
                    },
                    "params": {
                        "strategy": spec.strategy.type,
                        "engine": start.engine,
                        "seed": start.seed,
                        "objective": spec.objective.metric,
                        "direction": spec.objective.direction.value,
                        **{f"budget.{k}": v for k, v in spec.budget.model_dump().items()},
                    },
                    "spec": _shown_spec(spec),
                    "reopen": True,
                },
            )
        )
        self._replay_saved()
        self._wait_for_pool(spec.budget.max_concurrent)

    def attach(self, start: StudyStart) -> None:
        """Follows a study's runs without reopening them (``tuner sync``)."""
        spec = start.spec
        self._common_tags = _common_tags(start)
        self._objective = spec.objective.metric
        known = {r.number: r.mlflow_run_id for r in start.trials if r.mlflow_run_id}
        self._submit(_Op("known_runs", {"runs": known}))
        self._submit(
            _Op(
                "open_parent",
                {
                    "experiment": self._config.experiment or spec.name,
                    "parent_run_id": start.mlflow_parent_run_id,
                    "name": spec.name,
                    "tags": self._common_tags,
                    "params": {},
                    "spec": None,
                    "reopen": False,
                },
            )
        )
        self._replay_saved()

    def _wait_for_pool(self, count: int, timeout: float = 15.0) -> None:
        """Waits (once, at the start) until the first trials can each have a run ready."""
        deadline = time.monotonic() + timeout
        count = min(count, self._pool_target)
        with self._pool_ready:
            while self._pool.qsize() < count and not self._backlog:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _log.warning("MLflow is slow to answer; the first trials start without runs")
                    return
                self._pool_ready.wait(remaining)

    def trial_environment(self, number: int) -> Mapping[str, str]:
        """``MLFLOW_TRACKING_URI``, the study's ``MLFLOW_EXPERIMENT_ID`` and, when a run is
        ready, the trial's ``MLFLOW_RUN_ID``.

        The run's id is kept in the store before the trial starts, so whatever the trial logs
        into it is found again after a crash.
        """
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        if self.experiment_id is not None:
            env["MLFLOW_EXPERIMENT_ID"] = self.experiment_id
        try:
            run_id = self._pool.get_nowait()
        except queue.Empty:
            return env  # the server is slow or away: the trial's run is created when it can be
        failpoints.hit("mlflow.claimed")
        self._keep(number, run_id)
        self._claimed[number] = run_id
        env["MLFLOW_RUN_ID"] = run_id
        return env

    def trial_started(self, record: TrialRecord) -> None:
        self._submit(
            _Op(
                "open_child",
                {
                    "number": record.number,
                    "run_id": self._claimed.pop(record.number, None),
                    "started": int(record.started.timestamp() * 1000) if record.started else None,
                    "params": {k: str(v) for k, v in record.params.items()},
                    "tags": self._common_tags,
                },
            )
        )

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        stamp = _now_ms()
        with self._lock:
            buffer = self._metrics.setdefault(number, [])
            buffer.extend((k, float(v), stamp, step) for k, v in metrics.items())
            if self._metrics_queued:
                return
            self._metrics_queued = True
        self._submit(_Op("metrics"))

    def trial_finished(self, record: TrialRecord) -> None:
        self.trial_reported_flush()
        end = int(record.finished.timestamp() * 1000) if record.finished else _now_ms()
        tags = {"tuner.state": record.state.value, "tuner.attempts": str(record.attempts)}
        metrics = dict(record.metrics)
        if record.duration is not None:
            # A run made ahead of need started before its trial: this is the trial's own time.
            metrics["tuner.seconds"] = record.duration
        if record.node:
            tags["tuner.node"] = record.node
        if record.cost is not None:
            metrics["tuner.cost_usd"] = record.cost
        for key, value in record.details.items():
            if isinstance(value, str):
                tags[key] = value[:5000]
            else:
                metrics[key] = float(value)
        if record.error:
            tags["tuner.error"] = record.error[:5000]
        self._submit(
            _Op(
                "close_child",
                {
                    "number": record.number,
                    "metrics": metrics,
                    "tags": tags,
                    "traceback": record.traceback,
                    "log": record.log,
                    "status": RUN_STATUS.get(record.state, "FINISHED"),
                    "end": end,
                },
            )
        )

    def trial_reported_flush(self) -> None:
        """Queues buffered intermediate metrics ahead of what comes next."""
        with self._lock:
            if not self._metrics or self._metrics_queued:
                return
            self._metrics_queued = True
        self._submit(_Op("metrics"))

    def study_progress(self, summary: StudySummary) -> None:
        """Updates the parent run with counts and the best trial so far.

        Updates coalesce: while one is waiting to be written, a newer summary replaces it, and
        one is written at most every ``PROGRESS_INTERVAL`` seconds (the last one always).
        """
        now = time.monotonic()
        with self._lock:
            self._progress = summary
            if self._progress_queued or now - self._progress_at < PROGRESS_INTERVAL:
                return
            self._progress_queued = True
            self._progress_at = now
        self._submit(_Op("progress"))

    def study_finished(self, summary: StudySummary) -> None:
        self._progress_at = 0.0
        self._progress_queued = False
        self.study_progress(summary)
        reason = summary.stop_reason
        self._submit(_Op("artifacts"))
        self._submit(
            _Op(
                "close_parent",
                {
                    "stop_reason": str(reason and reason.value),
                    "status": "KILLED" if reason is StopReason.INTERRUPTED else "FINISHED",
                },
            )
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every write so far is done (or in the backlog); says whether it is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._busy or not self._queue.empty():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining if remaining is not None else 0.5)
        return not self._backlog

    def close(self) -> None:
        """Writes what it can, makes the runs equal the store, stops; see :meth:`shutdown`."""
        self.shutdown()

    def shutdown(self, *, converge: bool = True, deep: bool = False) -> list[Repair]:
        """Writes what it can within ``flush_timeout``, saves the rest, stops the thread.

        Args:
            converge: once everything is written, make the runs equal the store
                (:func:`tuner.sync.converge`).
            deep: check the intermediate values of every run, not only of runs found wrong.

        Returns:
            What the convergence repaired (nothing when every write went through).
        """
        self._pool_target = 0
        self._submit(_Op("drain_pool"))
        deadline = time.monotonic() + self._flush_timeout
        self.flush(self._flush_timeout)
        while self._backlog and time.monotonic() < deadline:
            self._submit(_Op("retry"))
            self.flush(max(0.0, deadline - time.monotonic()))
            if self._backlog:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        repairs: list[Repair] = []
        if converge and not self._backlog and self._load_study is not None:
            op = _Op("converge", {"deep": deep})
            self._submit(op)
            self.flush(max(self._flush_timeout, deadline - time.monotonic()))
            repairs = op.data.pop("repairs", [])
        self._closing = True
        self._queue.put(None)
        self._thread.join()
        self._save_backlog()
        return repairs

    # --- the writer thread -------------------------------------------------------------------

    def _submit(self, op: _Op) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(op)

    def _work(self) -> None:
        last_try = 0.0
        while True:
            timeout = self._retry_interval if self._backlog else 0.2
            try:
                op = self._queue.get(timeout=timeout)
            except queue.Empty:
                op = _Op("idle")
            if op is None:
                return
            try:
                if op.kind == "retry" or (
                    op.kind == "idle"
                    and self._backlog
                    and time.monotonic() - last_try > self._retry_interval
                ):
                    last_try = time.monotonic()
                    self._write_backlog()
                elif op.kind != "idle":
                    self._take(op)
                    if self._backlog:
                        op.data["retried"] = True
                        self._backlog.append(op)
                    else:
                        self._try(op)
                if not self._backlog and op.kind in (
                    "idle",
                    "open_parent",
                    "open_child",
                    "drain_pool",
                ):
                    self._fill_pool()
            finally:
                if op.kind != "idle":
                    with self._idle:
                        self._busy -= 1
                        self._idle.notify_all()

    def _take(self, op: _Op) -> None:
        """Moves buffered data into a coalescing op, so a retry re-sends exactly the same."""
        if op.kind == "metrics" and "runs" not in op.data:
            with self._lock:
                taken, self._metrics = self._metrics, {}
                self._metrics_queued = False
            op.data["runs"] = {str(n): rows for n, rows in taken.items()}
        elif op.kind == "progress" and "summary" not in op.data:
            with self._lock:
                summary, self._progress = self._progress, None
                self._progress_queued = False
            op.data["summary"] = _summary_data(summary) if summary else None

    def _try(self, op: _Op) -> bool:
        try:
            self._apply(op)
            return True
        except Exception as exc:  # the tracking server is a mirror: never stop the study
            _log.warning("MLflow write failed (%s); kept to retry: %s", op.kind, _short(exc))
            op.data["retried"] = True
            self._backlog.append(op)
            with self._pool_ready:
                self._pool_ready.notify_all()
            return False

    def _write_backlog(self) -> None:
        while self._backlog:
            op = self._backlog[0]
            try:
                self._apply(op)
            except Exception as exc:
                _log.info("MLflow still unreachable (%s): %s", op.kind, _short(exc))
                return
            self._backlog.pop(0)
        _log.warning("MLflow is reachable again; the backlog is written")

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
            _log.info("could not create a child run ahead of need: %s", _short(exc))

    # --- applying ops (the writer thread) ----------------------------------------------------

    def _apply(self, op: _Op) -> None:
        getattr(self, f"_apply_{op.kind}")(op.data)

    def _apply_known_runs(self, data: dict[str, Any]) -> None:
        self._state.run_ids.update({int(n): r for n, r in data["runs"].items()})

    def _apply_open_parent(self, data: dict[str, Any]) -> None:
        from mlflow.entities import Param

        state = self._state
        client = self._client
        if state.experiment_id is None:
            found = client.get_experiment_by_name(data["experiment"])
            if found is None:
                # Tells MLflow 3's UI to open on the runs table, not its GenAI overview.
                kind = {EXPERIMENT_KIND_TAG: "custom_model_development"}
                state.experiment_id = client.create_experiment(data["experiment"], tags=kind)
            else:
                state.experiment_id = found.experiment_id
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
        for start in range(0, len(metrics), _BATCH_LIMIT):
            self._client.log_batch(run_id, metrics=metrics[start : start + _BATCH_LIMIT])

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
        # The trial's last intermediate metrics, its final ones and its tags: one call.
        metrics = [Metric(k, v, ts, s) for k, v, ts, s in rows if _finite(v)] + [
            Metric(k, float(v), data["end"], step) for k, v in data["metrics"].items() if _finite(v)
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

    def _apply_retry(self, data: dict[str, Any]) -> None:
        return None  # handled in _work; kept so a saved "retry" op is harmless

    # --- saving and replaying what could not be written ------------------------------------

    def _save_backlog(self) -> None:
        if not self._backlog:
            return
        self.unwritten = len(self._backlog)
        if self._study_dir is None:
            _log.error("%d MLflow writes were lost (no study folder to keep them)", self.unwritten)
            return
        path = self._study_dir / PENDING_FILE
        with path.open("a", encoding="utf-8") as out:
            for op in self._backlog:
                out.write(json.dumps({"kind": op.kind, "data": op.data}, default=str) + "\n")
        _log.warning(
            "MLflow was unreachable: %d writes are kept in %s; `tuner sync` writes them",
            self.unwritten,
            path,
        )

    def _replay_saved(self) -> None:
        if self._study_dir is None:
            return
        path = self._study_dir / PENDING_FILE
        if not path.exists():
            return
        saved = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.unlink()
        for item in saved:
            if item["kind"] not in ("open_parent", "known_runs", "drain_pool", "retry"):
                self._submit(_Op(item["kind"], item["data"]))

    def _keep(self, number: int | None, run_id: str) -> None:
        """Hands a new run id to the study; a failure there must not repeat the MLflow write."""
        try:
            self._keep_run_id(number, run_id)
        except Exception:
            _log.warning("could not store MLflow run id %s of trial %s", run_id, number)


def _common_tags(start: StudyStart) -> dict[str, str]:
    """Tags of every run of the study."""
    return {
        "tuner.study": start.spec.name,
        "tuner.strategy": start.spec.strategy.type,
        "tuner.engine": start.engine,
        "tuner.backend": start.backend,
    }


def _shown_spec(spec: StudySpec) -> str:
    """The spec as logged with the study's run: secret-looking values masked."""
    return spec.to_yaml(redact=True)


def _summary_data(summary: StudySummary) -> dict[str, Any]:
    best = summary.best
    return {
        "stamp": _now_ms(),
        "finished": summary.finished,
        "metric": summary.metric,
        "counts": {s.value: n for s, n in summary.counts.items()},
        "cost": summary.cost,
        "totals": dict(summary.totals),
        "best": None
        if best is None or best.value is None
        else {"number": best.number, "value": best.value, "params": dict(best.params)},
    }


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, or MLflow's default (``MLFLOW_TRACKING_URI``, else ``./mlflow.db``), absolute."""
    import mlflow

    return uri or mlflow.get_tracking_uri()


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _now_ms() -> int:
    return int(time.time() * 1000)
