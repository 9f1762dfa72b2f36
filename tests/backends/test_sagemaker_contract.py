"""The backend contract, kept by the SageMaker backend against moto on loopback.

SageMaker runs commands; what each job does is the fake's script, chosen here by the trial's
``mode`` hyperparameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from fake_sagemaker import BUCKET, ROLE, FakeSageMaker, Outcome

from tuner.backend import CommandEntry, MetricDefinition
from tuner.backends.sagemaker import SageMakerConfig
from tuner.plugins import create_backend
from tuner.testing.backend_contract import (
    BackendContract,
    ContractTrial,
    InfraFailure,
    MakeBackend,
)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1"
TRAIN = CommandEntry(("python", "train.py"), (MetricDefinition("loss", r"loss=([0-9.eE+-]+)"),))
REPORTED = [1.0, 0.5, 0.25, 0.125]

_OUTCOMES: dict[str, Outcome] = {
    "complete": Outcome(lines=["loss=4.0"], final_metrics={"loss": 4.0}),
    "report": Outcome(
        lines=[f"epoch={i} loss={v}" for i, v in enumerate(REPORTED)],
        seconds=1.0,
        final_metrics={"loss": REPORTED[-1]},
    ),
    "fail": Outcome(
        lines=["Traceback (most recent call last):", "ValueError: x is negative"],
        status="Failed",
        failure_reason="AlgorithmError: ExecuteUserScriptError: ExitCode 1",
    ),
    "long": Outcome(seconds=600.0),
    "lose-the-instance": Outcome(
        status="Failed", failure_reason="InternalServerError: the instance was lost"
    ),
}


def _script(name: str, hyperparameters: Mapping[str, str]) -> Outcome:
    return _OUTCOMES[hyperparameters["mode"]]


def trial(mode: str, loss: float | None = None, steps: tuple[int, ...] = ()) -> ContractTrial:
    """A job that does what ``mode`` scripts, ending with ``loss`` if it completes."""
    metrics = {} if loss is None else {"loss": loss}
    return ContractTrial(TRAIN, {"mode": mode}, metrics, steps)


class TestSageMakerBackend(BackendContract):
    reports_cancelled = False  # a stopped job the study cancelled is dropped, not reported
    deadline = 60.0

    @pytest.fixture
    def make_backend(self, sagemaker: FakeSageMaker) -> MakeBackend:
        sagemaker.script = _script
        config = SageMakerConfig(
            role_arn=ROLE,
            image_uri=IMAGE,
            output_path=f"s3://{BUCKET}/models",
            poll_interval=0.1,
            limit_backoff=0.2,
        )
        return lambda context: create_backend(config, context)

    @pytest.fixture
    def completing_trial(self) -> ContractTrial:
        return trial("complete", loss=4.0)

    @pytest.fixture
    def reporting_trial(self) -> ContractTrial:
        return trial("report", loss=REPORTED[-1], steps=(0, 1, 2, 3))

    @pytest.fixture
    def failing_trial(self) -> ContractTrial:
        return trial("fail")

    @pytest.fixture
    def long_trial(self) -> ContractTrial:
        return trial("long")

    @pytest.fixture
    def infra_failure(self) -> InfraFailure:
        return InfraFailure(trial("lose-the-instance"))
