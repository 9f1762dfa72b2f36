"""``tuner.report``: intermediate metrics from code running inside a trial.

Example:
    >>> import tuner
    >>> def train(params):
    ...     for epoch in range(3):
    ...         tuner.report(step=epoch, val_loss=1.0 / (epoch + 1))
    ...     return {"val_loss": 0.25}
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

Reporter = Callable[[int, Mapping[str, float]], None]
"""Receives ``(step, metrics)`` for the trial that is running."""

_current: ContextVar[_StepCounter | None] = ContextVar("tuner_reporter", default=None)
_warned_outside = False


class _StepCounter:
    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.next_step = 0


def report(step: int | None = None, **metrics: float) -> None:
    """Reports intermediate metrics of the running trial.

    Args:
        step: the step (epoch, iteration) the metrics belong to; one past the previous
            report's step if omitted.
        **metrics: metric names and numeric values.

    Raises:
        ValueError: if a metric is not a number or its name uses the reserved ``tuner.`` prefix.

    Outside a trial (running the training function by hand) this only warns once.
    """
    global _warned_outside
    counter = _current.get()
    if counter is None:
        if not _warned_outside:
            warnings.warn("tuner.report() called outside a trial; ignored", stacklevel=2)
            _warned_outside = True
        return
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if name.startswith("tuner."):
            raise ValueError(f"metric {name!r} uses the reserved `tuner.` prefix; rename it")
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value)  # numpy and torch scalars
            except (TypeError, ValueError):
                raise ValueError(f"metric {name!r} must be a number, got {value!r}") from None
        clean[name] = float(value)
    if step is None:
        step = counter.next_step
    counter.next_step = step + 1
    counter.reporter(int(step), clean)


@contextmanager
def reporting_to(reporter: Reporter) -> Iterator[None]:
    """Routes :func:`report` calls in this context to ``reporter`` (used by backends)."""
    token = _current.set(_StepCounter(reporter))
    try:
        yield
    finally:
        _current.reset(token)
