"""The SageMaker backend against the real boto3 client and moto on loopback.

``sagemaker`` (tests/conftest.py) is moto's server, patched into jobs that take time, print
into CloudWatch Logs, stop and fail as SageMaker's do; each test scripts what its jobs do.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from fake_sagemaker import BUCKET, ROLE, FakeSageMaker, LocalTrainingJobs, Outcome

from conftest import TESTS, run_tuner, start_tuner
from tuner.backend import BackendContext, BackendError, TrialHandle
from tuner.backends.sagemaker import (
    SageMakerBackend,
    _Job,
    job_name,
    job_prefix,
    pack_source,
    sagemaker_hyperparameters,
)
from tuner.orchestrator import Orchestrator
from tuner.records import Attr, StopReason, TrialState
from tuner.spec import SpecError, load_spec_text
from tuner.store import load_study, records
from tuner.trial_runner import MetricParser

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1"
LOSS = {"name": "loss", "regex": r"loss=([0-9.eE+-]+)"}


def _backend_section(**options: Any) -> dict[str, Any]:
    return {
        "type": "sagemaker",
        "role_arn": ROLE,
        "image_uri": IMAGE,
        "output_path": f"s3://{BUCKET}/models",
        "poll_interval": 0.1,
        "limit_backoff": 0.2,
        **options,
    }


@pytest.fixture
def sm_spec(make_spec: Callable[..., Any]) -> Callable[..., Any]:
    """A command-trial spec on the SageMaker backend."""

    def make(backend: Mapping[str, Any] | None = None, **sections: Any) -> Any:
        return make_spec(
            trial={
                "command": ["python", "train.py"],
                "metric_definitions": [LOSS],
                **sections.pop("trial", {}),
            },
            backend=_backend_section(**(backend or {})),
            **sections,
        )

    return make


def _quadratic(name: str, hyperparameters: Mapping[str, str]) -> Outcome:
    """A job whose loss is x² after three epochs, printed as it goes."""
    x = float(hyperparameters["x"])
    losses = [x * x + 1.0 / (epoch + 1) for epoch in range(3)]
    return Outcome(
        lines=[f"epoch={i} loss={v:.6f}" for i, v in enumerate(losses)],
        final_metrics={"loss": losses[-1]},
        billable=90,
    )


def _backend(spec: Any, **kwargs: Any) -> SageMakerBackend:
    context = BackendContext(spec.name, Path("unused"), spec.budget.max_concurrent, uid="u1")
    return SageMakerBackend(spec.backend, context, **kwargs)


def _calls(backend: SageMakerBackend) -> Counter[str]:
    """Counts the backend's SageMaker calls by operation."""
    counts: Counter[str] = Counter()

    def count(model: Any, **kwargs: Any) -> None:
        counts[model.name] += 1

    backend._sm.meta.events.register("before-call.sagemaker", count)
    return counts


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **kwargs: Any) -> Any:
        yield self._body


def _throttle(times: int) -> Callable[..., Any]:
    """A botocore before-send hook answering the first ``times`` calls with throttling."""
    state = {"left": times}

    def hook(request: Any, **kwargs: Any) -> Any:
        if state["left"] <= 0:
            return None
        state["left"] -= 1
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 400, headers, _Raw(body))

    hook.state = state  # type: ignore[attr-defined]
    return hook


# --- names, hyperparameters, code ------------------------------------------------------------


def test_job_names_are_study_trial_attempt_in_sagemakers_characters() -> None:
    prefix = job_prefix("lr_sweep.v2")
    assert job_name(prefix, 12, 1) == "lr-sweep-v2-12-1"
    assert job_name(prefix, 12, 1) == job_name(job_prefix("lr_sweep.v2"), 12, 1)


def test_long_study_names_are_cut_to_fit_and_stay_apart() -> None:
    first, second = job_prefix("a" * 60 + "-one"), job_prefix("a" * 60 + "-two")
    assert first != second
    name = job_name(first, 9_999_999, 99)
    assert len(name) <= 63
    assert name[0].isalnum()
    assert all(c.isalnum() or c == "-" for c in name)


def test_hyperparameters_are_strings_as_command_trials_get_them() -> None:
    params = {"lr": 0.001, "layers": 3, "optimizer": "adam", "nesterov": True}
    assert sagemaker_hyperparameters(params) == {
        "lr": "0.001",
        "layers": "3",
        "optimizer": "adam",
        "nesterov": "true",
    }


