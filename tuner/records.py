"""Immutable snapshots that cross module boundaries, and a trial's stored form.

How a trial is kept in the optuna store is written and read here only, side by side:
:meth:`TrialRecord.from_optuna` reads what :func:`store_attempt`, :func:`store_outcome` and
:func:`store_requeued` write.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial


class Attr:
    """Keys of the user attributes tuner keeps on optuna studies and trials."""

    HANDLE = "tuner.handle"
    METRICS = "tuner.metrics"
    ERROR = "tuner.error"
    TRACEBACK = "tuner.traceback"
    NODE = "tuner.node"
    LOG_TAIL = "tuner.log_tail"
    ATTEMPTS = "tuner.attempts"
    RETRIES = "tuner.retries"
    CANCELLED = "tuner.cancelled"
    PRUNED = "tuner.pruned"
    """A pruned trial of a study of several objectives, kept as a failed optuna trial (optuna's
    samplers do not expect pruned trials there)."""
    COST = "tuner.cost"
    """What the trial cost on its backend, in USD."""
    DETAILS = "tuner.details"
    """JSON of what the backend tells about the trial (e.g. a SageMaker job's name)."""
    MLFLOW_RUN_ID = "tuner.mlflow_run_id"
    """Study attribute ``tuner.mlflow_run_id.<trial number>``."""
    MLFLOW_PARENT_RUN_ID = "tuner.mlflow_parent_run_id"
    MLFLOW_EXPERIMENT_ID = "tuner.mlflow_experiment_id"
    TRACKING_URI = "tuner.tracking_uri"
    SEED = "tuner.seed"
    ENGINE = "tuner.engine"
    """Study attribute: the strategy's engine (``auto``...); trial attribute: the engine that
    proposed the trial."""
    SPEC = "tuner.spec"
    UID = "tuner.uid"
    """A random id of the study, unlike its name unique for ever (tags its cloud jobs)."""
    WARM_START = "tuner.warm_start"
    """Trial attribute: where a trial told from a warm start came from (it never ran here)."""
    WARM_STARTED = "tuner.warm_started"
    """Study attribute: JSON of what the warm start told (source, trials used and dropped)."""
    SEED_TRIAL = "tuner.seed_trial"
    """Trial attribute: the index of the spec's seed trial it evaluates."""
    WARM_START_REF = "tuner.warm_start_ref"
    """Trial attribute: which earlier trial a warm-start trial is (told once)."""
    SEEDED = "tuner.seeded"
    """Study attribute: the spec's ``seed_trials`` are queued (once, on the first run)."""
    INFEASIBLE = "tuner.infeasible"
    """Trial attribute: the constraints a trial broke (it is never the best)."""


class TrialState(enum.Enum):
    """Where a trial stands in the study."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_finished(self) -> bool:
        """Whether the trial has its final state (a cancelled trial is queued again)."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


# One trial, three vocabularies, mapped here and nowhere else:
# - a backend reports each *attempt* as a `tuner.backend.TrialStatus` (COMPLETED, FAILED, ...);
#   the loop decides the trial's `TrialState` from it (a FAILED attempt may be retried);
# - optuna stores the trial in its own states: CANCELLED is a FAIL marked `tuner.cancelled`;
# - MLflow shows it as a run status, with `tuner.state` as the exact state.
MLFLOW_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "FINISHED",
    TrialState.FAILED: "FAILED",
    TrialState.CANCELLED: "KILLED",
    TrialState.RUNNING: "RUNNING",
}
"""The MLflow run status of a trial in each state."""


def is_own(trial: FrozenTrial) -> bool:
    """Whether a stored trial is one of the study's own, not one told from a warm start
    (those inform the strategy only: never run, counted, tracked or reported)."""
    return Attr.WARM_START not in trial.user_attrs


def state_from_optuna(
    state: optuna.trial.TrialState, *, cancelled: bool = False, pruned: bool = False
) -> TrialState:
    """The trial's state from optuna's (and the ``tuner.cancelled``/``tuner.pruned`` marks)."""
    if cancelled:
        return TrialState.CANCELLED
    if pruned:
        return TrialState.PRUNED
    return TrialState[{"FAIL": "FAILED"}.get(state.name, state.name)]


def optuna_state(state: TrialState, *, objectives: int = 1) -> optuna.trial.TrialState:
    """The optuna state a trial in ``state`` is stored with (a pruned trial of a study of
    several objectives as failed, marked ``tuner.pruned``)."""
    from optuna.trial import TrialState as OptunaState

    if state in (TrialState.FAILED, TrialState.CANCELLED):
        return OptunaState.FAIL
    if state is TrialState.PRUNED and objectives > 1:
        return OptunaState.FAIL
    return OptunaState[state.name]


class StopReason(enum.Enum):
    """Why a study stopped launching trials."""

    MAX_TRIALS = "max_trials reached"
    MAX_TIME = "max_time reached"
    MAX_FAILURES = "max_failures reached"
    EXHAUSTED = "search space exhausted"
    INTERRUPTED = "interrupted"
    MAX_COST = "max_cost reached"


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the study knows it."""

    number: int
    state: TrialState
    params: Mapping[str, Any]
    value: float | None = None
    """The (first) objective's value."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    node: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    mlflow_run_id: str | None = None
    attempts: int = 1
    log: str | None = None
    """The trial's output: whole when it comes from the backend, its tail when read back."""
    cost: float | None = None
    """USD, when the backend knows what the trial cost."""
    details: Mapping[str, str | float] = field(default_factory=dict)
    """What the backend tells about the trial: strings become MLflow tags, numbers metrics."""
    values: tuple[float, ...] | None = None
    """Every objective's value, in the spec's order (several in a multi-objective study)."""
    infeasible: str | None = None
    """The constraints the trial broke (it is never the best), or ``None``."""
    seed_trial: int | None = None
    """The index of the spec's ``seed_trials`` configuration it evaluates, if any."""
    engine: str | None = None
    """The engine that proposed it (``gp``, ``tpe``...; ``seed`` for a seed trial, ``requeued``
    for an interrupted trial run again)."""

    @property
    def objective_values(self) -> tuple[float, ...] | None:
        """Every objective's value: ``values``, or ``(value,)`` where only that is known."""
        if self.values is not None:
            return self.values
        return None if self.value is None else (self.value,)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, when both are known."""
        if self.started and self.finished:
            return (self.finished - self.started).total_seconds()
        return None

    @classmethod
    def from_optuna(
        cls, trial: FrozenTrial, study_attrs: Mapping[str, Any] | None = None
    ) -> TrialRecord:
        """The record of a trial read back from an optuna storage.

        Args:
            trial: the stored trial.
            study_attrs: the study's user attributes, where MLflow run ids are kept.
        """
        attrs = trial.user_attrs
        state = state_from_optuna(
            trial.state,
            cancelled=bool(attrs.get(Attr.CANCELLED)),
            pruned=bool(attrs.get(Attr.PRUNED)),
        )
        metrics = attrs.get(Attr.METRICS) or {}
        details = attrs.get(Attr.DETAILS) or {}
        cost = attrs.get(Attr.COST)
        return cls(
            number=trial.number,
            state=state,
            params=dict(trial.params),
            value=trial.values[0] if trial.values else None,
            values=tuple(trial.values) if trial.values else None,
            infeasible=attrs.get(Attr.INFEASIBLE),
            seed_trial=attrs.get(Attr.SEED_TRIAL),
            engine=attrs.get(Attr.ENGINE),
            metrics=dict(json.loads(metrics) if isinstance(metrics, str) else metrics),
            error=attrs.get(Attr.ERROR),
            traceback=attrs.get(Attr.TRACEBACK),
            node=attrs.get(Attr.NODE),
            started=trial.datetime_start,
            finished=trial.datetime_complete,
            mlflow_run_id=(study_attrs or {}).get(f"{Attr.MLFLOW_RUN_ID}.{trial.number}"),
            attempts=int(attrs.get(Attr.ATTEMPTS, 1)),
            log=attrs.get(Attr.LOG_TAIL),
            cost=None if cost is None else float(cost),
            details=dict(json.loads(details) if isinstance(details, str) else details),
        )


@dataclass(frozen=True)
class StudySummary:
    """Where a study stands: counts per state, the best trial, and why it stopped."""

    name: str
    metric: str
    direction: str
    counts: Mapping[TrialState, int]
    best: TrialRecord | None
    """The best feasible completed trial (``None`` in a multi-objective study: see ``front``)."""
    stop_reason: StopReason | None = None
    message: str | None = None
    cost: float | None = None
    """USD spent on finished trials, when the backend knows costs."""
    totals: Mapping[str, float] = field(default_factory=dict)
    """Sums of the numeric details backends gave for finished trials (e.g. spot savings)."""
    front: tuple[TrialRecord, ...] = ()
    """The feasible completed trials no other one dominates, in trial order (the best trial
    alone in a single-objective study)."""

    @property
    def finished(self) -> int:
        """Trials with a final state."""
        return sum(n for state, n in self.counts.items() if state.is_finished())


# --- writing a trial's outcome: what `TrialRecord.from_optuna` reads back --------------------

LOG_TAIL_CHARS = 4000
"""Characters of a trial's output kept in the study store (MLflow gets all of it)."""
TRACEBACK_CHARS = 8000
"""Characters of a traceback kept with a failed trial (its end, where the error is)."""


def store_attempt(
    trial: optuna.Trial, handle: str, attempt: int, retries: Sequence[str] = ()
) -> None:
    """Stores a trial's submission: its backend handle (JSON) and, on a retry, its attempts."""
    trial.set_user_attr(Attr.HANDLE, handle)
    if attempt > 0 or retries:
        trial.set_user_attr(Attr.RETRIES, json.dumps(list(retries)))
        trial.set_user_attr(Attr.ATTEMPTS, attempt + 1)


def store_cost(trial: optuna.Trial, cost: float | None) -> None:
    """Stores what a trial has cost so far (all its attempts), if it is known."""
    if cost is not None:
        trial.set_user_attr(Attr.COST, cost)


def store_outcome(trial: optuna.Trial, record: TrialRecord) -> None:
    """Stores a finished trial's outcome (before it is told): its metrics, error, traceback,
    node, output tail, cost and the backend's details, as :meth:`TrialRecord.from_optuna`
    reads them."""
    store_cost(trial, record.cost)
    if record.details:
        trial.set_user_attr(Attr.DETAILS, json.dumps(dict(record.details)))
    if record.error:
        trial.set_user_attr(Attr.ERROR, record.error)
    if record.traceback:
        trial.set_user_attr(Attr.TRACEBACK, record.traceback[-TRACEBACK_CHARS:])
    if record.node:
        trial.set_user_attr(Attr.NODE, record.node)
    if record.metrics:
        trial.set_user_attr(Attr.METRICS, json.dumps(dict(record.metrics)))
    if record.log:
        trial.set_user_attr(Attr.LOG_TAIL, record.log[-LOG_TAIL_CHARS:])
    if record.infeasible:
        trial.set_user_attr(Attr.INFEASIBLE, record.infeasible)


def store_requeued(storage: BaseStorage, trial_id: int) -> None:
    """Ends an interrupted trial as CANCELLED (kept as a failed optuna trial marked cancelled;
    its configuration is queued again as a new trial)."""
    storage.set_trial_user_attr(trial_id, Attr.CANCELLED, True)
    storage.set_trial_state_values(trial_id, optuna_state(TrialState.CANCELLED))
