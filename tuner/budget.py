"""When a study stops launching trials: its budget against what it has used so far."""

from __future__ import annotations

from dataclasses import dataclass

from tuner.records import StopReason
from tuner.spec import Budget

HARD_STOPS = (StopReason.INTERRUPTED, StopReason.MAX_TIME, StopReason.MAX_FAILURES)
"""Stops that cancel running trials; the others let them finish."""


@dataclass(frozen=True)
class Usage:
    """What a study has used of its budget."""

    failures: int
    finished: int
    running: int
    elapsed: float
    """Seconds since this run of the study started."""
    spent: float
    """USD on finished trials and, so far, on running ones."""


def stop_reason(budget: Budget, usage: Usage) -> tuple[StopReason | None, str | None]:
    """Why the study must stop launching trials (``None`` if it need not), and what to tell the
    researcher about it."""
    if usage.failures >= budget.max_failures:
        return StopReason.MAX_FAILURES, (
            f"{usage.failures} trials failed (budget.max_failures = {budget.max_failures}); "
            "see the errors with `tuner status`, fix the trial code, then `tuner resume`"
        )
    if budget.max_time is not None and usage.elapsed >= budget.max_time:
        return StopReason.MAX_TIME, None
    if budget.max_trials is not None and usage.finished + usage.running >= budget.max_trials:
        return StopReason.MAX_TRIALS, None
    if budget.max_cost is not None and usage.spent >= budget.max_cost:
        return StopReason.MAX_COST, (
            f"spent ${usage.spent:.2f} of budget.max_cost ${budget.max_cost:g}; "
            "running trials finish, no new one starts"
        )
    return None, None
