"""A trial on its backend as the loop follows it, and taking over what an earlier run left.

When a study starts again (``tuner resume``, or after a crash), its store may hold trials an
earlier orchestrator left: finished ones (counted), queued configurations (run first), and
trials still RUNNING. A running trial is followed again if its backend can still report on it
(a SageMaker job); otherwise it ends as CANCELLED and its configuration is queued again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tuner.backend import Backend, TrialHandle
from tuner.optuna_adapter import live_trial, storage_of, trial_id
from tuner.records import Attr, TrialRecord, TrialState, is_own, store_requeued

if TYPE_CHECKING:
    import optuna

_log = logging.getLogger("tuner")


@dataclass
class RunningTrial:
    """A trial on its backend, as the loop follows it."""

    trial: optuna.Trial
    record: TrialRecord
    handle: TrialHandle
    started_at: float
    env: dict[str, str] = field(default_factory=dict)
    attempt: int = 0
    retries: list[str] = field(default_factory=list)
    last_step: int = -1
    """The objective's last step in the store; a retry's earlier steps are not told again."""
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


@dataclass
class LeftBehind:
    """What an earlier run of the study left in its store."""

    finished: list[TrialRecord] = field(default_factory=list)
    """Trials with a final state, and earlier cancelled attempts."""
    interrupted: list[TrialRecord] = field(default_factory=list)
    """Trials that were running and are now CANCELLED (their configurations queued again)."""
    running: dict[int, RunningTrial] = field(default_factory=dict)
    """Trials still running on the backend, followed again."""
    queued: list[dict[str, Any]] = field(default_factory=list)
    """Configurations waiting to run."""


def take_over(study: optuna.Study, backend: Backend, kind: str, now: float) -> LeftBehind:
    """Reads what the store holds and takes over its running trials (see the module).

    Args:
        study: the study's store.
        backend: asked whether it can still follow each running trial.
        kind: the backend's name, for handles of trials killed before their handle was kept.
        now: the loop's clock now (a followed trial's timeout counts from here).
    """
    from optuna.trial import TrialState as OptunaState

    left = LeftBehind()
    attrs = study.user_attrs
    for frozen in study.get_trials(deepcopy=False):
        if not is_own(frozen):
            continue
        record = TrialRecord.from_optuna(frozen, attrs)
        if frozen.state == OptunaState.WAITING:
            left.queued.append(dict(frozen.system_attrs.get("fixed_params", {})))
        elif frozen.state != OptunaState.RUNNING:
            left.finished.append(record)
        elif (running := _follow(study, backend, kind, frozen, record, now)) is not None:
            left.running[frozen.number] = running
        else:
            left.interrupted.append(replace(record, state=TrialState.CANCELLED))
            params = dict(frozen.params)
            requeue(study, trial_id(frozen), params)
            if params:
                left.queued.append(params)
    return left


def _follow(
    study: optuna.Study,
    backend: Backend,
    kind: str,
    frozen: optuna.trial.FrozenTrial,
    record: TrialRecord,
    now: float,
) -> RunningTrial | None:
    """The trial, followed again, if its backend can still report on it."""
    attempt = int(frozen.user_attrs.get(Attr.ATTEMPTS, 1)) - 1
    stored = frozen.user_attrs.get(Attr.HANDLE)
    # Killed between submitting and storing the handle: the backend may still find the trial
    # by its number and attempt (SageMaker job names are made of them).
    handle = (
        TrialHandle.from_json(stored)
        if stored
        else TrialHandle(kind, frozen.number, {"attempt": attempt})
    )
    if not backend.reattach(handle):
        _log.info("trial %d was interrupted; queueing it again", frozen.number)
        return None
    _log.info("trial %d is still running; following it", frozen.number)
    running = RunningTrial(live_trial(study, frozen), record, handle, now, attempt=attempt)
    running.spent = record.cost
    running.last_step = max(frozen.intermediate_values, default=-1)
    return running


def requeue(study: optuna.Study, stored_id: int, params: dict[str, Any]) -> None:
    """Ends an interrupted trial as CANCELLED and queues its configuration again."""
    store_requeued(storage_of(study), stored_id)
    if params:
        study.enqueue_trial(params, skip_if_exists=False)