def test_the_code_tarball_is_reproducible_and_leaves_out_caches(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("X = 1\n")
    for junk in ("__pycache__", ".git", "tuner-studies"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "big").write_text("junk")
    first = pack_source(tmp_path)
    os.utime(tmp_path / "train.py", (1, 1))
    assert pack_source(tmp_path) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert sorted(tar.getnames()) == ["lib/util.py", "train.py"]


# --- the spec --------------------------------------------------------------------------------

_SPEC = """\
name: sm
objective: {metric: loss}
space: {x: {type: float, low: -2, high: 2}}
budget: {max_trials: 4%(budget)s}
trial:
  command: [python, train.py]
  metric_definitions: [{name: loss, regex: "loss=([0-9.]+)"}]
backend:
  type: sagemaker
  role_arn: %(role)s
  image_uri: my-image
  output_path: s3://bucket/out
%(extra)s"""


@pytest.mark.parametrize(
    ("role", "extra", "budget", "where", "says"),
    [
        ("not-a-role", "", "", "backend.role_arn", "arn:aws:iam::123456789012:role/"),
        (
            ROLE,
            "  spot: {enabled: true, max_wait: 1h}\n  max_runtime: 2h\n",
            "",
            "spot",
            "raise max_wait",
        ),
        (ROLE, "  entry_point: missing.py\n", "", "backend", "not a file"),
        (
            ROLE,
            "  instance_type: ml.x9.huge\n",
            ", max_cost: 10",
            "budget.max_cost",
            "prices: {ml.x9.huge",
        ),
        (ROLE, "  keep_alive: 2h\n", "", "backend.keep_alive", "3600"),
        (ROLE, "  code_path: bucket/code\n", "", "backend.code_path", "s3://bucket/prefix"),
        (ROLE, "  tags: {tuner:study: x}\n", "", "backend.tags", "reserved"),
        (ROLE, "  tags: {'a|b': x}\n", "", "backend.tags", "letters, digits"),
        (
            ROLE,
            "  spot: {enabled: true}\n  keep_alive: 10m\n",
            "",
            "backend",
            "no warm pool for spot",
        ),
    ],
)
def test_spec_errors_name_the_field_and_the_fix(
    tmp_path: Path, role: str, extra: str, budget: str, where: str, says: str
) -> None:
    text = _SPEC % {"role": role, "extra": extra, "budget": budget}
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "study.yaml", spec_dir=str(tmp_path))
    message = str(caught.value)
    assert where in message
    assert says in message
    assert "study.yaml:" in message


def test_function_trials_are_refused_with_what_to_write_instead(tmp_path: Path) -> None:
    command = _SPEC[_SPEC.index("  command") : _SPEC.index("backend:")]
    text = _SPEC.replace(command, "  function: examples.functions:quadratic\n")
    text %= {"role": ROLE, "extra": "", "budget": ""}
    with pytest.raises(SpecError, match=r"trial\.function.*command: \[python, train\.py\]"):
        load_spec_text(text, "study.yaml", spec_dir=str(tmp_path))


