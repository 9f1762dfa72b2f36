"""SageMaker for the tests: moto's server on loopback, with the job lifecycle moto leaves out.

The backend talks to moto through the real boto3 client (``AWS_ENDPOINT_URL``). moto marks
every training job Completed the moment it is created and has no ``StopTrainingJob``; this
module patches its model so that a job starts ``InProgress`` and plays out in a thread what the
test's ``script`` says (log lines into moto's CloudWatch Logs, then a final status), stops as
SageMaker does (``Stopping``, then ``Stopped`` a little later), refuses duplicate names and,
when told to, refuses new jobs for quota (``ResourceLimitExceeded``).

``LocalTrainingJobs`` goes further for the data-path test: each job really runs its entry
point through AWS's ``sagemaker-training`` toolkit, without Docker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servers import free_port

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
BUCKET = "tuner-tests"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
QUOTA_REFUSAL = (
    "The account-level service limit 'ml.m5.large for training job usage' is 2 Instances, "
    "with current utilization of 2 Instances and a request delta of 1 Instances"
)


@dataclass(frozen=True)
class Outcome:
    """What a fake training job does once created.

    Attributes:
        lines: printed by the job, spread over ``seconds``.
        seconds: how long the job runs.
        status: its final status: Completed, Failed or Stopped.
        failure_reason: SageMaker's FailureReason for a failed job.
        secondary: the final SecondaryStatus (e.g. MaxRuntimeExceeded).
        final_metrics: FinalMetricDataList.
        billable: BillableTimeInSeconds (training seconds too, unless ``training`` is given).
        training: TrainingTimeInSeconds.
    """

    lines: Sequence[str] = ()
    other_host_lines: Sequence[str] = ()
    """Printed by a second instance (algo-2), at the same pace."""
    seconds: float = 0.3
    status: str = "Completed"
    failure_reason: str | None = None
    secondary: str | None = None
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    billable: int = 60
    training: int | None = None


Script = Callable[[str, Mapping[str, str]], Outcome]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # moto keeps naive UTC


class FakeSageMaker:
    """moto on a loopback port, patched into a SageMaker whose jobs take time."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.script: Script = lambda name, hyperparameters: Outcome()
        self.refuse = 0
        """New jobs to refuse with ResourceLimitExceeded..."""
        self.refusal = QUOTA_REFUSAL
        """... with this message."""
        self.stop_lag = 0.3
        self.created: list[str] = []
        self.requests: dict[str, dict[str, Any]] = {}
        self.stops: list[str] = []
        self.peak_running = 0
        self._lock = threading.Lock()
        self._stop_requested: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._patches: list[tuple[Any, str, Any]] = []
        self._server: Any = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeSageMaker:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._patch()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        self._stop_requested.update(self.created)
        for thread in self._threads:
            thread.join(timeout=10)
        if self._server is not None:
            self._server.stop()
        for owner, name, original in reversed(self._patches):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    def reset(self) -> None:
        """Forgets every job, log and bucket (between tests)."""
        from moto.moto_api._internal.models import moto_api_backend

        self._stop_requested.update(self.created)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        moto_api_backend.reset()
        self.__dict__.pop("_play", None)  # a test's LocalTrainingJobs ends with the test
        self.script = lambda name, hyperparameters: Outcome()
        self.refuse = 0
        self.refusal = QUOTA_REFUSAL
        self.created.clear()
        self.requests.clear()
        self.stops.clear()
        self._stop_requested.clear()
        self.peak_running = 0
        self.client("s3").create_bucket(Bucket=BUCKET)

    def environment(self) -> dict[str, str]:
        """What a process needs to reach this SageMaker through boto3."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # --- looking at jobs ------------------------------------------------------------------

    @property
    def jobs(self) -> dict[str, Any]:
        """moto's training-job objects by name."""
        from moto.sagemaker.models import sagemaker_backends

        jobs: dict[str, Any] = sagemaker_backends[ACCOUNT][REGION].training_jobs
        return jobs

    def status(self, name: str) -> str:
        return str(self.jobs[name].training_job_status)

    def running(self) -> list[str]:
        return [n for n, j in self.jobs.items() if j.training_job_status == "InProgress"]

    def tags(self, name: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.jobs[name].tags}

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the fake SageMaker never got there")
            time.sleep(0.05)

    # --- moto, patched --------------------------------------------------------------------

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._patches.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, value)

    def _patch(self) -> None:
        from moto.core.responses import EmptyResult
        from moto.sagemaker.exceptions import (
            ResourceInUseException,
            SagemakerClientError,
            ValidationError,
        )
        from moto.sagemaker.models import SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse

        fake = self

        class ResourceLimitExceeded(SagemakerClientError):
            code = "ResourceLimitExceeded"

        backend_create = SageMakerModelBackend.create_training_job
        response_create = SageMakerResponse.create_training_job

        def create(backend: Any, training_job_name: str, **kwargs: Any) -> Any:
            if training_job_name in backend.training_jobs:
                raise ResourceInUseException(
                    message=f"Training job names must be unique: {training_job_name}"
                )
            with fake._lock:
                if fake.refuse > 0:
                    fake.refuse -= 1
                    raise ResourceLimitExceeded(fake.refusal)
            spec = json.loads(json.dumps(kwargs["algorithm_specification"]))
            job = backend_create(backend, training_job_name, **kwargs)
            job.algorithm_specification = spec  # moto replaces the metric definitions
            job.training_job_status, job.secondary_status = "InProgress", "Starting"
            job.final_metric_data_list = []
            job.training_end_time = None
            return job

        def respond_create(response: Any) -> Any:
            result = response_create(response)
            name = response._get_param("TrainingJobName")
            job = response.sagemaker_backend.training_jobs[name]
            job.environment = response._get_param("Environment") or {}
            with fake._lock:
                fake.created.append(name)
                fake.requests[name] = json.loads(response.body)
            thread = threading.Thread(target=fake._play, args=(name,), daemon=True)
            fake._threads.append(thread)
            thread.start()
            return result

        def stop(backend: Any, training_job_name: str) -> None:
            job = backend.training_jobs.get(training_job_name)
            if job is None:
                raise ValidationError(message=f"Could not find training job '{training_job_name}'.")
            if job.training_job_status != "InProgress":
                raise ValidationError(
                    message="The request was rejected because the training job is in status "
                    f"{job.training_job_status}."
                )
            job.training_job_status = job.secondary_status = "Stopping"
            fake.stops.append(training_job_name)
            fake._stop_requested.add(training_job_name)

        def respond_stop(response: Any) -> Any:
            response.sagemaker_backend.stop_training_job(response._get_param("TrainingJobName"))
            return EmptyResult()

        self._set(SageMakerModelBackend, "create_training_job", create)
        self._set(SageMakerResponse, "create_training_job", respond_create)
        self._set(SageMakerModelBackend, "stop_training_job", stop)
        self._set(SageMakerResponse, "stop_training_job", respond_stop)

    # --- playing a job --------------------------------------------------------------------

    def _play(self, name: str) -> None:
        job = self.jobs[name]
        with self._lock:
            self.peak_running = max(self.peak_running, len(self.running()))
        outcome = self.script(name, dict(job.hyper_parameters or {}))
        job.secondary_status = "Training"
        job.training_start_time = _now()
        lines = list(outcome.lines)
        pause = outcome.seconds / (len(lines) + 1)
        logs = _LogWriter(self.client("logs"), name)
        other = (
            _LogWriter(self.client("logs"), name, "algo-2") if outcome.other_host_lines else None
        )
        for index, line in enumerate(lines):
            if self._wait(name, pause):
                break
            logs.write(line)
            if other is not None and index < len(outcome.other_host_lines):
                other.write(outcome.other_host_lines[index])
        else:
            self._wait(name, pause)
        if name in self._stop_requested:
            time.sleep(self.stop_lag)  # SageMaker reports Stopping for a while
            self._finish(job, "Stopped", "Stopped", outcome)
            return
        self._finish(job, outcome.status, outcome.secondary or outcome.status, outcome)

    def _wait(self, name: str, seconds: float) -> bool:
        """Sleeps ``seconds`` unless the job is stopped; says whether it was."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if name in self._stop_requested:
                return True
            time.sleep(0.02)
        return name in self._stop_requested

    def _finish(self, job: Any, status: str, secondary: str, outcome: Outcome) -> None:
        job.final_metric_data_list = [
            {"MetricName": k, "Value": float(v), "Timestamp": _now()}
            for k, v in outcome.final_metrics.items()
        ]
        if outcome.failure_reason and status == "Failed":
            job.failure_reason = outcome.failure_reason
        job.billable_time_in_seconds = outcome.billable
        job.training_time_in_seconds = (
            outcome.training if outcome.training is not None else outcome.billable
        )
        job.training_end_time = job.last_modified_time = _now()
        job.secondary_status = secondary
        job.training_job_status = status


class _LogWriter:
    """Writes a job's output into its CloudWatch log stream, as SageMaker does."""

    def __init__(self, logs: Any, job: str, host: str = "algo-1"):
        self.logs = logs
        self.stream = f"{job}/{host}-{int(time.time())}"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=self.stream)

    def write(self, line: str) -> None:
        if not line:
            return  # CloudWatch Logs takes no empty events
        self.logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=self.stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
        )


