"""The live progress display of ``tuner run``: a bar, counts, the best so far, a line a trial."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from tuner.events import Listener, StudyStart
from tuner.records import StudySummary, TrialRecord, TrialState

_STYLE = {
    TrialState.COMPLETE: "green",
    TrialState.FAILED: "red",
    TrialState.PRUNED: "yellow",
    TrialState.CANCELLED: "yellow",
}


class ProgressDisplay(Listener):
    """Shows a study's progress on a rich console.

    Args:
        console: where to draw.
        trial_lines: print one line per finished trial above the bar.
    """

    def __init__(self, console: Console, *, trial_lines: bool = True):
        self._console = console
        self._trial_lines = trial_lines
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._metrics: tuple[str, ...] = ("value",)
        self._running = 0

    def study_started(self, start: StudyStart) -> None:
        spec = start.spec
        self._metrics = tuple(o.metric for o in spec.objectives)
        verb = "resuming" if start.resumed else "starting"
        self._console.print(
            f"[bold]{spec.name}[/]: {verb} — {spec.strategy.type} strategy "
            f"(engine [bold]{start.engine}[/], seed {start.seed}), "
            f"{spec.budget.max_concurrent} at a time on {start.backend}",
            highlight=False,
        )
        if start.warm_start is not None:
            self._console.print(f"warm start: {start.warm_start}", markup=False, highlight=False)
        done = sum(1 for t in start.trials if t.state.is_finished())
        total = spec.budget.max_trials
        if total is None and spec.strategy.type == "grid":
            total = spec.search_space.grid_size()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self._console,
        )
        self._task = self._progress.add_task(
            "trials", total=total, completed=done, status="starting the backend…"
        )
        self._progress.start()

    def trial_started(self, record: TrialRecord) -> None:
        self._running += 1

    def trial_finished(self, record: TrialRecord) -> None:
        self._running = max(0, self._running - 1)
        if self._progress is None or not self._trial_lines:
            return
        style = _STYLE.get(record.state, "white")
        outcome, details = trial_line(record, self._metrics)
        if record.state is TrialState.FAILED:
            outcome = f"[red]{escape(outcome)}[/]"
        self._progress.console.print(
            f"[{style}]#{record.number:<4}[/] {outcome}  [dim]{escape(details)}[/]",
            highlight=False,
            soft_wrap=True,
        )

    def trial_retried(self, number: int, attempt: int, error: str) -> None:
        if self._progress is not None:
            self._progress.console.print(
                f"[yellow]#{number:<4}[/] {error} — retrying (attempt {attempt})", highlight=False
            )

    def study_progress(self, summary: StudySummary) -> None:
        if self._progress is None or self._task is None:
            return
        status = status_line(summary, self._running, self._metrics)
        self._progress.update(self._task, completed=summary.finished, status=status)

    def study_finished(self, summary: StudySummary) -> None:
        self.study_progress(summary)
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def trial_line(record: TrialRecord, metrics: Sequence[str]) -> tuple[str, str]:
    """A finished trial's outcome (its objectives, error or state) and its parameters,
    seconds and the engine that proposed it, as the progress displays show them."""
    values = record.objective_values or ()
    if record.state is TrialState.COMPLETE and len(values) == len(metrics):
        outcome = " ".join(f"{m}={format_value(v)}" for m, v in zip(metrics, values, strict=True))
        if record.infeasible:
            outcome += f" infeasible: {record.infeasible}"
    elif record.state is TrialState.FAILED:
        outcome = f"failed: {record.error}"
    else:
        outcome = record.state.value.lower()
    params = " ".join(f"{k}={format_value(v)}" for k, v in record.params.items())
    seconds = f" ({record.duration:.1f}s)" if record.duration is not None else ""
    engine = f" · {record.engine}" if record.engine else ""
    return outcome, params + seconds + engine


def status_line(summary: StudySummary, running: int, metrics: Sequence[str]) -> str:
    """Running and failed trials and the best so far (or the Pareto front's size), in one
    line."""
    status = f"running {running} · failed {summary.counts[TrialState.FAILED]}"
    if len(metrics) > 1:
        if summary.front:
            status += f" · Pareto front {len(summary.front)} trials"
    elif summary.best is not None:
        best = format_value(summary.best.value)
        status += f" · best {metrics[0]} {best} (#{summary.best.number})"
    return status


def format_value(value: Any) -> str:
    """A parameter or metric value, short."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
