"""The backend contract, kept by the in-process test backend (loaded through its entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inprocess import InProcessBackend, InProcessConfig
from tuner.backend import Backend, FunctionEntry, TrialHandle
from tuner.plugins import create_backend
from tuner.testing.backend_contract import (
    BackendContract,
    ContractTrial,
    FunctionTrials,
    InfraFailure,
    MakeBackend,
)

ROOT = str(Path(__file__).resolve().parents[2])


def entry(ref: str) -> FunctionEntry:
    return FunctionEntry(ref, (ROOT,))


class TestInProcessBackend(FunctionTrials, BackendContract):
    reports_cancelled = False  # a cancelled thread is abandoned, its end not reported
    deadline = 30.0

    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        return lambda context: create_backend(InProcessConfig(), context)

    @pytest.fixture
    def long_trial(self, tmp_path: Path) -> Iterator[ContractTrial]:
        gate = tmp_path / "gate"
        yield ContractTrial(entry("examples.functions:gated"), {"x": 1.0, "gate": str(gate)})
        gate.touch()  # a thread cannot be stopped: let the abandoned one end

    @pytest.fixture
    def infra_failure(self, long_trial: ContractTrial) -> InfraFailure:
        def lose_its_worker(backend: Backend, handle: TrialHandle) -> None:
            assert isinstance(backend, InProcessBackend)
            backend.lose_worker(handle.trial)

        return InfraFailure(long_trial, lose_its_worker)
