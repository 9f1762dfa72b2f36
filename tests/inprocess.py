"""An in-process backend for fast loop tests, registered like any third-party backend.

Trials run in daemon threads (real trial code through ``tuner.trial_runner``); a cancelled
thread is abandoned, as a thread cannot be stopped. The conftest registers the backend in the
``tuner.backends`` entry-point group as ``inprocess``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, ClassVar, Literal

from tuner.backend import (
    BackendConfig,
    BackendContext,
    ErrorKind,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.trial_runner import run_trial


class InProcessConfig(BackendConfig):
    type: Literal["inprocess"] = "inprocess"
    workers: int = 4


class InProcessBackend:
    """Runs trials on a thread pool; records what it was asked to do."""

    name: ClassVar[str] = "inprocess"
    Config: ClassVar[type[InProcessConfig]] = InProcessConfig

    def __init__(
        self, config: InProcessConfig | None = None, context: BackendContext | None = None
    ):
        self.config = config or InProcessConfig()
        self._updates: queue.Queue[TrialUpdate] = queue.Queue()
        self.submitted: list[TrialSpec] = []
        self.cancelled: list[int] = []
        self.reattachable: set[int] = set()
        self.infra_failures: dict[int, int] = {}
        """Trial number -> how many of its first attempts die as if their worker was lost."""
        self.closed = False
        self._lost: set[int] = set()

    @property
    def capacity(self) -> int:
        return self.config.workers

    def submit(self, trial: TrialSpec) -> TrialHandle:
        self.submitted.append(trial)
        if trial.attempt < self.infra_failures.get(trial.number, 0):
            self._updates.put(
                TrialUpdate(
                    trial.number,
                    TrialStatus.FAILED,
                    error="WorkerCrashedError: the worker died",
                    error_kind=ErrorKind.INFRA,
                )
            )
            return TrialHandle(self.name, trial.number, {"attempt": trial.attempt})

        def work() -> None:
            def reporter(step: int, metrics: Any) -> None:
                self._updates.put(
                    TrialUpdate(trial.number, TrialStatus.RUNNING, dict(metrics), step)
                )

            result = run_trial(trial.entry, trial.params, trial.objective, reporter, grace=1.0)
            if trial.number in self.cancelled or trial.number in self._lost:
                return
            self._updates.put(
                TrialUpdate(
                    trial.number,
                    result.status,
                    result.metrics,
                    error=result.error,
                    traceback=result.traceback,
                    node="local-thread",
                    log=result.log,
                )
            )

        threading.Thread(target=work, name=f"trial-{trial.number}", daemon=True).start()
        return TrialHandle(self.name, trial.number, {"thread": True})

    def poll(self, timeout: float) -> list[TrialUpdate]:
        updates = []
        try:
            updates.append(self._updates.get(timeout=timeout))
        except queue.Empty:
            return []
        while True:
            try:
                updates.append(self._updates.get_nowait())
            except queue.Empty:
                return updates

    def lose_worker(self, number: int) -> None:
        """The trial's worker dies under it, as a killed Ray worker would (an INFRA failure);
        its thread, which cannot be stopped, is abandoned."""
        self._lost.add(number)
        self._updates.put(
            TrialUpdate(
                number,
                TrialStatus.FAILED,
                error="WorkerCrashedError: the worker died",
                error_kind=ErrorKind.INFRA,
            )
        )

    def cancel(self, handle: TrialHandle) -> None:
        if handle.trial not in self.cancelled:
            self.cancelled.append(handle.trial)

    def reattach(self, handle: TrialHandle) -> bool:
        return handle.trial in self.reattachable

    def close(self) -> None:
        self.closed = True
