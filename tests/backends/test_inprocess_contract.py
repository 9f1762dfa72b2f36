"""The backend contract, kept by the in-process test backend (loaded through its entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inprocess import InProcessConfig
from tuner.backend import FunctionEntry
from tuner.plugins import create_backend
from tuner.testing.backend_contract import BackendContract, ContractTrial, MakeBackend

ROOT = str(Path(__file__).resolve().parents[2])


def entry(ref: str) -> FunctionEntry:
    return FunctionEntry(ref, (ROOT,))


class TestInProcessBackend(BackendContract):
    reports_cancelled = False  # a cancelled thread is abandoned, its end not reported
    deadline = 30.0

    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        return lambda context: create_backend(InProcessConfig(), context)

    @pytest.fixture
    def completing_trial(self) -> ContractTrial:
        return ContractTrial(entry("examples.functions:quadratic"), {"x": 3.0}, {"loss": 4.0})

    @pytest.fixture
    def reporting_trial(self) -> ContractTrial:
        params = {"x": 1.0, "steps": 4}
        return ContractTrial(
            entry("examples.functions:curve"), params, {"loss": 1.25}, (0, 1, 2, 3)
        )

    @pytest.fixture
    def failing_trial(self) -> ContractTrial:
        return ContractTrial(entry("examples.functions:flaky"), {"x": -1.0})

    @pytest.fixture
    def long_trial(self, tmp_path: Path) -> Iterator[ContractTrial]:
        gate = tmp_path / "gate"
        yield ContractTrial(entry("examples.functions:gated"), {"x": 1.0, "gate": str(gate)})
        gate.touch()  # a thread cannot be stopped: let the abandoned one end