# --- the data path: entry points really run through the sagemaker-training toolkit -----------


class LocalTrainingJobs:
    """Runs each job of a :class:`FakeSageMaker` through AWS's ``sagemaker-training`` toolkit.

    What the platform does around the toolkit is done here: the job's folder (``/opt/ml`` as
    ``SAGEMAKER_BASE_DIR``) with its hyperparameters, channels downloaded from S3 and resource
    config; the toolkit's ``train`` in its own process group, its output streamed line by line
    into CloudWatch Logs; then ``model/`` uploaded to S3 as ``model.tar.gz``, the metric
    definitions applied to the output for ``FinalMetricDataList``, and the final status, with
    the failure file as ``FailureReason``. A stop sends SIGTERM to the whole process group.
    """

    def __init__(self, fake: FakeSageMaker, folder: Path, images: Mapping[str, Path] | None = None):
        """``images`` stand in for custom images: an image URI maps to the file its
        Dockerfile copies into ``/opt/ml/code`` and names in ``SAGEMAKER_PROGRAM``."""
        self.fake = fake
        self.folder = folder
        self.images = dict(images or {})
        self.pids: dict[str, int] = {}

    def install(self) -> None:
        self.fake._play = self._play  # type: ignore[method-assign]

    def _play(self, name: str) -> None:
        try:
            self._run(name)
        except BaseException as exc:  # a broken harness fails the job, never hangs the test
            job = self.fake.jobs[name]
            failure = Outcome(failure_reason=f"InternalServerError: test harness: {exc!r}")
            self.fake._finish(job, "Failed", "Failed", failure)
            raise

    def _run(self, name: str) -> None:
        fake = self.fake
        job = fake.jobs[name]
        base = self.folder / name
        self._lay_out(job, base)
        env = {
            **os.environ,
            **fake.environment(),
            **(job.environment or {}),
            "SAGEMAKER_BASE_DIR": str(base),
            "SM_STUDIO_LOCAL_MODE": "true",
            "TRAINING_JOB_NAME": name,
            "PYTHONUNBUFFERED": "1",
        }
        program = self.images.get(job.algorithm_specification["TrainingImage"])
        if program is not None:  # what the image's Dockerfile put in place
            shutil.copy(program, base / "code" / program.name)
            env["SAGEMAKER_PROGRAM"] = program.name
        train = shutil.which("train", path=str(Path(sys.executable).parent))
        assert train is not None, "the sagemaker-training toolkit is not installed"
        job.secondary_status = "Training"
        job.training_start_time = _now()
        started = time.monotonic()
        process = subprocess.Popen(
            [train],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        self.pids[name] = process.pid
        watcher = threading.Thread(target=self._stop_when_asked, args=(name, process), daemon=True)
        watcher.start()
        logs = _LogWriter(fake.client("logs"), name)
        lines: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            logs.write(line.rstrip("\n"))
        code = process.wait()
        seconds = max(1, round(time.monotonic() - started))
        if name in fake._stop_requested:
            time.sleep(fake.stop_lag)
            fake._finish(job, "Stopped", "Stopped", Outcome(billable=seconds))
            return
        self._upload_model(job, base / "model")
        metrics = _final_metrics(job.algorithm_specification.get("MetricDefinitions", []), lines)
        if code == 0:
            fake._finish(
                job, "Completed", "Completed", Outcome(final_metrics=metrics, billable=seconds)
            )
            return
        failure = base / "output" / "failure"
        reason = failure.read_text().strip() if failure.exists() else f"exit code {code}"
        fake._finish(
            job,
            "Failed",
            "Failed",
            Outcome(
                final_metrics=metrics,
                failure_reason=f"AlgorithmError: {reason}",
                billable=seconds,
            ),
        )

    def _stop_when_asked(self, name: str, process: subprocess.Popen[str]) -> None:
        while process.poll() is None:
            if name in self.fake._stop_requested:
                os.killpg(process.pid, signal.SIGTERM)
                return
            time.sleep(0.05)

    def _lay_out(self, job: Any, base: Path) -> None:
        config = base / "input" / "config"
        for folder in (config, base / "model", base / "output" / "data", base / "code"):
            folder.mkdir(parents=True, exist_ok=True)
        hyperparameters = dict(job.hyper_parameters or {})
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        channels = {}
        s3 = self.fake.client("s3")
        for channel in job.input_data_config or []:
            name = channel["ChannelName"]
            channels[name] = {
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            target = base / "input" / "data" / name
            target.mkdir(parents=True, exist_ok=True)
            for key in _keys(s3, bucket, prefix):
                relative = key[len(prefix) :].lstrip("/") or Path(key).name
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target / relative))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )

    def _upload_model(self, job: Any, model: Path) -> None:
        uri = job.model_artifacts["S3ModelArtifacts"]
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        archive = model.parent / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(model)))
        self.fake.client("s3").upload_file(str(archive), bucket, key)


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def _final_metrics(
    definitions: Sequence[Mapping[str, str]], lines: Sequence[str]
) -> dict[str, float]:
    import re

    last: dict[str, float] = {}
    for line in lines:
        for definition in definitions:
            match = re.search(definition["Regex"], line)
            if match:
                last[definition["Name"]] = float(match.group(1))
    return last
