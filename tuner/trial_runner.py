"""Runs one trial where a backend put it, and turns what happened into a record.

This module is what backends execute on their workers; it imports no backend library. A
function trial is called in the worker's process; a command trial runs as a child process in
its own process group, which is terminated (SIGTERM, then SIGKILL after a grace period) when
the trial is cancelled, and which dies with the worker if the worker is killed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.backend import CommandEntry, FunctionEntry, MetricDefinition, TrialStatus
from tuner.functions import load_function
from tuner.isolation import isolated
from tuner.records import TRACEBACK_CHARS
from tuner.report import Reporter, reporting_to

LOG_HEAD = 64 * 1024
LOG_TAIL = 2 * 1024 * 1024
"""A trial's output is kept whole up to these sizes: its start, and its end."""
PARAMS_FILE_ENV = "TUNER_PARAMS_FILE"

# Sets the parent-death signal, then becomes the command: if the worker running the trial is
# killed, the command is killed with it instead of living on as an orphan.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL); "
    "os.getppid() == 1 and sys.exit(137); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


@dataclass(frozen=True)
class AttemptResult:
    """What running a trial's code once produced, where it ran (one attempt).

    A backend turns it into the :class:`~tuner.backend.TrialUpdate` it reports; the loop turns
    updates into the study's :class:`~tuner.records.TrialRecord`.
    """

    status: TrialStatus
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    log: str | None = None


class OutputLog:
    """A trial's output, kept whole unless it is huge (then its head and its tail)."""

    def __init__(self, head: int = LOG_HEAD, tail: int = LOG_TAIL):
        self._head_limit = head
        self._tail_limit = tail
        self._head: list[str] = []
        self._head_size = 0
        self._tail: list[str] = []
        self._tail_size = 0
        self._cut = 0

    def write(self, text: str) -> int:
        if self._head_size < self._head_limit:
            self._head.append(text)
            self._head_size += len(text)
            return len(text)
        self._tail.append(text)
        self._tail_size += len(text)
        while self._tail_size > self._tail_limit and len(self._tail) > 1:
            dropped = self._tail.pop(0)
            self._tail_size -= len(dropped)
            self._cut += len(dropped)
        return len(text)

    def flush(self) -> None:
        return None

    def text(self) -> str:
        middle = [f"\n[... {self._cut} characters cut ...]\n"] if self._cut else []
        return "".join([*self._head, *middle, *self._tail])


def run_trial(
    entry: FunctionEntry | CommandEntry,
    params: Mapping[str, Any],
    objective: str,
    reporter: Reporter,
    *,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    grace: float = 10.0,
) -> AttemptResult:
    """Runs a function or command trial; see :func:`run_function` and :func:`run_command`."""
    if isinstance(entry, CommandEntry):
        return run_command(entry, params, reporter, env=env, grace=grace)
    return run_function(entry, params, objective, reporter, env=env, capture=capture)


def run_function(
    entry: FunctionEntry,
    params: Mapping[str, Any],
    objective: str,
    reporter: Reporter,
    *,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
) -> AttemptResult:
    """Calls the trial function; errors become a ``FAILED`` result, never an exception.

    Args:
        entry: the function to call.
        params: the trial's configuration (the function gets a copy).
        objective: the metric a bare number returned by the function is taken as.
        reporter: receives ``tuner.report`` calls made while the function runs.
        env: environment variables set while the function runs.
        capture: keep what the function prints (only where one trial runs per process).

    What the function changes in its process (environment, working directory, ``sys.path``,
    MLflow's active run, ...) is undone afterwards (:func:`tuner.isolation.isolated`), so the
    next trial in a reused worker starts clean.

    ``KeyboardInterrupt`` (how Ray cancels a task) is not caught.
    """
    log = OutputLog() if capture else None
    try:
        function = load_function(entry)
        with isolated(env or {}), _captured(log), reporting_to(reporter):
            returned = function(dict(params))
    except Exception as exc:
        tb = traceback.format_exc()
        return AttemptResult(
            TrialStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            traceback=tb[-TRACEBACK_CHARS:],
            log=log.text() if log else None,
        )
    result = result_from_return(returned, objective)
    if log is None:
        return result
    return AttemptResult(result.status, result.metrics, result.error, result.traceback, log.text())


