"""The study loop: ask -> submit -> poll -> report -> tell -> track.

Only this loop changes a study's state. The backend, the listeners (MLflow, the progress
display), the storage and the clock are injected, so the whole loop runs in milliseconds in
tests against an in-process backend.

Example:
    >>> from tuner import Study, load_spec
    >>> summary = Study(load_spec("examples/quickstart/study.yaml")).run()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuner import failpoints
from tuner.backend import (
    Backend,
    BackendContext,
    ErrorKind,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    create_backend,
)
from tuner.events import Listeners, StudyListener, StudyStart
from tuner.optuna_adapter import live_trial, reload, storage_of, trial_id
from tuner.records import Attr, StopReason, StudySummary, Tally, TrialRecord, TrialState
from tuner.spec import Direction, StudySpec
from tuner.store import (
    StudyExistsError,
    location,
    open_storage,
    open_study,
    save_spec,
)
from tuner.strategies import PendingAwareSampler, make_sampler
from tuner.tracking import MlflowTracker

if TYPE_CHECKING:
    from tuner.locks import HeldLock
from tuner.trial_runner import TRACEBACK_LIMIT, objective_problem

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

_log = logging.getLogger("tuner")

_HARD_STOPS = (StopReason.INTERRUPTED, StopReason.MAX_TIME, StopReason.MAX_FAILURES)
"""Stops that cancel running trials; the others let them finish."""

_DEFAULT = object()
MAX_POLL_FAILURES = 5
"""Polls in a row that may fail (about a minute of backoff) before the study gives up."""
LOG_TAIL_CHARS = 4000
"""Characters of a trial's output kept in the study store (MLflow gets all of it)."""


@dataclass
class _Running:
    trial: optuna.Trial
    record: TrialRecord
    handle: TrialHandle
    started_at: float
    env: dict[str, str] = field(default_factory=dict)
    attempt: int = 0
    retries: list[str] = field(default_factory=list)
    last_step: int = -1
    spent: float | None = None
    """USD of the trial's earlier attempts, when the backend knows costs."""
    cost: float | None = None
    """USD of its current attempt so far (the backend's estimate)."""

    def total_cost(self, final: float | None = None) -> float | None:
        """Earlier attempts plus ``final`` (or the current estimate), if any is known."""
        now = final if final is not None else self.cost
        if self.spent is None and now is None:
            return None
        return (self.spent or 0.0) + (now or 0.0)


