"""The Ray backend: trials as Ray tasks on an embedded local cluster or an existing one.

Ray is imported only when the backend is built, so the rest of tuner works without it.
Intermediate metrics (``tuner.report``) travel from the workers to a small sink actor that
each poll drains; a task waits until its last report is delivered before it returns, so a
trial's reports always arrive before its result.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuner.backend import (
    BackendConfig,
    BackendContext,
    FunctionEntry,
    MissingExtraError,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.trial_runner import TrialResult, run_function

_log = logging.getLogger(__name__)


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


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray", "the Ray backend") from None
    return ray


class _ReportSink:
    """Collects ``tuner.report`` calls from every worker until the orchestrator drains them."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, dict[str, float]]] = []

    def put(self, trial: int, step: int, metrics: dict[str, float]) -> None:
        self._items.append((trial, step, metrics))

    def drain(self) -> list[tuple[int, int, dict[str, float]]]:
        items, self._items = self._items, []
        return items


def _execute(
    number: int, entry: FunctionEntry, params: dict[str, Any], objective: str, sink: Any
) -> tuple[TrialResult, str]:
    """Runs on a Ray worker: the trial, then a wait for its last report to be delivered."""
    import ray

    last: list[Any] = []

    def reporter(step: int, metrics: Any) -> None:
        last[:] = [sink.put.remote(number, step, dict(metrics))]

    result = run_function(entry, params, objective, reporter)
    if last:
        ray.get(last[0])
    return result, ray.util.get_node_ip_address()


class RayBackend:
    """Runs each trial as a Ray task with the trial's CPUs and GPUs.

    Args:
        config: the ``backend`` section of the spec.
        context: the study's name, folder and concurrency.
    """

    name: ClassVar[str] = "ray"
    Config: ClassVar[type[RayConfig]] = RayConfig

    def __init__(self, config: RayConfig, context: BackendContext):
        self._ray = ray = _import_ray()
        self._config = config
        self._capacity = context.max_concurrent
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._owns_cluster = not ray.is_initialized()
        if self._owns_cluster:
            ray.init(
                address=config.address,
                num_cpus=None if config.address else config.num_cpus or os.cpu_count(),
                num_gpus=None if config.address else config.num_gpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        self._task = ray.remote(max_retries=0)(_execute)
        self._sink = ray.remote(num_cpus=0)(_ReportSink).remote()
        self._refs: dict[Any, int] = {}
        self._ref_of: dict[int, Any] = {}
        self._cancelled: set[int] = set()

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, trial: TrialSpec) -> TrialHandle:
        ref = self._task.options(
            num_cpus=trial.resources.cpus,
            num_gpus=trial.resources.gpus,
            name=f"{trial.study}/trial-{trial.number}",
        ).remote(trial.number, trial.entry, dict(trial.params), trial.objective, self._sink)
        self._refs[ref] = trial.number
        self._ref_of[trial.number] = ref
        return TrialHandle(self.name, trial.number, {"task": ref.hex()})

    def poll(self, timeout: float) -> list[TrialUpdate]:
        ray = self._ray
        ready: list[Any] = []
        if self._refs:
            pending = list(self._refs)
            ready, _ = ray.wait(pending, num_returns=1, timeout=timeout)
            if ready:
                ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        updates = [
            TrialUpdate(number, TrialStatus.RUNNING, metrics, step)
            for number, step, metrics in ray.get(self._sink.drain.remote())
            if number in self._ref_of
        ]
        updates.extend(self._finish(ref) for ref in ready)
        return updates

    def _finish(self, ref: Any) -> TrialUpdate:
        ray = self._ray
        number = self._refs.pop(ref)
        del self._ref_of[number]
        try:
            result, node = ray.get(ref)
        except ray.exceptions.RayError as exc:
            if number in self._cancelled:
                return TrialUpdate(number, TrialStatus.CANCELLED)
            return TrialUpdate(number, TrialStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return TrialUpdate(
            number,
            result.status,
            result.metrics,
            error=result.error,
            traceback=result.traceback,
            node=node,
        )

    def cancel(self, handle: TrialHandle) -> None:
        ref = self._ref_of.get(handle.trial)
        if ref is None or handle.trial in self._cancelled:
            return
        self._cancelled.add(handle.trial)
        self._ray.cancel(ref, force=True)

    def reattach(self, handle: TrialHandle) -> bool:
        # Ray tasks belong to the driver that submitted them and end with it.
        return False

    def close(self) -> None:
        ray = self._ray
        for number in list(self._ref_of):
            self.cancel(TrialHandle(self.name, number))
        try:
            ray.kill(self._sink)
        except Exception:  # already gone with its node
            _log.debug("report sink was already gone", exc_info=True)
        if self._owns_cluster:
            ray.shutdown()
