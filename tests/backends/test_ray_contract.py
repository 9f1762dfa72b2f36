"""The backend contract, kept by the Ray backend on the session's embedded cluster."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tuner.backend import Backend, FunctionEntry, TrialHandle
from tuner.backends.ray import RayConfig
from tuner.plugins import create_backend
from tuner.testing.backend_contract import (
    BackendContract,
    ContractTrial,
    FunctionTrials,
    InfraFailure,
    MakeBackend,
)

pytestmark = pytest.mark.ray

ROOT = str(Path(__file__).resolve().parents[2])
TESTS = str(Path(__file__).resolve().parents[1])


def entry(ref: str) -> FunctionEntry:
    return FunctionEntry(ref, (ROOT, TESTS))


class TestRayBackend(FunctionTrials, BackendContract):
    @pytest.fixture
    def make_backend(self, ray_cluster: Any) -> MakeBackend:
        return lambda context: create_backend(RayConfig(), context)

    @pytest.fixture
    def long_trial(self) -> ContractTrial:
        return ContractTrial(entry("examples.functions:sleepy"), {"x": 1.0, "seconds": 600})

    @pytest.fixture
    def infra_failure(self, tmp_path: Path) -> InfraFailure:
        pid_file = tmp_path / "pid"

        def kill_the_worker(backend: Backend, handle: TrialHandle) -> None:
            deadline = time.monotonic() + self.deadline
            while not pid_file.exists() or not pid_file.read_text():
                assert time.monotonic() < deadline, "the trial never started"
                time.sleep(0.05)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)

        trial = ContractTrial(
            entry("trial_functions:write_pid_and_wait"), {"pid_file": str(pid_file)}
        )
        return InfraFailure(trial, kill_the_worker)
