"""The study loop: ask -> submit -> poll -> report/prune -> tell -> tell the listeners.

One job, the loop, in one class: its steps share the running trials and the tally, so they
stay together even past 400 lines.

Only this loop changes a study's state, and only through :mod:`tuner.records`' writers. It
lives as long as one :meth:`tuner.orchestrator.Orchestrator.run`;
:class:`~tuner.orchestrator.Orchestrator` builds what it needs (the optuna study, the
sampler, the backend, the listeners) and injects the clock, so the loop runs in milliseconds in
tests against an in-process backend.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuner import failpoints
from tuner.backend import Backend, ErrorKind, TrialHandle, TrialSpec, TrialStatus, TrialUpdate
from tuner.budget import HARD_STOPS, Usage, stop_reason
from tuner.events import Listeners, StudyStart
from tuner.optuna_adapter import PruningView, report_intermediate, set_constraints, trial_id
from tuner.records import (
    Attr,
    StopReason,
    StudySummary,
    TrialRecord,
    TrialState,
    optuna_state,
    store_attempt,
    store_cost,
    store_outcome,
)
from tuner.spec import COST_METRIC, Direction, StudySpec
from tuner.takeover import RunningTrial, requeue, take_over
from tuner.tally import Tally
from tuner.trial_runner import objective_problem
from tuner.warm_start import stored_report

if TYPE_CHECKING:
    import optuna

    from tuner.locks import HeldLock
    from tuner.strategies import PendingAwareSampler

_log = logging.getLogger("tuner")

MAX_POLL_FAILURES = 5
"""Polls in a row that may fail (about a minute of backoff) before the study gives up."""


@dataclass(frozen=True)
class Clock:
    """The loop's time: ``now`` in seconds (monotonic), and how it waits."""

    now: Callable[[], float]
    sleep: Callable[[float], None]


