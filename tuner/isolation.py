"""Keeps what one trial changes in its process from reaching the next trial there.

Ray reuses worker processes, so whatever is global to a process outlives the trial that changed
it: the environment, the working directory, ``sys.path``, the root logger, warnings filters,
the global random generators, and MLflow's fluent state (the active run of each thread, the
tracking URI, the experiment). :func:`isolated` takes a snapshot before a function trial and
puts it back after; the global random generators are reseeded from fresh entropy before each
trial, as in a new process, so trials sharing a worker never share random streams.

MLflow's fluent API needs more than a snapshot. A trial gets its run's id in ``MLFLOW_RUN_ID``,
but MLflow reads that variable once and deletes it: the second ``mlflow.start_run()``, the next
autologged ``fit`` or a call from another thread would each open a stray run. While a trial
runs, :func:`isolated` therefore points ``mlflow.start_run`` at the trial's run (when MLflow
is loaded, or as soon as the trial imports it: a trial that never logs never pays for it). A
call without a ``run_id`` resumes it (from any thread, as often as the code likes, also while a
fluent call has it active already), and a nested call with no active run becomes its child.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.abc
import importlib.util
import logging
import os
import random
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, cast

_trial_run: str | None = None
"""The MLflow run of the trial running in this process (what ``start_run()`` resumes)."""
_running = 0
"""Trials inside :func:`isolated` in this process now."""
_lock = threading.Lock()


@contextlib.contextmanager
def isolated(env: Mapping[str, str]) -> Iterator[None]:
    """Runs a trial with ``env`` added to the environment, then undoes what it changed.

    Args:
        env: the trial's own variables (``TUNER_TRIAL``, ``MLFLOW_RUN_ID``, ``trial.env``).

    Isolation is per process, for a trial that has its process to itself and runs on its
    main thread (as a Ray task does). A trial run on another thread shares its process with
    whoever runs there (the in-process test backend's orchestrator, other trials) and may
    outlive it: it only gets its variables set and taken away again, since putting the whole
    process back from that thread would undo what the others changed meanwhile.
    """
    global _running
    with _lock:
        _running += 1
        alone = _running == 1 and threading.current_thread() is threading.main_thread()
    try:
        with _whole_process(env) if alone else _variables(env):
            yield
    finally:
        with _lock:
            _running -= 1


@contextlib.contextmanager
def _variables(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _whole_process(env: Mapping[str, str]) -> Iterator[None]:
    global _trial_run
    saved_env = dict(os.environ)
    saved_cwd = _cwd()
    saved_path = list(sys.path)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_filters = copy.copy(warnings.filters)
    saved_mlflow = _mlflow_state()
    os.environ.update(env)
    _reseed()
    _trial_run = env.get("MLFLOW_RUN_ID")
    if _trial_run:
        _route_mlflow_when_loaded()
    try:
        yield
    finally:
        _trial_run = None
        _restore_mlflow_state(saved_mlflow)
        os.environ.clear()
        os.environ.update(saved_env)
        if saved_cwd is not None and _cwd() != saved_cwd:
            with contextlib.suppress(OSError):
                os.chdir(saved_cwd)
        sys.path[:] = saved_path
        for handler in root.handlers:
            if handler not in saved_handlers:
                with contextlib.suppress(Exception):
                    handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        cast(list[Any], warnings.filters)[:] = saved_filters
        mutated = getattr(warnings, "_filters_mutated", None)
        if mutated is not None:
            mutated()


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed under us
        return None


def _reseed() -> None:
    """Fresh entropy for the global generators a trial may use without seeding them."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        with contextlib.suppress(Exception):
            torch.seed()


# --- MLflow's fluent state -------------------------------------------------------------------


def _mlflow_state() -> dict[str, Any] | None:
    """The fluent API's process-wide settings, if MLflow is loaded; its runs are dropped."""
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None:
        return None
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    _forget_active_runs(fluent)
    return {
        "experiment": getattr(fluent, "_active_experiment_id", None),
        "tracking_uri": getattr(tracking, "_tracking_uri", None),
        "registry_uri": getattr(registry, "_registry_uri", None),
    }


def _restore_mlflow_state(saved: dict[str, Any] | None) -> None:
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None:
        return
    # A run the trial left active (a fluent call without `with`) belongs to the trial; its
    # status is the trial's, which the orchestrator writes. Forget it without ending it.
    _forget_active_runs(fluent)
    saved = saved or {}
    fluent._active_experiment_id = saved.get("experiment")  # type: ignore[attr-defined]  # noqa: SLF001
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None:
        setattr(tracking, "_tracking_uri", saved.get("tracking_uri"))  # noqa: B010
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    if registry is not None:
        setattr(registry, "_registry_uri", saved.get("registry_uri"))  # noqa: B010


def _forget_active_runs(fluent: Any) -> None:
    """Empties every thread's stack of active runs (one trial runs in a worker at a time)."""
    for name in ("_active_run_stack", "_last_active_run_id"):
        variable = getattr(fluent, name, None)
        if variable is not None and hasattr(variable, "reset"):
            variable.reset()


def _route_mlflow_when_loaded() -> None:
    """Routes ``mlflow.start_run`` now if MLflow is loaded, else when the trial imports it.

    Importing MLflow up front would cost every fresh worker seconds, for trials that never log
    to MLflow too.
    """
    if "mlflow.tracking.fluent" in sys.modules:
        _route_mlflow_to_trial()
    elif not any(isinstance(finder, _RouteOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RouteOnImport())


class _RouteOnImport(importlib.abc.MetaPathFinder):
    """Finds ``mlflow`` as the other finders do, and routes its ``start_run`` once loaded."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "mlflow":
            return None
        sys.meta_path.remove(self)  # found once; the import system does the rest
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRoute(spec.loader)
        return spec


class _ThenRoute(importlib.abc.Loader):
    """A loader that runs the real one, then routes MLflow to the trial's run."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _route_mlflow_to_trial()

    def __getattr__(self, name: str) -> Any:  # resources, source: the real loader's
        return getattr(self._loader, name)


def _route_mlflow_to_trial() -> None:
    """Makes ``mlflow.start_run`` resume the trial's run (installed once per process)."""
    try:
        import mlflow
        from mlflow.tracking import fluent
    except ImportError:  # the trial cannot log to MLflow anyway
        return
    with _lock:
        if getattr(fluent.start_run, "__tuner_routed__", False):
            return
        original = fluent.start_run

        @functools.wraps(original)
        def start_run(*args: Any, **kwargs: Any) -> Any:
            run = _trial_run
            if run is None or args or kwargs.get("run_id"):
                return original(*args, **kwargs)
            active = fluent.active_run()
            if active is not None and active.info.run_id == run and not kwargs.get("nested"):
                # A fluent call already resumed the trial's run on this thread: this is it.
                return active
            if active is None:
                if kwargs.get("nested"):
                    kwargs.setdefault("parent_run_id", run)
                else:
                    # The trial's run lives in the study's experiment, whatever the code set.
                    fluent._active_experiment_id = None  # noqa: SLF001
                    kwargs["run_id"] = run
                    kwargs.pop("experiment_id", None)
                    kwargs.pop("run_name", None)  # the run keeps its trial-NNNN name
            return original(**kwargs)

        start_run.__tuner_routed__ = True  # type: ignore[attr-defined]
        fluent.start_run = start_run
        mlflow.start_run = start_run