class Study:
    """Runs a study spec to the end of its budget.

    Args:
        spec: the validated study spec.
        backend: where trials run; built from ``spec.backend`` if not given (and then closed
            at the end; a backend passed in is left open for its owner).
        listeners: receive the study's events (the CLI passes its progress display).
        tracker: the MLflow mirror; built from ``spec.tracking`` unless given (``None``: off).
        storage: an optuna storage; the spec's (journal file by default) unless given.
        clock: seconds, monotonic; for the time budget.
        sleep: waits (between tries of a failing backend).
    """

    def __init__(
        self,
        spec: StudySpec,
        *,
        backend: Backend | None = None,
        listeners: Sequence[StudyListener] = (),
        tracker: Any = _DEFAULT,
        storage: BaseStorage | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.spec = spec
        self._backend = backend
        self._extra_listeners = list(listeners)
        self._tracker = tracker
        self._storage = storage
        self.clock = clock
        self.sleep = sleep
        self.summary: StudySummary | None = None
        self.lock: HeldLock | None = None
        """The orchestrator's lock while :meth:`run` holds it."""
        self.engine: str | None = None
        self.tracking_uri: str | None = None

    # --- public --------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> StudySummary:
        """Runs trials until the budget ends or the space is exhausted.

        Args:
            resume: continue a study that already has trials; trials an earlier run left
                running are reattached where the backend can, else queued again.

        Returns:
            The final summary; ``stop_reason`` says why it stopped.

        Raises:
            StudyExistsError: without ``resume``, if the study already has trials.
            StudyBusyError: if another live process is running the study.
            KeyboardInterrupt: after cancelling running trials and closing the study.
        """
        from tuner.locks import study_lock

        with study_lock(self.spec) as lock:
            # `lock.lost` is set if another orchestrator takes the study over (shared storage)
            self.lock = lock
            return self._run(resume)

    def _run(self, resume: bool) -> StudySummary:
        spec = self.spec
        storage = self._storage if self._storage is not None else open_storage(spec)
        prior = _existing_trials(storage, spec.name)
        if prior and not resume:
            raise StudyExistsError(
                f"study `{spec.name}` already has {prior} trials in {_where(spec)}; continue "
                f"it with `tuner resume {spec.name}`, or give the spec a new `name`"
            )
        probe = open_study(spec, None, storage)
        seed = probe.user_attrs.get(Attr.SEED)
        if seed is None:
            seed = spec.strategy.seed if spec.strategy.seed is not None else secrets.randbits(31)
            probe.set_user_attr(Attr.SEED, seed)
        sampler = make_sampler(spec.strategy, spec.search_space, _run_seed(seed, prior))
        self.engine = sampler.engine
        study = open_study(spec, sampler, storage)
        study.set_user_attr(Attr.ENGINE, sampler.engine)
        save_spec(spec)
        uid = study.user_attrs.get(Attr.UID)
        if uid is None:
            uid = secrets.token_hex(6)
            study.set_user_attr(Attr.UID, uid)

        owns_backend = self._backend is None
        backend = self._backend or create_backend(
            spec.backend,
            BackendContext(
                spec.name,
                location(spec).root,
                spec.budget.max_concurrent,
                spec.trial.resources.to_resources(),
                uid=uid,
            ),
        )
        listeners = self._make_listeners(study)
        loop = _Loop(self, study, sampler, backend, listeners)
        try:
            loop.start(seed=seed, resumed=resume and prior > 0)
            loop.run()
        except KeyboardInterrupt:
            loop.stop_reason = StopReason.INTERRUPTED
            raise
        finally:
            try:
                self.summary = loop.finish()
            finally:
                for listener in listeners:
                    if loop.abandoned and isinstance(listener, MlflowTracker):
                        # Another orchestrator owns the study now: its mirror is not ours.
                        _safely(lambda tracker=listener: tracker.shutdown(converge=False))
                    else:
                        _safely(listener.close)
                if owns_backend and not loop.abandoned:
                    backend.close()
        return self.summary

    # --- wiring --------------------------------------------------------------------------

    def _make_listeners(self, study: optuna.Study) -> list[StudyListener]:
        tracker = self._tracker
        if tracker is _DEFAULT:
            config = self.spec.tracking.mlflow
            tracker = None
            if config is not None:
                tracker = MlflowTracker(
                    config,
                    keep_run_id=_run_id_keeper(study),
                    study_dir=location(self.spec).root,
                    load_study=lambda: _reload(study),
                )
        self.tracking_uri = getattr(tracker, "tracking_uri", None)
        if self.tracking_uri:
            study.set_user_attr(Attr.TRACKING_URI, self.tracking_uri)
        return [*([tracker] if tracker is not None else []), *self._extra_listeners]


def _reload(study: optuna.Study) -> optuna.Study:
    """A fresh handle on ``study`` for another thread (the tracker's end-of-study plots)."""

    return reload(study)


def _run_id_keeper(study: optuna.Study) -> Callable[[int | None, str], None]:
    """Stores run ids as study attributes: a trial may finish before its run exists, and
    optuna refuses attribute writes to finished trials."""

    def keep(number: int | None, run_id: str) -> None:
        key = Attr.MLFLOW_PARENT_RUN_ID if number is None else f"{Attr.MLFLOW_RUN_ID}.{number}"
        study.set_user_attr(key, run_id)

    return keep


class _Loop:
    """One run of the loop; lives as long as :meth:`Study.run`."""

    def __init__(
        self,
        owner: Study,
        study: optuna.Study,
        sampler: PendingAwareSampler,
        backend: Backend,
        listeners: list[StudyListener],
    ):
        self.spec = owner.spec
        self.clock = owner.clock
        self.sleep = owner.sleep
        self.study = study
        self.sampler = sampler
        self.backend = backend
        self.events = Listeners(listeners)
        self.running: dict[int, _Running] = {}
        self.tally = Tally(maximize=self.spec.objective.direction is Direction.MAXIMIZE)
        self.failures = 0
        self.poll_failures = 0
        self.stop_reason: StopReason | None = None
        self.message: str | None = None
        self.started_at = self.clock()
        self.pruning = self.spec.pruner.type != "none"
        self.queued: list[dict[str, Any]] = []
        """Configurations queued again (interrupted trials) that have not started yet."""
        self.lock = owner.lock
        self.abandoned = False
        """Another orchestrator took the study over: leave its trials and store alone."""
        sampler.pending = self._pending_configs

    @property
    def concurrency(self) -> int:
        """Trials to run at once: the budget's, or fewer if the backend holds fewer now."""
        return max(1, min(self.spec.budget.max_concurrent, self.backend.capacity))

    def _pending_configs(self) -> list[dict[str, Any]]:
        return [dict(r.record.params) for r in self.running.values()] + self.queued

    # --- start: count what is there, pick up what an earlier run left ---------------------

    def start(self, *, seed: int, resumed: bool) -> None:
        from optuna.trial import TrialState as OptunaState

        known: list[TrialRecord] = []
        interrupted: list[TrialRecord] = []
        study_attrs = self.study.user_attrs
        for frozen in self.study.get_trials(deepcopy=False):
            record = TrialRecord.from_optuna(frozen, study_attrs)
            if frozen.state == OptunaState.RUNNING:
                if not self._recover(frozen, record):
                    interrupted.append(replace(record, state=TrialState.CANCELLED))
                    known.append(interrupted[-1])
                continue
            if frozen.state == OptunaState.WAITING:
                self.queued.append(dict(frozen.system_attrs.get("fixed_params", {})))
                continue
            if record.state.is_finished():
                self.tally.add(record)
                if record.state is TrialState.FAILED:
                    self.failures += 1
            else:
                self.tally.spend(record.cost)  # interrupted attempts cost money too
            known.append(record)
        parent = study_attrs.get(Attr.MLFLOW_PARENT_RUN_ID)
        self.events.study_started(
            StudyStart(
                spec=self.spec,
                engine=self.sampler.engine,
                seed=seed,
                resumed=resumed,
                trials=tuple(known),
                mlflow_parent_run_id=parent,
                backend=self.spec.backend.type,
            ),
        )
        for record in interrupted:  # their runs, left open by a killed orchestrator, close
            self.events.trial_finished(record)
        failpoints.hit("study.started")

    def _recover(self, frozen: optuna.trial.FrozenTrial, record: TrialRecord) -> bool:
        """Follows a trial an earlier run left running if the backend can; else queues it
        again. Returns whether it is followed."""
        attempt = int(frozen.user_attrs.get(Attr.ATTEMPTS, 1)) - 1
        handle_json = frozen.user_attrs.get(Attr.HANDLE)
        # Killed between submitting and storing the handle: the backend may still find the
        # trial by its number and attempt (SageMaker job names are made of them).
        handle = (
            TrialHandle.from_json(handle_json)
            if handle_json
            else TrialHandle(self.spec.backend.type, frozen.number, {"attempt": attempt})
        )
        if self.backend.reattach(handle):
            trial = live_trial(self.study, frozen)
            spent = frozen.user_attrs.get(Attr.COST)
            self.running[frozen.number] = _Running(
                trial,
                record,
                handle,
                self.clock(),
                attempt=attempt,
                spent=None if spent is None else float(spent),
            )
            _log.info("trial %d is still running; following it", frozen.number)
            return True
        _log.info("trial %d was interrupted; queueing it again", frozen.number)
        self._requeue(trial_id(frozen), frozen.number, dict(frozen.params))
        return False

    def _requeue(self, trial_id: int, number: int, params: dict[str, Any]) -> None:
        from optuna.trial import TrialState as OptunaState

        storage = storage_of(self.study)
        storage.set_trial_user_attr(trial_id, Attr.CANCELLED, True)
        storage.set_trial_state_values(trial_id, OptunaState.FAIL)
        if params:
            self.study.enqueue_trial(params, skip_if_exists=False)
            self.queued.append(params)

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            if self.lock is not None and self.lock.lost.is_set():
                self.abandoned = True
                self.lock.check()
            reason = self._stop_reason()
            if reason in _HARD_STOPS:
                self.stop_reason = reason
                return
            if reason is None and self.stop_reason is None:
                self._fill_slots()
            if not self.running:
                final = self.stop_reason or self._stop_reason()
                if final is not None:
                    self.stop_reason = final
                    return
                continue  # every launch failed at submission; max_failures bounds this
            self._handle(self._poll())
            self._enforce_timeouts()

    def _poll(self) -> list[Any]:
        """The backend's news; a failing poll is tried again a few times, with backoff, before
        the study gives up on its backend (a cloud API's bad minute must not end a study)."""
        try:
            updates = self.backend.poll(self._poll_timeout())
        except Exception as exc:
            self.poll_failures += 1
            if self.poll_failures > MAX_POLL_FAILURES:
                raise
            wait = min(2.0**self.poll_failures, 30.0)
            _log.warning("polling the backend failed (%s); trying again in %.0fs", exc, wait)
            self.sleep(wait)
            return []
        self.poll_failures = 0
        return updates

    def _poll_timeout(self) -> float:
        timeout = 0.5
        max_time = self.spec.budget.max_time
        if max_time is not None:
            timeout = min(timeout, max(0.0, self.started_at + max_time - self.clock()))
        return timeout

    def _enforce_timeouts(self) -> None:
        limit = self.spec.trial.timeout
        if limit is None:
            return
        now = self.clock()
        for number, running in list(self.running.items()):
            if now - running.started_at >= limit:
                del self.running[number]
                _safely(self.backend.cancel, running.handle)
                self._fail(running, f"timed out after {limit:g}s (trial.timeout)", None, None)

    def _stop_reason(self) -> StopReason | None:
        budget = self.spec.budget
        if self.failures >= budget.max_failures:
            self.message = (
                f"{self.failures} trials failed (budget.max_failures = {budget.max_failures}); "
                "see the errors with `tuner status`, fix the trial code, then `tuner resume`"
            )
            return StopReason.MAX_FAILURES
        if budget.max_time is not None and self.clock() - self.started_at >= budget.max_time:
            return StopReason.MAX_TIME
        if budget.max_trials is not None and (
            self.tally.finished + len(self.running) >= budget.max_trials
        ):
            return StopReason.MAX_TRIALS
        if budget.max_cost is not None:
            spent = self._spent()
            if spent >= budget.max_cost:
                self.message = (
                    f"spent ${spent:.2f} of budget.max_cost ${budget.max_cost:g}; "
                    "running trials finish, no new one starts"
                )
                return StopReason.MAX_COST
        return None

    def _spent(self) -> float:
        running = (r.total_cost() or 0.0 for r in self.running.values())
        return (self.tally.cost or 0.0) + sum(running)

    def _fill_slots(self) -> None:
        while len(self.running) < self.concurrency:
            reason = self._stop_reason()
            if reason is not None:
                return
            if self.sampler.is_exhausted(self.study):
                self.stop_reason = StopReason.EXHAUSTED
                return
            self._launch()

    def _trial_spec(
        self, number: int, params: dict[str, Any], attempt: int, env: dict[str, str]
    ) -> TrialSpec:
        return TrialSpec(
            study=self.spec.name,
            number=number,
            params=params,
            entry=self.spec.trial.entry,
            objective=self.spec.objective.metric,
            resources=self.spec.trial.resources.to_resources(),
            env=env,
            attempt=attempt,
        )

    def _environment(self, number: int) -> dict[str, str]:
        """The trial's environment: the spec's, then what listeners add (MLflow's run id)."""
        env = {
            "TUNER_STUDY": self.spec.name,
            "TUNER_TRIAL": str(number),
            **self.spec.trial.env,
        }
        env.update(self.events.trial_environment(number))
        return env

    def _launch(self) -> None:
        trial = self.study.ask()
        params = self.spec.search_space.suggest(trial)
        if params in self.queued:
            self.queued.remove(params)
        record = TrialRecord(trial.number, TrialState.RUNNING, params, started=datetime.now())
        env = self._environment(trial.number)
        try:
            handle = self.backend.submit(self._trial_spec(trial.number, params, 0, env))
        except Exception as exc:
            _log.warning("trial %d could not be submitted: %s", trial.number, exc)
            handle = TrialHandle(self.spec.backend.type, trial.number)
            running = _Running(trial, record, handle, self.clock(), env)
            self.events.trial_started(record)
            self._fail(running, f"submitting to the backend failed: {exc}", None, None)
            return
        trial.set_user_attr(Attr.HANDLE, handle.to_json())
        self.running[trial.number] = _Running(trial, record, handle, self.clock(), env)
        self.events.trial_started(record)
        failpoints.hit("trial.submitted")

    def _retry(self, running: _Running, update: Any) -> bool:
        """Submits a failed trial again if its failure allows it; says whether the failure is
        handled (retried, or failed with the error of a resubmission that did not go through)."""
        config = self.spec.trial
        retryable = update.error_kind is ErrorKind.INFRA or (
            config.retry_on_error and update.error_kind is ErrorKind.USER
        )
        if not retryable or running.attempt >= config.max_retries:
            return False
        running.retries.append(update.error or "failed")
        running.attempt += 1
        running.spent = running.total_cost(update.cost)
        running.cost = None
        if running.spent is not None:
            running.trial.set_user_attr(Attr.COST, running.spent)
        trial = running.trial
        params = dict(running.record.params)
        try:
            handle = self.backend.submit(
                self._trial_spec(trial.number, params, running.attempt, running.env)
            )
        except Exception as exc:
            # The trial fails with this error; the attempts before it are kept with it.
            trial.set_user_attr(Attr.RETRIES, json.dumps(running.retries))
            trial.set_user_attr(Attr.ATTEMPTS, running.attempt + 1)
            self._fail(
                running, f"submitting attempt {running.attempt + 1} failed: {exc}", None, None
            )
            return True
        running.handle = handle
        running.started_at = self.clock()  # each attempt gets the whole trial.timeout
        running.last_step = -1
        trial.set_user_attr(Attr.HANDLE, handle.to_json())
        trial.set_user_attr(Attr.RETRIES, json.dumps(running.retries))
        trial.set_user_attr(Attr.ATTEMPTS, running.attempt + 1)
        self.running[trial.number] = running
        attempt = running.attempt + 1
        _log.info("trial %d: %s; retrying (attempt %d)", trial.number, update.error, attempt)
        self.events.trial_retried(trial.number, attempt, update.error or "")
        return True

    def _handle(self, updates: list[Any]) -> None:
        for update in updates:
            running = self.running.get(update.trial)
            if running is None:
                continue
            if update.status is TrialStatus.RUNNING:
                self._intermediate(running, update)
                continue
            failpoints.hit("trial.finished")
            del self.running[update.trial]
            if update.status is TrialStatus.COMPLETED:
                self._complete(running, update)
            elif update.status is TrialStatus.FAILED:
                if not self._retry(running, update):
                    self._fail(
                        running,
                        update.error or "failed",
                        update.traceback,
                        update.node,
                        dict(update.metrics),
                        update.log,
                        update=update,
                    )
            else:
                self._fail(
                    running,
                    "the trial was cancelled on the backend",
                    None,
                    update.node,
                    update=update,
                )

    def _intermediate(self, running: _Running, update: Any) -> None:
        if update.cost is not None:
            running.cost = update.cost
        if not update.metrics or update.step is None:
            return
        value = update.metrics.get(self.spec.objective.metric)
        self.events.trial_reported(update.trial, update.step, dict(update.metrics))
        if value is not None and math.isfinite(value) and update.step > running.last_step:
            running.trial.report(value, update.step)
            running.last_step = update.step
            if self.pruning and running.trial.should_prune():
                failpoints.hit("trial.pruning")
                self._prune(running, value, update.step)

    def _prune(self, running: _Running, value: float, step: int) -> None:
        """Stops a trial the pruner judged hopeless; it counts as finished, not failed."""
        from optuna.trial import TrialState as OptunaState

        del self.running[running.trial.number]
        _safely(self.backend.cancel, running.handle)
        self.study.tell(running.trial, state=OptunaState.PRUNED)
        _log.info("trial %d pruned at step %d", running.trial.number, step)
        self._finished(
            replace(
                running.record,
                state=TrialState.PRUNED,
                value=value,
                metrics={self.spec.objective.metric: value},
                finished=datetime.now(),
                attempts=running.attempt + 1,
                cost=self._keep_cost(running, None, {}),
            )
        )

    def _keep_cost(
        self, running: _Running, update: Any, details: dict[str, str | float]
    ) -> float | None:
        """Stores what the trial cost (all attempts) and the backend's details about it."""
        cost = running.total_cost(update.cost if update is not None else None)
        if cost is not None:
            running.trial.set_user_attr(Attr.COST, cost)
        if details:
            running.trial.set_user_attr(Attr.DETAILS, json.dumps(details))
        return cost

    def _complete(self, running: _Running, update: Any) -> None:
        metrics = dict(update.metrics)
        problem = objective_problem(metrics, self.spec.objective.metric)
        if problem is not None:
            self._fail(running, problem, None, update.node, metrics, update.log, update=update)
            return
        value = metrics[self.spec.objective.metric]
        trial = running.trial
        trial.set_user_attr(Attr.METRICS, json.dumps(metrics))
        if update.node:
            trial.set_user_attr(Attr.NODE, update.node)
        if update.log:
            trial.set_user_attr(Attr.LOG_TAIL, update.log[-LOG_TAIL_CHARS:])
        details = dict(update.details)
        cost = self._keep_cost(running, update, details)
        self.study.tell(trial, value)
        failpoints.hit("trial.told")
        self._finished(
            replace(
                running.record,
                state=TrialState.COMPLETE,
                value=value,
                metrics=metrics,
                node=update.node,
                finished=datetime.now(),
                attempts=running.attempt + 1,
                log=update.log,
                cost=cost,
                details=details,
            )
        )

    def _fail(
        self,
        running: _Running,
        error: str,
        traceback: str | None,
        node: str | None,
        metrics: dict[str, float] | None = None,
        log: str | None = None,
        *,
        update: Any = None,
    ) -> None:
        from optuna.trial import TrialState as OptunaState

        trial = running.trial
        details = dict(update.details) if update is not None else {}
        cost = self._keep_cost(running, update, details)
        trial.set_user_attr(Attr.ERROR, error)
        if traceback:
            trial.set_user_attr(Attr.TRACEBACK, traceback[-TRACEBACK_LIMIT:])
        if node:
            trial.set_user_attr(Attr.NODE, node)
        if metrics:
            trial.set_user_attr(Attr.METRICS, json.dumps(metrics))
        if log:
            trial.set_user_attr(Attr.LOG_TAIL, log[-LOG_TAIL_CHARS:])
        self.study.tell(trial, state=OptunaState.FAIL)
        self.failures += 1
        _log.info("trial %d failed: %s", trial.number, error)
        self._finished(
            replace(
                running.record,
                state=TrialState.FAILED,
                error=error,
                traceback=traceback,
                node=node,
                metrics=metrics or {},
                finished=datetime.now(),
                attempts=running.attempt + 1,
                log=log,
                cost=cost,
                details=details,
            )
        )

    def _finished(self, record: TrialRecord) -> None:
        self.tally.add(record)
        self.events.trial_finished(record)
        self.events.study_progress(self._summary())

    def _summary(self) -> StudySummary:
        counts = dict(self.tally.counts)
        counts[TrialState.RUNNING] = len(self.running)
        return StudySummary(
            name=self.spec.name,
            metric=self.spec.objective.metric,
            direction=self.spec.objective.direction.value,
            counts=counts,
            best=self.tally.best,
            stop_reason=self.stop_reason,
            message=self.message,
            cost=self.tally.cost,
            totals=dict(self.tally.totals),
        )

    # --- the end: cancel what runs, queue it again, tell everyone -------------------------

    def finish(self) -> StudySummary:
        if self.abandoned:
            return self._summary()
        for number, running in list(self.running.items()):
            _safely(self.backend.cancel, running.handle)
            cost = self._keep_cost(running, None, {})
            self.tally.spend(cost)
            stored_id = trial_id(running.trial)
            self._requeue(stored_id, number, dict(running.record.params))
            record = replace(
                running.record, state=TrialState.CANCELLED, finished=datetime.now(), cost=cost
            )
            self.events.trial_finished(record)
            del self.running[number]
        summary = self._summary()
        self.events.study_finished(summary)
        return summary


def _existing_trials(storage: BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _run_seed(seed: int, prior_trials: int) -> int:
    """The sampler seed for a run: the study's seed, varied on resume so draws do not repeat."""
    return seed if prior_trials == 0 else (seed + 7919 * prior_trials) % 2**31


def _where(spec: StudySpec) -> str:
    return spec.storage.url or str(location(spec).journal)


def _safely(function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception:  # a listener or a cancel must not take the study down
        _log.exception("ignored error in %s", getattr(function, "__qualname__", function))
