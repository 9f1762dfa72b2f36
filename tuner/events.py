"""The study's events: what the loop tells its listeners, and the fan-out that tells them.

The vocabulary lives here, apart from any listener: the MLflow mirror (:mod:`tuner.tracking`)
and the progress display (:mod:`tuner.progress`) each implement what they care about, and the
loop calls :class:`Listeners` with typed methods, in order, from its own thread. A listener
that raises is logged and skipped: a display or a tracking server never stops a study.

Example:
    >>> class Printer(Listener):
    ...     def trial_finished(self, record):
    ...         print(record.number, record.state.value)
    >>> events = Listeners([Printer()])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from tuner.records import StudySummary, TrialRecord

if TYPE_CHECKING:
    from tuner.spec import StudySpec

_log = logging.getLogger("tuner")
T = TypeVar("T")


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
    warm_start: str | None = None
    """What a warm start told the strategy (``12 trials from study earlier``), if it had one."""


class StudyListener(Protocol):
    """Receives the study's events, in order, from the study loop's thread."""

    def study_started(self, start: StudyStart) -> None:
        """The study is about to launch trials."""

    def trial_environment(self, number: int) -> Mapping[str, str]:
        """Environment variables for a trial about to be submitted."""
        return {}

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


class Listener:
    """A listener that ignores everything; subclass it to handle only some events."""

    def study_started(self, start: StudyStart) -> None:
        return None

    def trial_environment(self, number: int) -> Mapping[str, str]:
        return {}

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


class Listeners(Listener):
    """Tells every listener each event, in the order they were given; one that raises is
    logged and the others still hear it."""

    def __init__(self, listeners: Iterable[StudyListener]):
        self._listeners = list(listeners)

    def __iter__(self) -> Iterator[StudyListener]:
        return iter(self._listeners)

    def study_started(self, start: StudyStart) -> None:
        for listener in self._listeners:
            _safely(listener.study_started, start)

    def trial_environment(self, number: int) -> Mapping[str, str]:
        """What every listener adds to the trial's environment, later ones winning."""
        env: dict[str, str] = {}
        for listener in self._listeners:
            provided = _safely(listener.trial_environment, number)
            if provided:
                env.update(provided)
        return env

    def trial_started(self, record: TrialRecord) -> None:
        for listener in self._listeners:
            _safely(listener.trial_started, record)

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        for listener in self._listeners:
            _safely(listener.trial_reported, number, step, metrics)

    def trial_finished(self, record: TrialRecord) -> None:
        for listener in self._listeners:
            _safely(listener.trial_finished, record)

    def trial_retried(self, number: int, attempt: int, error: str) -> None:
        for listener in self._listeners:
            _safely(listener.trial_retried, number, attempt, error)

    def study_progress(self, summary: StudySummary) -> None:
        for listener in self._listeners:
            _safely(listener.study_progress, summary)

    def study_finished(self, summary: StudySummary) -> None:
        for listener in self._listeners:
            _safely(listener.study_finished, summary)

    def close(self) -> None:
        for listener in self._listeners:
            _safely(listener.close)


def _safely(method: Callable[..., T], *args: object) -> T | None:
    try:
        return method(*args)
    except Exception:  # a listener must not take the study down
        _log.exception("ignored error in %s", getattr(method, "__qualname__", method))
        return None
