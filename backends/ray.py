"""The Ray backend: trials as Ray tasks on an embedded local cluster or an existing one.

Ray is imported only when the backend is built, so the rest of tuner works without it.
Intermediate metrics (``tuner.report``, or metric lines of a command) travel from the workers
to a small sink actor that each poll drains; a task waits until its last report is delivered
before it returns, so a trial's reports always arrive before its result.

Cancelling asks Ray to interrupt the task (a ``KeyboardInterrupt``: a command trial's process
group gets SIGTERM, then SIGKILL after ``cancel_grace``); a task still running after that is
killed with its worker.

One job, running trials on Ray: submitting, the report sink, polling and cancelling share the
tasks' table; only the trial itself (:mod:`tuner.trial_runner`) lives elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import threading
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuner.backend import (
    BackendConfig,
    BackendContext,
    CommandEntry,
    ErrorKind,
    FunctionEntry,
    MissingExtraError,
    Resources,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.trial_runner import AttemptResult, run_trial

_log = logging.getLogger(__name__)

REPORT_INTERVAL = 0.1
"""Seconds between drains of intermediate reports while trials run."""

_INFRA_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "OutOfMemoryError",
    "ObjectLostError",
    "OwnerDiedError",
    "RaySystemError",
    "LocalRayletDiedError",
    "ActorDiedError",
    "ActorUnavailableError",
)
"""Ray errors that mean the infrastructure, not the trial code, failed."""


class RayConfig(BackendConfig):
    """``backend: {type: ray}`` options."""

    type: Literal["ray"] = "ray"
    address: str | None = Field(
        None,
        description="An existing cluster (`auto`, `host:port`, `ray://host:10001`); "
        "an embedded local cluster if unset.",
    )
    num_cpus: int | None = Field(
        None, gt=0, description="CPUs of the embedded cluster (all of this machine's if unset)."
    )
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the embedded cluster.")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray runtime_env for the trials (working_dir, pip, env_vars, ...): how "
        "trial code reaches the nodes of a remote cluster.",
    )
    cancel_grace: float = Field(
        10.0, ge=0, description="Seconds a cancelled trial gets to stop before it is killed."
    )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", None, "the Ray backend") from None
    return ray


class _ReportSink:
    """Collects reports from every worker until the orchestrator drains them."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, int, dict[str, float]]] = []

    def put(self, trial: int, attempt: int, step: int, metrics: dict[str, float]) -> None:
        self._items.append((trial, attempt, step, metrics))

    def drain(self) -> list[tuple[int, int, int, dict[str, float]]]:
        items, self._items = self._items, []
        return items


