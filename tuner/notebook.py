"""The live progress of a study in a Jupyter notebook: one output that updates in place.

A terminal gets rich's animated bar (:mod:`tuner.progress`); a notebook gets this instead, an
HTML block (with a plain-text twin) kept up to date through IPython's display handle, so the
cell shows the bar, the counts, the best trial so far and the last trials, never escape codes.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tuner.events import Listener, StudyStart
from tuner.progress import status_line, trial_line
from tuner.records import StudySummary, TrialRecord

RECENT_TRIALS = 8
"""Finished trials listed under the bar."""
REFRESH_SECONDS = 0.5
"""Least time between two redraws (every trial's end redraws sooner than that is dropped)."""


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where output is rich HTML, not a terminal)."""
    import sys

    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _View:
    """What the display shows: HTML for Jupyter, text for everything else."""

    def __init__(self, text: str, markup: str):
        self._text = text
        self._markup = markup

    def __repr__(self) -> str:
        return self._text

    def _repr_html_(self) -> str:
        return self._markup


class NotebookProgress(Listener):
    """Shows a study's progress in the output of the running notebook cell.

    Args:
        clock: seconds, monotonic (to space the redraws).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._handle: Any = None
        self._header = ""
        self._metrics: tuple[str, ...] = ("value",)
        self._total: int | None = None
        self._summary: StudySummary | None = None
        self._recent: deque[str] = deque(maxlen=RECENT_TRIALS)
        self._running = 0
        self._drawn_at = -REFRESH_SECONDS
        self._footer = ""

    def study_started(self, start: StudyStart) -> None:
        spec = start.spec
        self._metrics = tuple(o.metric for o in spec.objectives)
        verb = "resuming" if start.resumed else "starting"
        self._header = (
            f"{spec.name}: {verb} — {spec.strategy.type} strategy (engine {start.engine}, "
            f"seed {start.seed}), {spec.budget.max_concurrent} at a time on {start.backend}"
        )
        if start.warm_start is not None:
            self._header += f"; warm start: {start.warm_start}"
        self._total = spec.budget.max_trials
        if self._total is None and spec.strategy.type == "grid":
            self._total = spec.search_space.grid_size()
        from IPython.display import display

        self._handle = display(self._view(), display_id=True)

    def trial_started(self, record: TrialRecord) -> None:
        self._running += 1

    def trial_finished(self, record: TrialRecord) -> None:
        self._running = max(0, self._running - 1)
        outcome, details = trial_line(record, self._metrics)
        self._recent.append(f"#{record.number} {outcome}  {details}")
        self._draw()

    def trial_retried(self, number: int, attempt: int, error: str) -> None:
        self._recent.append(f"#{number} {error} — retrying (attempt {attempt})")
        self._draw()

    def study_progress(self, summary: StudySummary) -> None:
        self._summary = summary
        self._draw()

    def study_finished(self, summary: StudySummary) -> None:
        self._summary = summary
        reason = summary.stop_reason.value if summary.stop_reason else "finished"
        self._footer = f"stopped: {reason}"
        self._draw(force=True)

    def close(self) -> None:
        self._draw(force=True)

    def _draw(self, *, force: bool = False) -> None:
        now = self._clock()
        if self._handle is None or (not force and now - self._drawn_at < REFRESH_SECONDS):
            return
        self._drawn_at = now
        self._handle.update(self._view())

    def _status(self) -> tuple[int, str]:
        summary = self._summary
        if summary is None:
            return 0, "starting the backend…"
        return summary.finished, status_line(summary, self._running, self._metrics)

    def _view(self) -> _View:
        done, status = self._status()
        of = f"/{self._total}" if self._total else ""
        lines = [self._header, f"trials {done}{of} · {status}", *self._recent]
        if self._footer:
            lines.append(self._footer)
        bar = (
            f'<progress value="{done}" max="{self._total}" style="width:20em"></progress> '
            if self._total
            else ""
        )
        markup = (
            f"<div><b>{html.escape(self._header)}</b><br>{bar}{done}{of} · "
            f"{html.escape(status)}<pre style='margin:0.3em 0'>"
            + html.escape("\n".join(self._recent))
            + "</pre>"
            + (f"<i>{html.escape(self._footer)}</i>" if self._footer else "")
            + "</div>"
        )
        return _View("\n".join(lines), markup)