class Loop:
    """One run of the loop over ``study``; see the module docstring."""

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        sampler: PendingAwareSampler,
        backend: Backend,
        events: Listeners,
        clock: Clock,
        lock: HeldLock | None = None,
    ):
        self.spec, self.study, self.sampler, self.backend = spec, study, sampler, backend
        self.events, self.clock, self.lock = events, clock, lock
        self.running: dict[int, RunningTrial] = {}
        self.tally = Tally(spec.maximize)
        self.pruning: PruningView | None = None
        """Early stopping on the watched objective of a study of several."""
        if spec.multi_objective and spec.pruner.type != "none":
            self.pruning = PruningView(study, spec.primary.direction is Direction.MAXIMIZE)
        self.poll_failures = 0
        self.stop_reason: StopReason | None = None
        self.message: str | None = None
        self.started_at = clock.now()
        self.queued: list[dict[str, Any]] = []
        """Configurations queued again (interrupted trials) that have not started yet."""
        self.abandoned = False
        """Another orchestrator took the study over: leave its trials and store alone."""
        sampler.pending = lambda: (
            [dict(r.record.params) for r in self.running.values()] + [*self.queued]
        )

    # --- start: take over what an earlier run left --------------------------------------

    def start(self, *, seed: int, resumed: bool) -> None:
        """Takes over what the store holds, then tells the listeners the study starts."""
        left = take_over(self.study, self.backend, self.spec.backend.type, self.clock.now())
        self.running, self.queued = left.running, left.queued
        for record in left.finished:  # interrupted attempts are not counted, but cost money
            self.tally.add(record) if record.state.is_finished() else self.tally.spend(record.cost)
        warm = stored_report(self.study.user_attrs)
        self.events.study_started(
            StudyStart(
                spec=self.spec,
                engine=self.sampler.engine,
                seed=seed,
                resumed=resumed,
                trials=(*left.finished, *left.interrupted),
                mlflow_parent_run_id=self.study.user_attrs.get(Attr.MLFLOW_PARENT_RUN_ID),
                backend=self.spec.backend.type,
                warm_start=warm.describe() if warm is not None else None,
            )
        )
        for record in left.interrupted:  # their runs, left open by a killed orchestrator, close
            self.events.trial_finished(record)
        failpoints.hit("study.started")

    def _requeue(self, stored_id: int, params: dict[str, Any]) -> None:
        requeue(self.study, stored_id, params)
        if params:
            self.queued.append(params)

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Launches and follows trials until the budget or the space ends."""
        while True:
            if self.lock is not None and self.lock.lost.is_set():
                self.abandoned = True
                self.lock.check()
            reason = self._stop_reason()
            if reason in HARD_STOPS:
                self.stop_reason = reason
                return
            while reason is None and self.stop_reason is None and self._has_room():
                self._launch()
                reason = self._stop_reason()
            if not self.running:
                final = self.stop_reason or self._stop_reason()
                if final is not None:
                    self.stop_reason = final
                    return
                continue  # every launch failed at submission; max_failures bounds this
            self._handle(self._poll())
            self._enforce_timeouts()

    def _has_room(self) -> bool:
        """Whether another trial may start now; marks the study exhausted when it is."""
        room = self.spec.budget.max_concurrent, self.backend.capacity
        if len(self.running) >= max(1, min(room)):
            return False
        if self.sampler.is_exhausted(self.study):
            self.stop_reason = StopReason.EXHAUSTED
            return False
        return True

    def _stop_reason(self) -> StopReason | None:
        running_cost = sum(r.total_cost() or 0.0 for r in self.running.values())
        usage = Usage(
            failures=self.tally.counts[TrialState.FAILED],
            finished=self.tally.finished,
            running=len(self.running),
            elapsed=self.clock.now() - self.started_at,
            spent=(self.tally.cost or 0.0) + running_cost,
        )
        reason, message = stop_reason(self.spec.budget, usage)
        self.message = message or self.message
        return reason

    def _poll(self) -> list[TrialUpdate]:
        """The backend's news; a failing poll is tried again a few times, with backoff, before
        the study gives up on its backend (a cloud API's bad minute must not end a study)."""
        timeout = 0.5
        if self.spec.budget.max_time is not None:
            left = self.started_at + self.spec.budget.max_time - self.clock.now()
            timeout = min(timeout, max(0.0, left))
        try:
            updates = self.backend.poll(timeout)
        except Exception as exc:
            self.poll_failures += 1
            if self.poll_failures > MAX_POLL_FAILURES:
                raise
            wait = min(2.0**self.poll_failures, 30.0)
            _log.warning("polling the backend failed (%s); trying again in %.0fs", exc, wait)
            self.clock.sleep(wait)
            return []
        self.poll_failures = 0
        return updates

    def _enforce_timeouts(self) -> None:
        limit = self.spec.trial.timeout
        now = self.clock.now()
        for running in list(self.running.values()):
            if limit is not None and now - running.started_at >= limit:
                self._stop(running)
                self._fail(running, f"timed out after {limit:g}s (trial.timeout)")

    def _launch(self) -> None:
        trial = self.study.ask()
        params = self.spec.search_space.suggest(trial)
        requeued = params in self.queued
        if requeued:
            self.queued.remove(params)
        seed = trial.user_attrs.get(Attr.SEED_TRIAL)
        engine = self.sampler.engine_for(trial.number)
        if seed is not None or requeued:  # a configuration given, not proposed
            engine = "seed" if seed is not None else "requeued"
        trial.set_user_attr(Attr.ENGINE, engine)
        record = TrialRecord(
            trial.number,
            TrialState.RUNNING,
            params,
            started=datetime.now(),
            seed_trial=seed,
            engine=engine,
        )
        env = {"TUNER_STUDY": self.spec.name, "TUNER_TRIAL": str(trial.number)}
        env |= {**self.spec.trial.env, **self.events.trial_environment(trial.number)}
        handle = TrialHandle(self.spec.backend.type, trial.number)
        running = RunningTrial(trial, record, handle, 0, env)
        self._submit(running)

    def _submit(self, running: RunningTrial) -> None:
        """Submits the trial's current attempt; a refusal fails the trial with the reason."""
        number, attempt = running.trial.number, running.attempt
        try:
            running.handle = self.backend.submit(_trial_spec(self.spec, running))
        except Exception as exc:
            _log.warning("trial %d could not be submitted: %s", number, exc)
            if attempt > 0:  # the attempts before this one are kept with the trial
                store_attempt(running.trial, running.handle.to_json(), attempt, running.retries)
            else:
                self.events.trial_started(running.record)
            what = f"submitting attempt {attempt + 1}" if attempt else "submitting to the backend"
            self._fail(running, f"{what} failed: {exc}")
            return
        running.started_at = self.clock.now()  # each attempt gets the whole trial.timeout
        store_attempt(running.trial, running.handle.to_json(), attempt, running.retries)
        self.running[number] = running
        if attempt == 0:
            self.events.trial_started(running.record)
            failpoints.hit("trial.submitted")

    def _retry(self, running: RunningTrial, update: TrialUpdate) -> bool:
        """Submits a failed trial again if its failure allows it; says whether it did (or
        failed the trial with the error of a resubmission that did not go through)."""
        config = self.spec.trial
        retryable = update.error_kind is ErrorKind.INFRA or (
            config.retry_on_error and update.error_kind is ErrorKind.USER
        )
        if not retryable or running.attempt >= config.max_retries:
            return False
        running.retries.append(update.error or "failed")
        running.attempt += 1
        running.spent, running.cost = running.total_cost(update.cost), None
        store_cost(running.trial, running.spent)
        self._submit(running)
        if running.trial.number in self.running:
            number, attempt = running.trial.number, running.attempt + 1
            _log.info("trial %d: %s; retrying (attempt %d)", number, update.error, attempt)
            self.events.trial_retried(number, attempt, update.error or "")
        return True

    def _handle(self, updates: list[TrialUpdate]) -> None:
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
            elif update.status is TrialStatus.CANCELLED:
                self._fail(running, "the trial was cancelled on the backend", update)
            elif not self._retry(running, update):
                self._fail(running, update.error or "failed", update)

    def _intermediate(self, running: RunningTrial, update: TrialUpdate) -> None:
        running.cost = update.cost if update.cost is not None else running.cost
        if not update.metrics or update.step is None:
            return
        metrics = dict(update.metrics)
        watched = self.spec.primary.metric
        value = metrics.get(watched)
        fresh = value is not None and math.isfinite(value) and update.step > running.last_step
        if not fresh:  # the store keeps a step once (a retry's early steps are there already)
            metrics.pop(watched, None)
        if metrics:
            self.events.trial_reported(update.trial, update.step, metrics)
        if not fresh or value is None:
            return
        running.last_step = update.step
        if self.spec.multi_objective:  # optuna's `Trial.report` refuses several objectives
            report_intermediate(running.trial, value, update.step)
        else:
            running.trial.report(value, update.step)
        if self.spec.pruner.type == "none":
            return
        if self.pruning is not None:
            prune = self.pruning.should_prune(running.trial)
        else:
            prune = running.trial.should_prune()
        if prune:
            failpoints.hit("trial.pruning")
            self._stop(running)
            _log.info("trial %d pruned at step %d", running.trial.number, update.step)
            pruned_value = value if not self.spec.multi_objective else None
            self._conclude(running, TrialState.PRUNED, value=pruned_value, metrics={watched: value})

    def _complete(self, running: RunningTrial, update: TrialUpdate) -> None:
        metrics = dict(update.metrics)
        values = []
        for objective in self.spec.objectives:
            if objective.metric == COST_METRIC:
                cost = running.total_cost(update.cost)
                if cost is None:
                    self._fail(running, "the backend did not say what the trial cost", update)
                    return
                values.append(cost)
                continue
            problem = objective_problem(metrics, objective.metric)
            if problem is not None:
                self._fail(running, problem, replace(update, traceback=None))
                return
            values.append(metrics[objective.metric])
        broken = [
            (constraint, violation)
            for constraint in self.spec.constraints
            if (violation := constraint.violation(metrics.get(constraint.metric))) > 0
        ]
        if self.spec.constraints:
            set_constraints(
                running.trial,
                [c.violation(metrics.get(c.metric)) for c in self.spec.constraints],
            )
        self._conclude(
            running,
            TrialState.COMPLETE,
            update,
            value=values[0],
            values=tuple(values),
            metrics=metrics,
            infeasible="; ".join(f"{c} ({_got(metrics, c.metric)})" for c, _ in broken) or None,
        )

    def _fail(self, running: RunningTrial, error: str, update: TrialUpdate | None = None) -> None:
        _log.info("trial %d failed: %s", running.trial.number, error)
        metrics = dict(update.metrics) if update is not None else {}
        self._conclude(running, TrialState.FAILED, update, error=error, metrics=metrics)

    def _conclude(
        self,
        running: RunningTrial,
        state: TrialState,
        update: TrialUpdate | None = None,
        **outcome: Any,
    ) -> None:
        """Stores a finished trial's outcome, tells optuna, then the listeners."""
        if update is not None:
            outcome |= {"node": update.node, "log": update.log, "details": dict(update.details)}
            if state is TrialState.FAILED:
                outcome["traceback"] = update.traceback
        record = replace(
            running.record,
            state=state,
            finished=datetime.now(),
            attempts=running.attempt + 1,
            cost=running.total_cost(update.cost if update is not None else None),
            **outcome,
        )
        store_outcome(running.trial, record)
        if state is TrialState.COMPLETE:
            self.study.tell(running.trial, list(record.objective_values or ()))
            failpoints.hit("trial.told")
        else:
            objectives = len(self.spec.objectives)
            if state is TrialState.PRUNED and objectives > 1:
                running.trial.set_user_attr(Attr.PRUNED, True)
            self.study.tell(running.trial, state=optuna_state(state, objectives=objectives))
        self.tally.add(record)
        self.events.trial_finished(record)
        self.events.study_progress(self.summary())

    def _stop(self, running: RunningTrial) -> None:
        """Cancels a trial on its backend; it is no longer followed."""
        self.running.pop(running.trial.number, None)
        try:
            self.backend.cancel(running.handle)
        except Exception:  # the trial's outcome is recorded whatever the backend says
            _log.exception("cancelling trial %d failed", running.trial.number)

    def summary(self) -> StudySummary:
        """Where the study stands now."""
        spec, reason, message = self.spec, self.stop_reason, self.message
        objective = spec.primary
        return self.tally.summary(
            spec.name,
            objective.metric,
            objective.direction.value,
            running=len(self.running),
            stop_reason=reason,
            message=message,
        )

    # --- the end: cancel what runs, queue it again, tell everyone -------------------------

    def finish(self) -> StudySummary:
        """Cancels the trials still running and queues their configurations again."""
        if self.abandoned:
            return self.summary()
        for running in list(self.running.values()):
            self._stop(running)
            cost = running.total_cost()
            store_cost(running.trial, cost)
            self.tally.spend(cost)
            self._requeue(trial_id(running.trial), dict(running.record.params))
            cancelled = TrialState.CANCELLED
            record = replace(running.record, state=cancelled, finished=datetime.now(), cost=cost)
            self.events.trial_finished(record)
        summary = self.summary()
        self.events.study_finished(summary)
        return summary


def _trial_spec(spec: StudySpec, running: RunningTrial) -> TrialSpec:
    """What the backend gets to run the trial's current attempt."""
    return TrialSpec(
        study=spec.name,
        number=running.trial.number,
        params=dict(running.record.params),
        entry=spec.trial.entry,
        objective=next(
            (o.metric for o in spec.objectives if o.metric != COST_METRIC), spec.primary.metric
        ),
        resources=spec.trial.resources.to_resources(),
        env=running.env,
        attempt=running.attempt,
    )


def _got(metrics: dict[str, float], metric: str) -> str:
    return f"{metric}={metrics[metric]:g}" if metric in metrics else f"no `{metric}` reported"