class _Outbox:
    """Sends one trial's reports to the sink from a thread of its own.

    Ray cancels a running task by raising KeyboardInterrupt in it. Raised while an actor call
    is being submitted, it leaves a gap in the worker's call sequence, and the sink then waits
    30 s for the missing call, holding every report and the orchestrator's drain behind it
    (measured: pruning made a 15 s study take 40 s). Calls made from another thread are never
    cut in half.
    """

    def __init__(self, sink: Any, number: int, attempt: int):
        self._sink = sink
        self._trial = (number, attempt)
        self._queue: queue.SimpleQueue[tuple[int, dict[str, float]] | None] = queue.SimpleQueue()
        self.last: Any = None
        self._thread: threading.Thread | None = None  # started by the first report

    def put(self, step: int, metrics: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send, name="tuner-reports", daemon=True)
            self._thread.start()
        self._queue.put((step, dict(metrics)))

    def _send(self) -> None:
        while (item := self._queue.get()) is not None:
            self.last = self._sink.put.remote(*self._trial, *item)

    def close(self) -> Any:
        """Waits until every report is sent; returns the last call (None: none was made)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        return self.last


def _interruptible() -> None:
    """Lets Ray's cancel interrupt this worker: Ray raises KeyboardInterrupt through SIGINT,
    which a worker inherits as ignored when the cluster was started from a `nohup`'d or
    backgrounded process, and then every cancel waits to be escalated to a kill."""
    ignored = signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL)
    if ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _execute(
    number: int,
    attempt: int,
    entry: FunctionEntry | CommandEntry,
    params: dict[str, Any],
    objective: str,
    env: dict[str, str],
    grace: float,
    sink: Any,
) -> tuple[AttemptResult, str, bool]:
    """Runs on a Ray worker: the trial, then a wait for its last report to be delivered.

    Returns the result, the node, and whether the trial reported anything (only then does the
    orchestrator need to drain the sink before it handles the result).
    """
    import ray

    _interruptible()
    outbox = _Outbox(sink, number, attempt)
    try:
        result = run_trial(entry, params, objective, outbox.put, env=env, capture=True, grace=grace)
    finally:
        last = outbox.close()
    if last is not None:
        # If the sink is restarting, its reports are lost, but never the trial's result.
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(last)
    node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    return result, node, last is not None


class RayBackend:
    """Runs each trial as a Ray task with the trial's resources.

    Args:
        config: the ``backend`` section of the spec.
        context: the study's name, folder, concurrency and per-trial resources.
    """

    name: ClassVar[str] = "ray"
    Config: ClassVar[type[RayConfig]] = RayConfig

    def __init__(self, config: RayConfig, context: BackendContext):
        self._ray = ray = _import_ray()
        self._config = config
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            ray.init(
                address=config.address,
                num_cpus=None if config.address else config.num_cpus or os.cpu_count(),
                num_gpus=None if config.address else config.num_gpus,
                runtime_env=config.runtime_env or None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        self._task_env = None if self._owns_connection else (config.runtime_env or None)
        self._capacity = self._fit(context.max_concurrent, context.resources)
        self._task = ray.remote(max_retries=0)(_execute)
        self._sink = self._start_sink()
        self._refs: dict[Any, int] = {}
        self._live: dict[int, tuple[Any, int, float]] = {}
        """Running trials: their task, attempt, and the grace they get when cancelled."""
        self._cancelled: dict[int, float] = {}
        self._drained_at = 0.0

    def _start_sink(self) -> Any:
        """The report sink, on the driver's node when it has one, restarted if it dies."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        return (
            ray.remote(num_cpus=0, max_restarts=-1)(_ReportSink)
            .options(scheduling_strategy=here)
            .remote()
        )

    def _drain(self) -> list[tuple[int, int, int, dict[str, float]]]:
        try:
            items: list[tuple[int, int, int, dict[str, float]]] = self._ray.get(
                self._sink.drain.remote(), timeout=30
            )
            return items
        except self._ray.exceptions.RayError as exc:
            # The sink's node died: it restarts elsewhere, empty; trials go on reporting to it.
            _log.warning("intermediate reports were lost with their node: %s", exc)
            return []

    def _fit(self, wanted: int, resources: Resources) -> int:
        """``wanted``, or as many trials as the cluster's nodes can hold at once if fewer."""
        need = {"CPU": resources.cpus, "GPU": resources.gpus, **resources.custom}
        if resources.memory:
            need["memory"] = float(resources.memory)
        need = {k: v for k, v in need.items() if v > 0}
        fits = 0
        for node in self._ray.nodes():
            if not node.get("Alive"):
                continue
            have = node.get("Resources", {})
            fits += min(
                (math.floor(have.get(k, 0.0) / v + 1e-9) for k, v in need.items()), default=0
            )
        if 0 < fits < wanted:
            _log.warning(
                "max_concurrent=%d, but the Ray cluster holds only %d trials needing %s at "
                "once; running %d at a time",
                wanted,
                fits,
                need,
                fits,
            )
            return fits
        if fits == 0:
            _log.warning(
                "no node of the Ray cluster has %s for one trial; trials will wait for them",
                need,
            )
        return wanted

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, trial: TrialSpec) -> TrialHandle:
        res = trial.resources
        options: dict[str, Any] = {
            "num_cpus": res.cpus,
            "num_gpus": res.gpus,
            "name": f"{trial.study}/trial-{trial.number}",
        }
        if res.memory:
            options["memory"] = res.memory
        if res.custom:
            options["resources"] = dict(res.custom)
        if self._task_env:
            options["runtime_env"] = self._task_env
        ref = self._task.options(**options).remote(
            trial.number,
            trial.attempt,
            trial.entry,
            dict(trial.params),
            trial.objective,
            dict(trial.env),
            self._config.cancel_grace,
            self._sink,
        )
        self._refs[ref] = trial.number
        grace = self._config.cancel_grace if isinstance(trial.entry, CommandEntry) else 0.0
        self._live[trial.number] = (ref, trial.attempt, grace)
        self._cancelled.pop(trial.number, None)
        return TrialHandle(self.name, trial.number, {"task": ref.hex(), "attempt": trial.attempt})

    def poll(self, timeout: float) -> list[TrialUpdate]:
        ray = self._ray
        ready: list[Any] = []
        if self._refs:
            pending = list(self._refs)
            # Reports are news too: wake up to drain them, so pruning decisions are prompt.
            wait = min(timeout, REPORT_INTERVAL) if self._live else timeout
            ready, _ = ray.wait(pending, num_returns=1, timeout=wait)
            if ready:
                ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        outcomes = self._outcomes(ready)
        updates: list[TrialUpdate] = []
        # Reports are drained at most every REPORT_INTERVAL while trials run, and at once when
        # a finished trial had reported: its reports must come before its result.
        now = time.monotonic()
        reported = any(isinstance(o, tuple) and o[2] for o in outcomes.values())
        if reported or (self._live and now - self._drained_at >= REPORT_INTERVAL):
            self._drained_at = now
            updates = [
                TrialUpdate(number, TrialStatus.RUNNING, metrics, step)
                for number, attempt, step, metrics in self._drain()
                if number in self._live and self._live[number][1] == attempt
            ]
        updates.extend(self._finish(ref, outcome) for ref, outcome in outcomes.items())
        self._escalate_cancels()
        return updates

    def _outcomes(self, ready: list[Any]) -> dict[Any, Any]:
        """What each finished task returned, or the Ray error it raised."""
        ray = self._ray
        if not ready:
            return {}
        try:
            return dict(zip(ready, ray.get(ready), strict=True))
        except ray.exceptions.RayError:
            outcomes: dict[Any, Any] = {}
            for ref in ready:
                try:
                    outcomes[ref] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    outcomes[ref] = exc
            return outcomes

    def _finish(self, ref: Any, outcome: Any) -> TrialUpdate:
        ray = self._ray
        number = self._refs.pop(ref)
        del self._live[number]
        cancelled = self._cancelled.pop(number, None) is not None
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            result, node, _ = outcome
        except ray.exceptions.RayError as exc:
            if cancelled or isinstance(exc, ray.exceptions.TaskCancelledError):
                return TrialUpdate(number, TrialStatus.CANCELLED)
            kind = ErrorKind.INFRA if type(exc).__name__ in _INFRA_ERRORS else ErrorKind.USER
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return TrialUpdate(
                number,
                TrialStatus.FAILED,
                error=f"{type(exc).__name__}: {message}",
                error_kind=kind,
            )
        return TrialUpdate(
            number,
            result.status,
            result.metrics,
            error=result.error,
            traceback=result.traceback,
            node=node,
            log=result.log,
        )

    def cancel(self, handle: TrialHandle) -> None:
        live = self._live.get(handle.trial)
        if live is None or handle.trial in self._cancelled:
            return
        self._cancelled[handle.trial] = time.monotonic()
        self._ray.cancel(live[0], force=False)

    def _escalate_cancels(self) -> None:
        now = time.monotonic()
        for number, since in list(self._cancelled.items()):
            live = self._live.get(number)
            # A function in C code or a blocking call never sees Ray's KeyboardInterrupt; a
            # command trial stops its process group within its grace.
            if live is not None and now - since > live[2] + 2.0:
                if self._ray.wait([live[0]], timeout=0)[0]:
                    continue  # it did stop: the next poll collects it
                _log.info("trial %d did not stop when cancelled; killing its worker", number)
                self._ray.cancel(live[0], force=True)
                self._cancelled[number] = float("inf")

    def reattach(self, handle: TrialHandle) -> bool:
        # Ray tasks belong to the driver that submitted them and end with it.
        return False

    def close(self) -> None:
        ray = self._ray
        for number, (ref, _, _) in list(self._live.items()):
            if number not in self._cancelled:
                ray.cancel(ref, force=False)
        # Give cancelled command trials their grace to stop their process groups.
        pending = [ref for ref, _, _ in self._live.values()]
        if pending:
            grace = max(g for _, _, g in self._live.values())
            _, running = ray.wait(pending, num_returns=len(pending), timeout=grace + 2.0)
            # Only what is still running is killed: force-cancelling a task whose result is on
            # its way back races Ray's own bookkeeping, and the driver aborts on a failed check
            # ("Tried to complete task that was not pending", ray-project/ray#54846).
            for ref in running:
                ray.cancel(ref, force=True)
        try:
            ray.kill(self._sink)
        except Exception:  # already gone with its node
            _log.debug("report sink was already gone", exc_info=True)
        if self._owns_connection:
            ray.shutdown()