def test_ray_studies_cannot_have_a_cost_budget(make_spec: Callable[..., Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="does not know what trials cost"):
        make_spec(budget={"max_trials": 2, "max_cost": 5}, backend={"type": "ray"})


def test_source_dir_is_resolved_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("")
    extra = "  source_dir: code\n  entry_point: train.py\n"
    spec = load_spec_text(
        _SPEC % {"role": ROLE, "extra": extra, "budget": ""}, "s.yaml", spec_dir=str(tmp_path)
    )
    assert spec.backend.source_dir == str(tmp_path / "code")


def test_a_missing_region_or_credentials_stop_the_backend_before_any_job(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = sm_spec()
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(BackendError, match="needs a region"):
        _backend(spec)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BackendError, match="no AWS credentials"):
        _backend(spec)
    assert sagemaker.created == []


# --- trials as training jobs -----------------------------------------------------------------


def test_each_trial_is_a_training_job_watched_by_batched_polling(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = _quadratic
    spec = sm_spec(
        budget={"max_trials": 6, "max_concurrent": 3},
        backend={"tags": {"team": "vision"}, "environment": {"EPOCHS": "3"}},
    )
    backend = _backend(spec)
    calls = _calls(backend)
    summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 6
    prefix = job_prefix(spec.name)
    assert sorted(sagemaker.created) == sorted(f"{prefix}-{n}-0" for n in range(6))
    trials = {t.number: t for t in load_study(spec).get_trials()}
    for number, trial in trials.items():
        name = f"{prefix}-{number}-0"
        request = sagemaker.requests[name]
        x = trial.params["x"]
        assert request["HyperParameters"] == {"x": json.dumps(x)}
        assert request["AlgorithmSpecification"]["MetricDefinitions"] == [
            {"Name": "loss", "Regex": LOSS["regex"]}
        ]
        assert request["Environment"]["EPOCHS"] == "3"
        assert request["Environment"]["TUNER_TRIAL"] == str(number)
        assert sagemaker.tags(name) == {
            "team": "vision",
            "tuner:study": spec.name,
            "tuner:study-uid": "u1",
            "tuner:trial": str(number),
            "tuner:attempt": "0",
        }
        assert trial.value == pytest.approx(x * x + 1 / 3, abs=1e-6)
        # the log stream was tailed while the job ran: every epoch's loss, in order
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        assert trial.intermediate_values[0] == pytest.approx(x * x + 1, abs=1e-6)
        assert json.loads(trial.user_attrs[Attr.DETAILS])["sagemaker.job_name"] == name
        assert trial.user_attrs[Attr.COST] == pytest.approx(90 * 0.115 / 3600)
    # one listing per poll covers every job; a job is described once, when it has finished
    assert calls["DescribeTrainingJob"] == 6
    assert calls["ListTrainingJobs"] >= 3
    assert summary.cost == pytest.approx(6 * 90 * 0.115 / 3600)


def test_an_algorithm_error_is_a_failed_trial_with_its_reason_and_log(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    def script(name: str, hp: Mapping[str, str]) -> Outcome:
        if float(hp["x"]) > 0:
            return Outcome(
                lines=["epoch=0 loss=3.5", "Traceback: CUDA out of memory"],
                status="Failed",
                failure_reason="AlgorithmError: ExecuteUserScriptError: ExitCode 1",
            )
        return _quadratic(name, hp)

    sagemaker.script = script
    spec = sm_spec(budget={"max_trials": 6, "max_concurrent": 3})
    summary = Orchestrator(spec, tracker=None).run()

    failed = [t for t in records(load_study(spec)) if t.state is TrialState.FAILED]
    assert failed, "the seed should give some x > 0"
    assert summary.counts[TrialState.COMPLETE] + len(failed) == 6
    for trial in failed:
        assert "AlgorithmError: ExecuteUserScriptError" in (trial.error or "")
        assert "CUDA out of memory" in (trial.log or "")
        assert trial.metrics == {"loss": 3.5}
        assert trial.attempts == 1  # the trial's own error: not retried
    assert all(name.endswith("-0") for name in sagemaker.created)


def test_an_infrastructure_failure_is_retried_as_a_new_job(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    def script(name: str, hp: Mapping[str, str]) -> Outcome:
        if name.endswith("-1-0"):
            return Outcome(status="Failed", failure_reason="InternalServerError: instance lost")
        return _quadratic(name, hp)

    sagemaker.script = script
    spec = sm_spec(budget={"max_trials": 3, "max_concurrent": 3})
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 3
    prefix = job_prefix(spec.name)
    assert f"{prefix}-1-1" in sagemaker.created
    trial = next(t for t in records(load_study(spec)) if t.number == 1)
    assert trial.attempts == 2


def test_a_job_stopped_at_max_runtime_keeps_the_metrics_it_printed(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = lambda name, hp: Outcome(
        lines=["epoch=0 loss=2.0", "epoch=1 loss=1.5"],
        status="Stopped",
        secondary="MaxRuntimeExceeded",
    )
    spec = sm_spec(budget={"max_trials": 1, "max_concurrent": 1})
    Orchestrator(spec, tracker=None).run()

    (trial,) = records(load_study(spec))
    assert trial.state is TrialState.FAILED
    assert "MaxRuntimeExceeded" in (trial.error or "")
    assert trial.metrics == {"loss": 1.5}
    assert trial.attempts == 1


def test_throttled_calls_are_retried(sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]) -> None:
    sagemaker.script = _quadratic
    spec = sm_spec(budget={"max_trials": 3, "max_concurrent": 3})
    backend = _backend(spec)
    hooks = {op: _throttle(2) for op in ("CreateTrainingJob", "ListTrainingJobs")}
    for op, hook in hooks.items():
        backend._sm.meta.events.register(f"before-send.sagemaker.{op}", hook)
    summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 3
    assert all(hook.state["left"] == 0 for hook in hooks.values())  # type: ignore[attr-defined]
    assert len(sagemaker.created) == 3


def test_a_quota_refusal_queues_the_trial_and_lowers_the_concurrency(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    sagemaker.script = lambda name, hp: replace(_quadratic(name, hp), seconds=1.0)
    spec = sm_spec(budget={"max_trials": 6, "max_concurrent": 4})
    backend = _backend(spec)
    original_create = backend._create
    quota = {"hit": False}

    def create(job: Any) -> bool:
        if len(sagemaker.created) == 2 and not quota["hit"]:
            quota["hit"] = True
            sagemaker.refuse = 2  # the account's quota is hit at the third job, twice
        return original_create(job)

    backend._create = create  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="tuner.backends.sagemaker"):
        summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 6
    assert summary.counts[TrialState.FAILED] == 0
    assert "runs at most 2 jobs at once" in caplog.text
    assert len(sagemaker.created) == 6


def test_timed_out_trials_stop_their_jobs(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    def script(name: str, hp: Mapping[str, str]) -> Outcome:
        x = float(hp["x"])
        lines = [f"epoch={i} loss={x * x + 10 - i:.4f}" for i in range(40)]
        return Outcome(lines=lines, seconds=8.0, final_metrics={"loss": x * x})

    sagemaker.script = script
    spec = sm_spec(
        budget={"max_trials": 4, "max_concurrent": 2},
        trial={"timeout": 1.5},
    )
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.counts[TrialState.FAILED] == 4
    assert sorted(sagemaker.stops) == sorted(sagemaker.created)
    sagemaker.wait_for(lambda: all(sagemaker.status(n) == "Stopped" for n in sagemaker.created))


def test_stopping_a_job_that_already_finished_is_a_success(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = _quadratic
    spec = sm_spec(budget={"max_trials": 1})
    backend = _backend(spec)
    Orchestrator(spec, backend=backend, tracker=None).run()
    (name,) = sagemaker.created
    assert sagemaker.status(name) == "Completed"
    # as if the orchestrator had not seen it finish yet
    job = _Job(name, 0, 0, MetricParser(()), created=datetime.now(UTC))
    backend._jobs[name] = job
    backend.cancel(TrialHandle("sagemaker", 0, {"job": name, "attempt": 0}))
    backend.close()
    assert job.stop_sent  # SageMaker's "not in progress" answer is a success
    assert sagemaker.stops == []


def test_a_job_missing_from_listings_counts_as_running(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = _quadratic
    spec = sm_spec(budget={"max_trials": 2, "max_concurrent": 2})
    backend = _backend(spec)
    hidden = {"polls": 0}

    def lagging_listing(parsed: dict[str, Any], **kwargs: Any) -> None:
        if hidden["polls"] < 5:  # listings lag behind creation for a while
            hidden["polls"] += 1
            parsed["TrainingJobSummaries"] = []

    backend._sm.meta.events.register("after-call.sagemaker.ListTrainingJobs", lagging_listing)
    summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert hidden["polls"] == 5
    assert summary.counts[TrialState.COMPLETE] == 2
    assert len(sagemaker.created) == 2


def test_jobs_of_the_study_no_trial_follows_are_stopped_by_tag(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = lambda name, hp: Outcome(seconds=30.0)
    spec = sm_spec(budget={"max_trials": 1})
    client = sagemaker.client("sagemaker")
    base = {
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/x"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "HyperParameters": {"x": "0"},
    }
    ours = [{"Key": "tuner:study-uid", "Value": "u1"}]
    theirs = [{"Key": "tuner:study-uid", "Value": "someone-else"}]
    client.create_training_job(TrainingJobName="orphan", Tags=ours, **base)
    client.create_training_job(TrainingJobName="not-ours", Tags=theirs, **base)
    backend = _backend(spec)
    backend.poll(0.0)
    assert sagemaker.stops == ["orphan"]
    backend.close()
    assert sagemaker.status("not-ours") == "InProgress"


def test_max_cost_stops_launching_and_spot_savings_are_reported(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = lambda name, hp: replace(_quadratic(name, hp), billable=40, training=100)
    spec = sm_spec(
        budget={"max_trials": 20, "max_concurrent": 1, "max_cost": 1.0},
        backend={
            "instance_type": "ml.g5.xlarge",
            "prices": {"ml.g5.xlarge": 36.0},  # 1 cent per second
            "spot": {"enabled": True, "max_wait": "2d"},
        },
    )
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.stop_reason is StopReason.MAX_COST
    assert summary.finished == 3  # 40 cents each: the third takes it past one dollar
    assert summary.cost == pytest.approx(1.2)
    assert summary.totals["sagemaker.spot_savings_usd"] == pytest.approx(3 * 0.6)
    request = sagemaker.requests[sagemaker.created[0]]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 86400,
        "MaxWaitTimeInSeconds": 172800,
    }


def test_cost_and_the_job_reach_the_trials_mlflow_run(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    sagemaker.script = _quadratic
    spec = sm_spec(
        budget={"max_trials": 2, "max_concurrent": 2},
        tracking={"mlflow": {"tracking_uri": mlflow_uri, "experiment": "sm"}},
    )
    Orchestrator(spec).run()

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("sm")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    for child in children:
        assert child.data.metrics["tuner.cost_usd"] == pytest.approx(90 * 0.115 / 3600)
        assert child.data.metrics["sagemaker.billable_seconds"] == 90
        assert child.data.tags["sagemaker.job_name"].startswith(job_prefix(spec.name))
        assert child.data.tags["sagemaker.model_artifacts"].endswith("/output/model.tar.gz")
    assert parent.data.metrics["tuner.cost_usd"] == pytest.approx(2 * 90 * 0.115 / 3600)


# --- the orchestrator as a process: Ctrl-C and resume ------------------------------------------


def _write_spec(folder: Path, **budget: Any) -> Path:
    spec = {
        "name": "sm-cli",
        "objective": {"metric": "loss"},
        "space": {"x": {"type": "float", "low": -2, "high": 2}},
        "strategy": {"type": "random", "seed": 3},
        "budget": {"max_trials": 4, "max_concurrent": 2, **budget},
        "trial": {"command": ["python", "train.py"], "metric_definitions": [LOSS]},
        "backend": _backend_section(poll_interval=0.2),
        "tracking": {"mlflow": None},
    }
    path = folder / "study.yaml"
    path.write_text(json.dumps(spec))
    return path


def test_ctrl_c_stops_every_job_the_study_started(sagemaker: FakeSageMaker, tmp_path: Path) -> None:
    sagemaker.script = lambda name, hp: Outcome(seconds=60.0)
    spec = _write_spec(tmp_path)
    process = start_tuner("run", str(spec), cwd=tmp_path)
    try:
        sagemaker.wait_for(lambda: len(sagemaker.running()) == 2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, output
    assert sorted(sagemaker.stops) == sorted(sagemaker.created)
    sagemaker.wait_for(lambda: not sagemaker.running())


def test_resume_follows_running_jobs_and_collects_finished_ones(
    sagemaker: FakeSageMaker, tmp_path: Path
) -> None:
    def script(name: str, hp: Mapping[str, str]) -> Outcome:
        slow = name.endswith("-0-0")  # trial 0 outlives the orchestrator
        return replace(_quadratic(name, hp), seconds=12.0 if slow else 3.0)

    sagemaker.script = script
    spec = _write_spec(tmp_path)
    process = start_tuner("run", str(spec), cwd=tmp_path)
    try:
        sagemaker.wait_for(lambda: len(sagemaker.created) == 2)
        os.killpg(process.pid, signal.SIGKILL)  # the orchestrator dies; its jobs do not
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    running_at_kill = sorted(sagemaker.running())
    assert len(running_at_kill) == 2
    sagemaker.wait_for(lambda: len(sagemaker.running()) == 1)  # trial 1 finishes while down

    try:
        result = run_tuner("resume", str(spec), cwd=tmp_path, timeout=40)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"resume hung: {exc.stdout}{exc.stderr}")

    assert result.returncode == 0, result.stdout + result.stderr
    trials = records(load_study(load_spec_text(spec.read_text(), str(spec), str(tmp_path))))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len(sagemaker.created) == len(set(sagemaker.created)) == 4  # no job twice
    assert sagemaker.stops == []
    for trial in trials[:2]:
        assert trial.value == pytest.approx(trial.params["x"] ** 2 + 1 / 3, abs=1e-6)
    status = run_tuner("status", str(spec), cwd=tmp_path)
    assert f"cost ${4 * 90 * 0.115 / 3600:,.2f}" in status.stdout


# --- the data path: entry points run through AWS's sagemaker-training toolkit --------------------


@pytest.mark.slow
def test_entry_points_run_through_the_sagemaker_training_toolkit(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], tmp_path: Path
) -> None:
    LocalTrainingJobs(sagemaker, tmp_path / "jobs").install()
    s3 = sagemaker.client("s3")
    s3.put_object(Bucket=BUCKET, Key="data/train/data.json", Body=b'{"offset": 0.5}')
    spec = sm_spec(
        space={"x": {"type": "float", "low": -1, "high": 1, "step": 1}},
        strategy={"type": "grid"},
        budget={"max_trials": 3, "max_concurrent": 3, "max_failures": 5},
        backend={
            "image_uri": "framework-image",
            "source_dir": str(TESTS / "scripts" / "sm_code"),
            "entry_point": "train.py",
            "inputs": {"train": f"s3://{BUCKET}/data/train"},
            "environment": {"FAIL_ABOVE": "0.5"},
        },
    )
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 2
    assert summary.counts[TrialState.FAILED] == 1
    by_x = {t.params["x"]: t for t in records(load_study(spec))}
    for x in (-1.0, 0.0):
        trial = by_x[x]
        assert trial.value == pytest.approx((x - 0.5) ** 2 + 1 / 3, abs=1e-5)
        name = trial.details["sagemaker.job_name"]
        # the model the script wrote went to S3 the way SageMaker puts it there
        body = s3.get_object(Bucket=BUCKET, Key=f"models/{name}/output/model.tar.gz")["Body"]
        with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
            model = tar.extractfile("model.json")
            assert model is not None
            assert json.load(model) == {"x": x}
    failed = by_x[1.0]
    assert "AlgorithmError: ExecuteUserScriptError" in (failed.error or "")
    assert "diverged: loss is nan" in (failed.log or "")
    # the code went to S3 once, as the toolkit expects it
    code = sagemaker.requests[sagemaker.created[0]]["HyperParameters"]
    assert code["sagemaker_program"] == "train.py"
    assert code["sagemaker_submit_directory"].startswith(f"s3://{BUCKET}/models/")
    assert {
        sagemaker.requests[n]["HyperParameters"]["sagemaker_submit_directory"]
        for n in sagemaker.created
    } == {code["sagemaker_submit_directory"]}


@pytest.mark.slow
def test_stopping_a_toolkit_job_stops_its_whole_process_group(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], tmp_path: Path
) -> None:
    LocalTrainingJobs(sagemaker, tmp_path / "jobs").install()
    sagemaker.client("s3").put_object(
        Bucket=BUCKET, Key="data/train/data.json", Body=b'{"offset": 0}'
    )
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = sm_spec(
        space={
            "x": {"type": "float", "low": 0, "high": 1},
            "linger": {"type": "categorical", "choices": [600]},
        },
        budget={"max_trials": 1},
        trial={"timeout": 4.0},
        backend={
            "image_uri": "framework-image",
            "source_dir": str(TESTS / "scripts" / "sm_code"),
            "entry_point": "train.py",
            "inputs": {"train": f"s3://{BUCKET}/data/train"},
            "environment": {"PID_DIR": str(pids)},
        },
    )
    Orchestrator(spec, tracker=None).run()

    (name,) = sagemaker.created
    started = json.loads((pids / f"{name}.json").read_text())
    sagemaker.wait_for(lambda: sagemaker.status(name) == "Stopped")
    for pid in started.values():
        _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").exists():
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            if state == "Z":
                return  # exited, not yet reaped by its (test-owned) parent
        time.sleep(0.1)
    raise AssertionError(f"process {pid} outlived its stopped job")


# --- real AWS, opt-in ----------------------------------------------------------------------------


@pytest.mark.aws
@pytest.mark.skipif(
    not (os.environ.get("TUNER_AWS_ROLE_ARN") and os.environ.get("TUNER_AWS_S3_URI")),
    reason="set TUNER_AWS_ROLE_ARN and TUNER_AWS_S3_URI (and AWS credentials) to run on AWS",
)
def test_tiny_jobs_on_a_real_aws_account(
    make_spec: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    region = os.environ.get("AWS_REGION", "us-east-1")
    image = os.environ.get(
        "TUNER_AWS_IMAGE",
        f"683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
    )
    s3_uri = os.environ["TUNER_AWS_S3_URI"].rstrip("/")
    import boto3

    bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
    boto3.client("s3", region_name=region).put_object(
        Bucket=bucket, Key=f"{key}/data/train/data.json".lstrip("/"), Body=b'{"offset": 0.5}'
    )
    spec = make_spec(
        name=f"tuner-aws-{int(time.time())}",
        space={"x": {"type": "float", "low": -1, "high": 1}},
        budget={"max_trials": 3, "max_concurrent": 3, "max_time": "40m"},
        trial={"command": ["python", "train.py"], "metric_definitions": [LOSS]},
        backend={
            "type": "sagemaker",
            "role_arn": os.environ["TUNER_AWS_ROLE_ARN"],
            "image_uri": image,
            "region": region,
            "instance_type": "ml.m5.large",
            "output_path": f"{s3_uri}/models",
            "source_dir": str(TESTS / "scripts" / "sm_code"),
            "entry_point": "train.py",
            "inputs": {"train": f"{s3_uri}/data/train"},
            "max_runtime": "15m",
            "poll_interval": 15,
        },
    )
    backend = SageMakerBackend(
        spec.backend, BackendContext(spec.name, Path("unused"), 3, uid=spec.name)
    )
    try:
        summary = Orchestrator(spec, backend=backend, tracker=None).run()
        assert summary.counts[TrialState.COMPLETE] == 3
        assert summary.cost is not None
        assert summary.cost > 0
    finally:
        backend.close()  # stops anything still running, found by the study's tag


# --- AWS on a bad day ------------------------------------------------------------------------


def _failing(code: str, status: int, times: int) -> Callable[..., Any]:
    """A botocore before-send hook answering the first ``times`` calls with an error."""
    state = {"left": times}

    def hook(request: Any, **kwargs: Any) -> Any:
        if state["left"] <= 0:
            return None
        state["left"] -= 1
        body = json.dumps({"__type": code, "message": "try later"}).encode()
        return AWSResponse(
            request.url, status, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body)
        )

    hook.state = state  # type: ignore[attr-defined]
    return hook


def test_a_failing_log_service_does_not_end_the_study(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    sagemaker.script = _quadratic
    spec = sm_spec(budget={"max_trials": 3, "max_concurrent": 3}, backend={"max_attempts": 1})
    backend = _backend(spec)
    outage = _failing("ServiceUnavailableException", 503, 12)
    backend._logs.meta.events.register("before-send.cloudwatch-logs", outage)
    with caplog.at_level(logging.WARNING, logger="tuner.backends.sagemaker"):
        summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert outage.state["left"] == 0  # type: ignore[attr-defined]
    assert "trying again at the next poll" in caplog.text
    assert summary.counts[TrialState.COMPLETE] == 3, [t.error for t in records(load_study(spec))]
    for trial in records(load_study(spec)):
        assert trial.value == pytest.approx(trial.params["x"] ** 2 + 1 / 3, abs=1e-6)


def test_a_stop_that_fails_is_sent_again(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = lambda name, hp: Outcome(seconds=30.0)
    spec = sm_spec(budget={"max_trials": 1}, trial={"timeout": 0.5}, backend={"max_attempts": 1})
    backend = _backend(spec)
    refusal = _failing("ThrottlingException", 400, 1)
    backend._sm.meta.events.register("before-send.sagemaker.StopTrainingJob", refusal)
    Orchestrator(spec, backend=backend, tracker=None).run()
    backend.close()

    (name,) = sagemaker.created
    assert refusal.state["left"] == 0  # type: ignore[attr-defined]
    assert sagemaker.stops == [name]
    sagemaker.wait_for(lambda: sagemaker.status(name) == "Stopped")


def test_cancelling_a_waiting_trial_lets_the_next_one_start(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    from tuner.backend import CommandEntry, MetricDefinition, TrialSpec

    spec = sm_spec()
    backend = _backend(spec)
    entry = CommandEntry(("python", "train.py"), (MetricDefinition("loss", LOSS["regex"]),))
    sagemaker.refuse = 1
    first = backend.submit(TrialSpec(spec.name, 0, {"x": 0.1}, entry, "loss"))
    assert sagemaker.created == []  # refused for quota: it waits
    backend.cancel(first)
    backend.submit(TrialSpec(spec.name, 1, {"x": 0.2}, entry, "loss"))
    assert sagemaker.created == [job_name(backend.prefix, 1, 0)]
    backend.close()


def test_a_zero_quota_fails_the_trial_and_says_how_to_fix(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.refuse = 100
    sagemaker.refusal = (
        "The account-level service limit 'ml.g5.xlarge for spot training job usage' is 0 "
        "Instances, with current utilization of 0 Instances"
    )
    spec = sm_spec(budget={"max_trials": 2, "max_failures": 2})
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.stop_reason is StopReason.MAX_FAILURES
    for trial in records(load_study(spec)):
        assert "quota for this job is 0" in (trial.error or "")
        assert "Service Quotas" in (trial.error or "")
    assert sagemaker.created == []


def test_job_names_another_study_took_are_refused_before_any_job(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    spec = sm_spec()
    sagemaker.client("sagemaker").create_training_job(
        TrainingJobName=job_name(job_prefix(spec.name), 0, 0),
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/x"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        Tags=[{"Key": "tuner:study-uid", "Value": "an-earlier-study"}],
    )
    with pytest.raises(BackendError, match="give this study a new `name`"):
        _backend(spec)


def test_a_create_whose_answer_is_lost_is_found_not_duplicated(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    from botocore.exceptions import ConnectionClosedError

    sagemaker.script = _quadratic
    spec = sm_spec(budget={"max_trials": 2, "max_concurrent": 2}, backend={"max_attempts": 1})
    backend = _backend(spec)
    lost = {"left": 1}

    def got_through_but_no_answer(request: Any, **kwargs: Any) -> Any:
        if lost["left"] <= 0:
            return None
        lost["left"] -= 1
        sagemaker.client("sagemaker").create_training_job(**json.loads(request.body))
        raise ConnectionClosedError(endpoint_url=request.url)

    backend._sm.meta.events.register(
        "before-send.sagemaker.CreateTrainingJob", got_through_but_no_answer
    )
    summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert lost["left"] == 0
    assert summary.counts[TrialState.COMPLETE] == 2
    assert sorted(sagemaker.created) == sorted(job_name(backend.prefix, n, 0) for n in (0, 1))


def test_jobs_missing_from_listings_for_long_are_described(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    monkeypatch.setattr("tuner.backends.sagemaker.backend.VISIBILITY_GRACE", timedelta(0))
    sagemaker.script = _quadratic
    spec = sm_spec(budget={"max_trials": 2, "max_concurrent": 2})
    backend = _backend(spec)
    calls = _calls(backend)
    backend._sm.meta.events.register(
        "after-call.sagemaker.ListTrainingJobs",
        lambda parsed, **kwargs: parsed.update(TrainingJobSummaries=[]),
    )
    summary = Orchestrator(spec, backend=backend, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 2
    assert calls["DescribeTrainingJob"] > 2  # each poll asked for the unlisted jobs


def test_metrics_come_from_the_first_instance_and_the_log_from_all(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    sagemaker.script = lambda name, hp: Outcome(
        lines=["epoch=0 loss=3.0", "epoch=1 loss=2.0"],
        other_host_lines=["epoch=0 loss=99.0 (algo-2)", "epoch=1 loss=98.0 (algo-2)"],
        final_metrics={"loss": 2.0},
    )
    spec = sm_spec(budget={"max_trials": 1}, backend={"instance_count": 2})
    Orchestrator(spec, tracker=None).run()

    (stored,) = load_study(spec).get_trials()
    assert stored.intermediate_values == {0: 3.0, 1: 2.0}
    (trial,) = records(load_study(spec))
    assert "loss=98.0 (algo-2)" in (trial.log or "")


def test_requests_past_sagemakers_limits_fail_the_trial_before_any_job(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    many = [{"name": f"m{i}", "regex": f"m{i}=([0-9.]+)"} for i in range(41)]
    spec = sm_spec(
        budget={"max_trials": 1, "max_failures": 1},
        trial={"metric_definitions": [LOSS, *many]},
    )
    Orchestrator(spec, tracker=None).run()

    (trial,) = records(load_study(spec))
    assert "at most 40 metric definitions" in (trial.error or "")
    assert sagemaker.created == []


def test_dollars_can_be_an_objective_against_accuracy(
    sagemaker: FakeSageMaker, sm_spec: Callable[..., Any]
) -> None:
    """A bigger x trains longer (costs more) and reaches a lower loss: a trade-off in USD."""

    def bigger_is_better_but_dearer(name: str, hp: Mapping[str, str]) -> Outcome:
        x = float(hp["x"]) + 2.0  # the space is [-2, 2]
        loss = 1.0 / (1.0 + x)
        return Outcome(
            lines=[f"epoch=0 loss={loss:.6f}"],
            final_metrics={"loss": loss},
            billable=int(60 + 100 * x),
        )

    sagemaker.script = bigger_is_better_but_dearer
    spec = sm_spec(
        objective=[{"metric": "loss"}, {"metric": "tuner.cost_usd"}],
        strategy={"type": "random", "seed": 4},
        budget={"max_trials": 6, "max_concurrent": 2},
        backend={"prices": {"ml.m5.large": 36.0}},  # 1 cent per second
    )
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.counts[TrialState.COMPLETE] == 6
    front = summary.front
    assert len(front) == 6  # every trial trades loss for dollars: none dominates another
    for record in front:
        assert record.values is not None
        loss, dollars = record.values
        assert loss == pytest.approx(1.0 / (3.0 + record.params["x"]), abs=1e-6)
        assert dollars == pytest.approx(record.cost)
        assert dollars == pytest.approx(0.01 * int(60 + 100 * (record.params["x"] + 2.0)))
