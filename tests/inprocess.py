"""An in-process backend for fast loop tests, registered like any third-party backend.

Trials run in threads (real trial code through ``tuner.trial_runner``). The conftest registers
it in the ``tuner.backends`` entry-point group as ``inprocess``.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, Literal

from tuner.backend import (
    BackendConfig,
    BackendContext,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.trial_runner import run_function


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
        self._pool = ThreadPoolExecutor(max_workers=self.config.workers)
        self._updates: queue.Queue[TrialUpdate] = queue.Queue()
        self._futures: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self.submitted: list[TrialSpec] = []
        self.cancelled: list[int] = []
        self.reattachable: set[int] = set()
        self.closed = False

    @property
    def capacity(self) -> int:
        return self.config.workers

    def submit(self, trial: TrialSpec) -> TrialHandle:
        self.submitted.append(trial)

        def work() -> None:
            def reporter(step: int, metrics: Any) -> None:
                self._updates.put(
                    TrialUpdate(trial.number, TrialStatus.RUNNING, dict(metrics), step)
                )

            result = run_function(trial.entry, trial.params, trial.objective, reporter)
            if trial.number in self.cancelled:
                return
            self._updates.put(
                TrialUpdate(
                    trial.number,
                    result.status,
                    result.metrics,
                    error=result.error,
                    traceback=result.traceback,
                    node="local-thread",
                )
            )

        self._futures[trial.number] = self._pool.submit(work)
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

    def cancel(self, handle: TrialHandle) -> None:
        if handle.trial not in self.cancelled:
            self.cancelled.append(handle.trial)
            self._futures[handle.trial].cancel()

    def reattach(self, handle: TrialHandle) -> bool:
        return handle.trial in self.reattachable

    def close(self) -> None:
        self.closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
