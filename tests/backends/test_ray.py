"""The Ray backend on a real embedded cluster (shared by the session), beyond the contract that
test_ray_contract.py checks: Ray's nodes, code shipping, command trials and worker deaths."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tuner.backend import (
    BackendContext,
    CommandEntry,
    ErrorKind,
    FunctionEntry,
    MetricDefinition,
    Resources,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.backends.ray import RayBackend, RayConfig

pytestmark = pytest.mark.ray

ROOT = str(Path(__file__).resolve().parents[2])


def entry(ref: str) -> FunctionEntry:
    return FunctionEntry(ref, (ROOT,))


def trial(number: int, ref: str, **params: Any) -> TrialSpec:
    return TrialSpec("ray-test", number, params, entry(ref), objective="loss")


def collect(backend: RayBackend, numbers: set[int], limit: float = 120.0) -> list[TrialUpdate]:
    """Polls until every trial in ``numbers`` has finished (the limit only guards a hang)."""
    updates: list[TrialUpdate] = []
    done: set[int] = set()
    deadline = time.monotonic() + limit
    while done != numbers and time.monotonic() < deadline:
        for update in backend.poll(0.5):
            updates.append(update)
            if update.status.is_finished():
                done.add(update.trial)
    return updates


@pytest.fixture
def backend(ray_cluster: Any, tmp_path: Path) -> Any:
    backend = RayBackend(RayConfig(), BackendContext("ray-test", tmp_path, max_concurrent=2))
    yield backend
    backend.close()


def test_function_trials_complete_with_their_metrics_and_node(backend: RayBackend) -> None:
    backend.submit(trial(0, "examples.functions:quadratic", x=3.0))
    backend.submit(trial(1, "examples.functions:branin", x1=0.0, x2=0.0))
    finals = {u.trial: u for u in collect(backend, {0, 1}) if u.status.is_finished()}
    assert finals[0].status is TrialStatus.COMPLETED
    assert finals[0].metrics == {"loss": 4.0}
    assert finals[1].metrics["value"] == pytest.approx(55.6021, rel=1e-4)
    assert finals[0].node


def test_reports_arrive_in_order_and_before_the_result(backend: RayBackend) -> None:
    for number in range(3):
        backend.submit(trial(number, "examples.functions:curve", x=float(number), steps=6))
    updates = collect(backend, {0, 1, 2})
    for number in range(3):
        mine = [u for u in updates if u.trial == number]
        assert [u.step for u in mine[:-1]] == [0, 1, 2, 3, 4, 5]
        assert all(u.status is TrialStatus.RUNNING for u in mine[:-1])
        assert mine[-1].status is TrialStatus.COMPLETED
        assert mine[-1].metrics["loss"] == mine[-2].metrics["loss"]


def test_an_exception_is_a_failed_trial_with_its_traceback(backend: RayBackend) -> None:
    backend.submit(trial(0, "examples.functions:flaky", x=-1.0))
    (final,) = [u for u in collect(backend, {0}) if u.status.is_finished()]
    assert final.status is TrialStatus.FAILED
    assert final.error == "ValueError: x=-1.0 is negative"
    assert final.traceback is not None
    assert "def flaky" not in final.traceback
    assert "examples/functions.py" in final.traceback


def test_a_python_function_is_shipped_to_the_workers(backend: RayBackend) -> None:
    offset = 10.0
    spec = TrialSpec(
        "ray-test", 0, {"x": 2.0}, FunctionEntry("test:f", (), lambda p: p["x"] + offset), "loss"
    )
    backend.submit(spec)
    (final,) = [u for u in collect(backend, {0}) if u.status.is_finished()]
    assert final.metrics == {"loss": 12.0}


def test_capacity_is_the_studys_concurrency(backend: RayBackend) -> None:
    assert backend.capacity == 2
    assert (
        backend.reattach(backend.submit(trial(0, "examples.functions:quadratic", x=1.0))) is False
    )
    collect(backend, {0})


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
TESTS = str(Path(__file__).resolve().parents[1])


def test_command_trials_stream_metric_lines_in_order(backend: RayBackend) -> None:
    definitions = (MetricDefinition("loss", r" loss=([0-9.eE+-]+)"),)
    entry = CommandEntry(("python", str(SCRIPTS / "chatty.py")), definitions, str(SCRIPTS))
    for number in range(2):
        backend.submit(TrialSpec("ray-test", number, {"lines": 50}, entry, "loss"))
    updates = collect(backend, {0, 1})
    for number in range(2):
        mine = [u for u in updates if u.trial == number]
        assert [u.step for u in mine[:-1]] == list(range(50))
        assert mine[-1].status is TrialStatus.COMPLETED
        assert mine[-1].metrics["loss"] == pytest.approx(1 / 50, rel=1e-3)
        assert mine[-1].log is not None
        assert mine[-1].log.count("\n") == 50


def test_a_cancelled_command_trial_leaves_no_process(backend: RayBackend, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    entry = CommandEntry(
        ("python", str(SCRIPTS / "spawn_and_wait.py")),
        (MetricDefinition("loss", r"loss=([0-9.]+)"),),
        str(SCRIPTS),
    )
    spec = TrialSpec("ray-test", 0, {}, entry, "loss", env={"PIDS_TO": str(pids_file)})
    handle = backend.submit(spec)
    updates = []
    while not any(u.status is TrialStatus.RUNNING for u in updates):
        updates += backend.poll(0.5)  # the first metric line: the processes are up
    pids = [int(p) for p in pids_file.read_text().split()]
    backend.cancel(handle)
    (final,) = [u for u in collect(backend, {0}) if u.status.is_finished()]
    assert final.status is TrialStatus.CANCELLED
    assert not any(Path(f"/proc/{pid}").exists() and not zombie(pid) for pid in pids)


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_a_killed_worker_is_an_infrastructure_failure(backend: RayBackend, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    entry = FunctionEntry("trial_functions:write_pid_and_wait", (TESTS,))
    backend.submit(TrialSpec("ray-test", 0, {"pid_file": str(pid_file)}, entry, "loss"))
    while not pid_file.exists():
        assert backend.poll(0.2) == []
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    (final,) = [u for u in collect(backend, {0}) if u.status.is_finished()]
    assert final.status is TrialStatus.FAILED
    assert final.error_kind is ErrorKind.INFRA
    # The study resubmits it (attempt 1): the same function now finds its pid file and returns.
    backend.submit(TrialSpec("ray-test", 0, {"pid_file": str(pid_file)}, entry, "loss", attempt=1))
    (final,) = [u for u in collect(backend, {0}) if u.status.is_finished()]
    assert final.status is TrialStatus.COMPLETED


class CancelRecorder:
    """Ray, with a note of every task it is asked to force-cancel."""

    def __init__(self, ray: Any):
        self._ray = ray
        self.forced: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ray, name)

    def cancel(self, ref: Any, *, force: bool = False, recursive: bool = True) -> None:
        if force:
            self.forced.append(ref.hex())
        self._ray.cancel(ref, force=force, recursive=recursive)


def test_closing_kills_only_the_trials_that_did_not_stop(ray_cluster: Any, tmp_path: Path) -> None:
    """Force-cancelling a task whose result is on its way back aborts Ray's driver
    (ray-project/ray#54846): a trial that finished, collected or not, is never killed."""
    import ray

    backend = RayBackend(RayConfig(), BackendContext("ray-test", tmp_path, max_concurrent=2))
    recorder = CancelRecorder(ray)
    backend._ray = recorder
    pid_file = tmp_path / "pid"
    done = backend.submit(trial(0, "examples.functions:quadratic", x=1.0))
    deaf = backend.submit(
        TrialSpec(
            "ray-test",
            1,
            {"pid_file": str(pid_file)},
            FunctionEntry("trial_functions:deaf_to_cancel", (TESTS,)),
            "loss",
        )
    )
    while not pid_file.exists():
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    backend.close()  # trial 0 finished uncollected; trial 1 shrugs off the cancel
    assert recorder.forced == [deaf.data["task"]]
    assert done.data["task"] not in recorder.forced
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and not zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or zombie(pid)


def test_max_concurrent_beyond_the_cluster_is_clamped(ray_cluster: Any, tmp_path: Path) -> None:
    context = BackendContext("ray-test", tmp_path, max_concurrent=8, resources=Resources(cpus=1))
    backend = RayBackend(RayConfig(), context)
    try:
        assert backend.capacity == 2  # the session cluster has 2 CPUs
    finally:
        backend.close()
    half = BackendContext("ray-test", tmp_path, max_concurrent=8, resources=Resources(cpus=0.5))
    backend = RayBackend(RayConfig(), half)
    try:
        assert backend.capacity == 4
    finally:
        backend.close()