def hyperparameter_string(value: Any) -> str:
    """A parameter's value as text: strings as they are, other values as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def command_arguments(params: Mapping[str, Any]) -> list[str]:
    """The parameters as arguments, the way SageMaker's training toolkit passes them:
    ``--name value``, and ``-n value`` for a one-letter name."""
    args: list[str] = []
    for name, value in params.items():
        args += [f"-{name}" if len(name) == 1 else f"--{name}", hyperparameter_string(value)]
    return args


def run_command(
    entry: CommandEntry,
    params: Mapping[str, Any],
    reporter: Reporter,
    *,
    env: Mapping[str, str] | None = None,
    grace: float = 10.0,
) -> AttemptResult:
    """Runs the trial's program (no shell) and reads its metrics from its output.

    The hyperparameters are passed as ``--name value`` arguments and in a JSON file whose path
    is in ``TUNER_PARAMS_FILE``. Each output line (stdout and stderr, in order) is matched
    against the metric definitions; every match is reported at once, and the last value of each
    metric is the trial's final metric. A non-zero exit is a ``FAILED`` result.

    Args:
        entry: the command.
        params: the trial's configuration.
        reporter: receives each metric value as it is printed.
        env: extra environment variables.
        grace: seconds between SIGTERM and SIGKILL when the trial is cancelled.
    """
    argv = list(entry.argv)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    argv += command_arguments(params)
    workdir = entry.workdir if entry.workdir and os.path.isdir(entry.workdir) else None
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if program is None or not os.access(os.path.join(workdir or "", program), os.X_OK):
        return AttemptResult(
            TrialStatus.FAILED,
            error=f"cannot run {entry.argv[0]!r}: not an executable program on the PATH "
            "or relative to the trial's workdir",
        )
    if sys.platform.startswith("linux"):
        argv = [sys.executable, "-c", _DIE_WITH_PARENT, *argv]
    parser = MetricParser(entry.metric_definitions)
    log = OutputLog()
    with tempfile.TemporaryDirectory(prefix="tuner-trial-") as scratch:
        params_file = Path(scratch) / "params.json"
        params_file.write_text(json.dumps(dict(params)))
        child_env = {
            **os.environ,
            **(env or {}),
            PARAMS_FILE_ENV: str(params_file),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                text=True,
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            return AttemptResult(TrialStatus.FAILED, error=f"cannot start {entry.argv[0]!r}: {exc}")
        try:
            for line in _lines(process):
                log.write(line)
                for name, step, value in parser.feed(line):
                    reporter(step, {name: value})
            code = process.wait()
        finally:
            stop_process_group(process, grace)
    output = log.text()
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return AttemptResult(
            TrialStatus.FAILED,
            parser.last,
            error=f"command {how}",
            traceback=output[-TRACEBACK_CHARS:],
            log=output,
        )
    return AttemptResult(TrialStatus.COMPLETED, parser.last, log=output)


def _lines(process: subprocess.Popen[str]) -> Iterator[str]:
    """The process's output lines as they come.

    A helper thread reads the pipe, so this thread never blocks for long: Ray cancels a task
    by raising ``KeyboardInterrupt`` between bytecodes, which a blocking read would delay until
    the next line.
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.put(line)
        finally:
            lines.put(None)

    threading.Thread(target=pump, name="tuner-command-output", daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            return
        yield line


def stop_process_group(process: subprocess.Popen[str], grace: float) -> None:
    """SIGTERM to the process's group, SIGKILL after ``grace`` seconds; reaps the process.

    Also sweeps up what the command left running in its group after it exited.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class MetricParser:
    """Reads metric values from output lines with SageMaker-style metric definitions."""

    def __init__(self, definitions: tuple[MetricDefinition, ...]):
        self._patterns = [(d.name, re.compile(d.regex)) for d in definitions]
        self._steps: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def feed(self, line: str) -> list[tuple[str, int, float]]:
        """The ``(name, step, value)`` of every metric in ``line``; a metric's n-th value has
        step n."""
        found = []
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if match is None:
                continue
            try:
                value = float(match.group(1))
            except (TypeError, ValueError):
                continue
            step = self._steps.get(name, 0)
            self._steps[name] = step + 1
            self.last[name] = value
            found.append((name, step, value))
        return found


def result_from_return(returned: Any, objective: str) -> AttemptResult:
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
    return AttemptResult(TrialStatus.COMPLETED, metrics)


def objective_problem(metrics: Mapping[str, float], objective: str) -> str | None:
    """Why ``metrics`` cannot be told as the trial's result, or ``None`` if they can."""
    if objective not in metrics:
        got = ", ".join(sorted(metrics)) or "no metrics"
        return f"the trial reported no `{objective}` metric (it reported: {got})"
    value = metrics[objective]
    if not math.isfinite(value):
        return f"the objective `{objective}` is {value}, not a finite number"
    return None


def _failed(error: str) -> AttemptResult:
    return AttemptResult(TrialStatus.FAILED, error=error)


@contextlib.contextmanager
def _captured(log: OutputLog | None) -> Iterator[None]:
    if log is None:
        yield
        return
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield
