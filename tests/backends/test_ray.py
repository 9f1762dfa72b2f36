"""The Ray backend on a real embedded cluster (shared by the session)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from backends.ray import RayBackend, RayConfig
from tuner.backend import BackendContext, FunctionEntry, TrialSpec, TrialStatus, TrialUpdate

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


def test_a_cancelled_trial_stops_and_is_reported_cancelled(backend: RayBackend) -> None:
    handle = backend.submit(trial(0, "examples.functions:sleepy", x=1.0, seconds=120))
    backend.poll(1.0)
    backend.cancel(handle)
    backend.cancel(handle)  # idempotent
    (final,) = [u for u in collect(backend, {0}) if u.status.is_finished()]
    assert final.status is TrialStatus.CANCELLED


def test_capacity_is_the_studys_concurrency(backend: RayBackend) -> None:
    assert backend.capacity == 2
    assert (
        backend.reattach(backend.submit(trial(0, "examples.functions:quadratic", x=1.0))) is False
    )
    collect(backend, {0})
