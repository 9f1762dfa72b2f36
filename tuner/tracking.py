"""The MLflow mirror: a parent run per study, a nested child run per trial.

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

One job, turning the study's events into ordered writes on the loop's thread: the runs made
ahead of need that the trials claim, metric batching and progress coalescing; the writes
themselves are :mod:`tuner.mlflow_writes`, their order and backlog :mod:`tuner.writer`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import failpoints
from tuner.events import Listener, StudyStart
from tuner.mirror import Repair
from tuner.mlflow_writes import MlflowWrites, _State
from tuner.records import MLFLOW_STATUS, StopReason, StudySummary, TrialRecord
from tuner.writer import Op, OrderedWriter, load_ops, save_ops

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

    from tuner.spec import MlflowTracking, StudySpec

_log = logging.getLogger(__name__)

PENDING_FILE = "mlflow-pending.jsonl"
"""Writes that could not reach MLflow before the study ended, one JSON object a line."""
_BATCH_LIMIT = 1000
"""Metrics in one ``log_batch`` call (MLflow's own limit)."""
PROGRESS_INTERVAL = 1.0
"""Seconds between updates of the parent run's counts and best trial."""
RETRY_INTERVAL = 5.0
"""Seconds between attempts to write the backlog while the tracking server is away."""
FLUSH_TIMEOUT = 30.0
"""Seconds the tracker keeps trying at the end of a study before it saves the backlog."""


RunIdSink = Callable[[int | None, str], None]
"""Keeps a run id: ``(trial number, run id)``, or ``(None, run id)`` for the parent run."""


class MlflowTracker(MlflowWrites, Listener):
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
        self.tracking_uri = resolve_tracking_uri(config.tracking_uri)
        self._config = config
        self._client = quiet_client(self.tracking_uri)
        self._keep_run_id = keep_run_id or (lambda number, run_id: None)
        self._study_dir = study_dir
        self._load_study = load_study
        self._retry_interval = RETRY_INTERVAL if retry_interval is None else retry_interval
        self._flush_timeout = FLUSH_TIMEOUT if flush_timeout is None else flush_timeout
        self._state = _State()
        self._common_tags: dict[str, str] = {}
        self._objective = ""
        self._finished = False
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
        self._pool_ready = threading.Condition()
        self._closing = False
        self.unwritten = 0
        """Writes saved for ``tuner sync`` when the tracker closed."""
        self.experiment_id: str | None = None
        """The study's experiment, once the writer has found or made it."""
        self._writer = OrderedWriter(
            self._apply,
            take=self._take,
            after=self._after,
            failed=self._wake_pool_waiters,
            retry_interval=self._retry_interval,
            name="tuner-mlflow",
        )

    # --- events (the study loop's thread) --------------------------------------------------

    def study_started(self, start: StudyStart) -> None:
        spec = start.spec
        self._pool_target = spec.budget.max_concurrent + 2 if self._runs_ahead else 0
        self._open(start, reopen=True)
        self._wait_for_pool(spec.budget.max_concurrent)

    def attach(self, start: StudyStart) -> None:
        """Follows a study's runs without reopening them (``tuner sync``)."""
        self._open(start, reopen=False)

    def _open(self, start: StudyStart, *, reopen: bool) -> None:
        """Finds or makes the study's parent run, and writes what an earlier run saved."""
        spec = start.spec
        self._common_tags = _common_tags(start)
        self._objective = spec.primary.metric
        known = {r.number: r.mlflow_run_id for r in start.trials if r.mlflow_run_id}
        self._submit(Op("known_runs", {"runs": known}))
        parent: dict[str, Any] = {
            "experiment": self._config.experiment or spec.name,
            "parent_run_id": start.mlflow_parent_run_id,
            "name": spec.name,
            "tags": self._common_tags,
            "params": {},
            "spec": None,
            "reopen": reopen,
        }
        if reopen:  # a run of the study: its settings on the parent run
            metrics = ",".join(o.metric for o in spec.objectives)
            directions = ",".join(o.direction.value for o in spec.objectives)
            parent["tags"] = {
                **self._common_tags,
                "tuner.objective": metrics,
                "tuner.direction": directions,
            }
            parent["params"] = {
                "strategy": spec.strategy.type,
                "engine": start.engine,
                "seed": start.seed,
                "objective": metrics,
                "direction": directions,
                **(
                    {"constraints": "; ".join(map(str, spec.constraints))}
                    if spec.constraints
                    else {}
                ),
                **{f"budget.{k}": v for k, v in spec.budget.model_dump().items()},
            }
            parent["spec"] = _shown_spec(spec)
        self._submit(Op("open_parent", parent))
        self._replay_saved()

    def _wait_for_pool(self, count: int, timeout: float = 15.0) -> None:
        """Waits (once, at the start) until the first trials can each have a run ready."""
        deadline = time.monotonic() + timeout
        count = min(count, self._pool_target)
        with self._pool_ready:
            while self._pool.qsize() < count and not self._writer.backlogged:
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
            Op(
                "open_child",
                {
                    "number": record.number,
                    "run_id": self._claimed.pop(record.number, None),
                    "started": int(record.started.timestamp() * 1000) if record.started else None,
                    "params": {k: str(v) for k, v in record.params.items()},
                    # The study's tuner.engine (`auto`) becomes the one that proposed the trial.
                    "tags": self._common_tags | _engine_tag(record),
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
        self._submit(Op("metrics"))

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
        if record.infeasible:
            tags["tuner.infeasible"] = record.infeasible[:5000]
        if record.seed_trial is not None:
            tags["tuner.seed_trial"] = str(record.seed_trial)
        self._submit(
            Op(
                "close_child",
                {
                    "number": record.number,
                    "metrics": metrics,
                    "tags": tags,
                    "traceback": record.traceback,
                    "log": record.log,
                    "status": MLFLOW_STATUS.get(record.state, "FINISHED"),
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
        self._submit(Op("metrics"))

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
        self._submit(Op("progress"))

    def study_finished(self, summary: StudySummary) -> None:
        self._finished = True
        self._progress_at = 0.0
        self._progress_queued = False
        self.study_progress(summary)
        reason = summary.stop_reason
        self._submit(Op("pareto"))
        self._submit(Op("artifacts"))
        self._submit(
            Op(
                "close_parent",
                {
                    "stop_reason": str(reason and reason.value),
                    "status": "KILLED" if reason is StopReason.INTERRUPTED else "FINISHED",
                },
            )
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every write so far is done (or in the backlog); says whether it is done."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Writes what it can, stops; see :meth:`shutdown`. The runs are made equal to the
        store only after a study finished here (one whose orchestrator lost the study to
        another leaves the mirror to that one)."""
        self.shutdown(converge=self._finished)

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
        self._submit(Op("drain_pool"))
        deadline = time.monotonic() + self._flush_timeout
        writer = self._writer
        writer.flush(self._flush_timeout)
        while writer.backlogged and time.monotonic() < deadline:
            writer.retry()
            writer.flush(max(0.0, deadline - time.monotonic()))
            if writer.backlogged:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        repairs: list[Repair] = []
        if converge and not writer.backlogged and self._load_study is not None:
            op = Op("converge", {"deep": deep})
            self._submit(op)
            writer.flush(max(self._flush_timeout, deadline - time.monotonic()))
            repairs = op.data.pop("repairs", [])
        self._closing = True
        self._save_backlog(writer.stop())
        return repairs

    # --- feeding the writer thread -----------------------------------------------------------

    def _submit(self, op: Op) -> None:
        self._writer.submit(op)

    def _after(self, op: Op) -> None:
        """Keeps runs ready ahead of need whenever the writer has nothing else to do."""
        if op.kind in ("idle", "open_parent", "open_child", "drain_pool"):
            self._fill_pool()

    def _wake_pool_waiters(self) -> None:
        with self._pool_ready:
            self._pool_ready.notify_all()

    def _take(self, op: Op) -> None:
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

    # --- saving and replaying what could not be written ------------------------------------

    def _save_backlog(self, left: list[Op]) -> None:
        if not left:
            return
        self.unwritten = len(left)
        if self._study_dir is None:
            _log.error("%d MLflow writes were lost (no study folder to keep them)", self.unwritten)
            return
        path = self._study_dir / PENDING_FILE
        save_ops(left, path)
        _log.warning(
            "MLflow was unreachable: %d writes are kept in %s; `tuner sync` writes them",
            self.unwritten,
            path,
        )

    def _replay_saved(self) -> None:
        if self._study_dir is None:
            return
        for op in load_ops(self._study_dir / PENDING_FILE):
            if op.kind not in ("open_parent", "known_runs", "drain_pool", "retry"):
                self._submit(op)


def _engine_tag(record: TrialRecord) -> dict[str, str]:
    return {"tuner.engine": record.engine} if record.engine else {}


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


def quiet_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` that keeps MLflow's own lines out of the study's output.

    Making a client opens its store, and a new database store logs its table creation at INFO;
    on a tracking server, every run a client ends prints "View run ... at: URL" to stdout,
    and the mirror ends one run per trial. MLflow's log level is put back once the client is
    made, and only this client's URL lines go: a user's own runs still print theirs.
    """
    from mlflow.tracking import MlflowClient

    logger = logging.getLogger("mlflow")
    saved = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
    finally:
        logger.setLevel(saved)
    # MLflow has no switch for one client: its own is process-wide (an environment variable).
    setattr(client._tracking_client, "_log_url", lambda run_id: None)  # noqa: B010, SLF001
    return client


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, or MLflow's default (``MLFLOW_TRACKING_URI``, else ``./mlflow.db``), absolute."""
    import mlflow

    return uri or mlflow.get_tracking_uri()


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _now_ms() -> int:
    return int(time.time() * 1000)
