"""Runs one function trial where a backend put it, and turns what happened into a record.

This module is what backends execute on their workers; it imports no backend library.
"""

from __future__ import annotations

import importlib
import math
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.backend import FunctionEntry, TrialStatus
from tuner.report import Reporter, reporting_to

TRACEBACK_LIMIT = 8000
"""Characters of a traceback kept with a failed trial (its end, where the error is)."""


@dataclass(frozen=True)
class TrialResult:
    """The outcome of running a trial function once."""

    status: TrialStatus
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


def load_function(entry: FunctionEntry) -> Callable[[dict[str, Any]], Any]:
    """The callable behind ``entry``, imported with its search path if need be."""
    if entry.function is not None:
        return entry.function
    for path in reversed(entry.search_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    module_name, _, attr = entry.ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    function: Callable[[dict[str, Any]], Any] = target
    return function


def run_function(
    entry: FunctionEntry,
    params: Mapping[str, Any],
    objective: str,
    reporter: Reporter,
) -> TrialResult:
    """Calls the trial function and never raises: errors become a ``FAILED`` result.

    Args:
        entry: the function to call.
        params: the trial's configuration (the function gets a copy).
        objective: the metric a bare number returned by the function is taken as.
        reporter: receives ``tuner.report`` calls made while the function runs.
    """
    try:
        function = load_function(entry)
        with reporting_to(reporter):
            returned = function(dict(params))
    except Exception as exc:
        tb = traceback.format_exc()
        return TrialResult(
            TrialStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            traceback=tb[-TRACEBACK_LIMIT:],
        )
    return result_from_return(returned, objective)


def result_from_return(returned: Any, objective: str) -> TrialResult:
    """Turns what a trial function returned into metrics, or a ``FAILED`` result saying why."""
    if isinstance(returned, Mapping):
        raw = dict(returned)
    elif isinstance(returned, bool) or returned is None:
        return _failed(
            f"the trial function returned {returned!r}; return the value of `{objective}` "
            "or a dict of metrics that includes it"
        )
    else:
        raw = {objective: returned}
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            return _failed(f"metric names must be strings, got {name!r}")
        if name.startswith("tuner."):
            return _failed(f"metric {name!r} uses the reserved `tuner.` prefix; rename it")
        try:
            metrics[name] = float(value)
        except (TypeError, ValueError):
            return _failed(f"metric {name!r} must be a number, got {value!r}")
    return TrialResult(TrialStatus.COMPLETED, metrics)


def objective_problem(metrics: Mapping[str, float], objective: str) -> str | None:
    """Why ``metrics`` cannot be told as the trial's result, or ``None`` if they can."""
    if objective not in metrics:
        got = ", ".join(sorted(metrics)) or "no metrics"
        return f"the trial reported no `{objective}` metric (it reported: {got})"
    value = metrics[objective]
    if not math.isfinite(value):
        return f"the objective `{objective}` is {value}, not a finite number"
    return None


def _failed(error: str) -> TrialResult:
    return TrialResult(TrialStatus.FAILED, error=error)
