"""One study's training jobs on paper: their names, code, requests and what a finished one says.

Everything here is pure (no AWS call): the names (``<study>-<trial>-<attempt>``), the study's
code packed reproducibly, hyperparameters as SageMaker's strings, the CreateTrainingJob request
with the limits SageMaker puts on it, and, side by side with the request that starts a job, the
reading of the DescribeTrainingJob answer that ends it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.backend import (
    BackendError,
    CommandEntry,
    ErrorKind,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.backends.sagemaker.config import Channel, SageMakerConfig
from tuner.records import TRACEBACK_CHARS
from tuner.trial_runner import hyperparameter_string

TAG_STUDY = "tuner:study"
TAG_UID = "tuner:study-uid"
TAG_TRIAL = "tuner:trial"
TAG_ATTEMPT = "tuner:attempt"

MAX_JOB_NAME = 63
MAX_METRIC_DEFINITIONS = 40
MAX_HYPERPARAMETERS = 95
"""SageMaker's 100, less the five ``sagemaker_*`` entries for shipped code."""
_PREFIX_LENGTH = 48
"""Longest study part of a job name: leaves room for ``-<trial up to 7 digits>-<attempt>``."""
_CODE_EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "tuner-studies",
    "mlruns",
    "mlflow.db",
)
_REMOTE_MLFLOW = ("http://", "https://", "databricks", "arn:")


def job_prefix(study: str) -> str:
    """The study's part of its job names: SageMaker's characters, at most 48 of them.

    A longer name is cut and given a hash of the whole, so two long names stay apart.
    """
    part = re.sub(r"[^A-Za-z0-9-]", "-", study).strip("-") or "study"
    if len(part) > _PREFIX_LENGTH:
        digest = hashlib.sha256(study.encode()).hexdigest()[:6]
        part = f"{part[: _PREFIX_LENGTH - 7].rstrip('-')}-{digest}"
    return part


def job_name(prefix: str, trial: int, attempt: int) -> str:
    """``<prefix>-<trial>-<attempt>``, a valid training-job name.

    Raises:
        ValueError: if the name would be longer than SageMaker's 63 characters.
    """
    name = f"{prefix}-{trial}-{attempt}"
    if len(name) > MAX_JOB_NAME:
        raise ValueError(f"job name {name!r} is longer than {MAX_JOB_NAME} characters")
    return name


def pack_source(folder: str | os.PathLike[str]) -> bytes:
    """``folder`` as a gzipped tarball with the same bytes for the same files (sorted, no
    timestamps or owners), without caches, virtualenvs and study state."""

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in _CODE_EXCLUDES)

    buffer = io.BytesIO()
    root = Path(folder)
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        tar.mtime = 0  # type: ignore[attr-defined]
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not excluded(d))
            for name in sorted(filenames):
                if excluded(name):
                    continue
                path = Path(dirpath, name)
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue()


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def sagemaker_hyperparameters(params: Mapping[str, Any]) -> dict[str, str]:
    """The trial's parameters as SageMaker's string hyperparameters: strings as they are,
    other values as JSON (``0.001``, ``true``), exactly the ``--name value`` of command trials."""
    return {name: hyperparameter_string(value) for name, value in params.items()}


def check_limits(entry: CommandEntry, params: Mapping[str, Any]) -> None:
    """SageMaker's request limits that the spec does not check, with what to change."""
    definitions = entry.metric_definitions
    if len(definitions) > MAX_METRIC_DEFINITIONS:
        raise BackendError(
            f"SageMaker reads at most {MAX_METRIC_DEFINITIONS} metric definitions; the trial "
            f"has {len(definitions)}: keep the ones the study needs"
        )
    for definition in definitions:
        if len(definition.regex) > 500:
            raise BackendError(
                f"the regex of metric {definition.name!r} is longer than SageMaker's 500 characters"
            )
    if len(params) > MAX_HYPERPARAMETERS:
        raise BackendError(
            f"SageMaker takes at most {MAX_HYPERPARAMETERS} hyperparameters (tuner adds 5 for "
            f"code it ships); the space has {len(params)}"
        )


def _channel(name: str, channel: Channel) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": channel.uri,
                "S3DataDistributionType": channel.distribution,
            }
        },
        "InputMode": channel.input_mode,
    }
    if channel.content_type:
        spec["ContentType"] = channel.content_type
    return spec


@dataclass(frozen=True)
class JobTemplate:
    """How one study's training jobs are named, requested and read back when they end.

    Attributes:
        config: the spec's ``backend`` section.
        study: the study's name (its job names' prefix and a tag).
        uid: the study's unique id (the tag that tells its jobs from others').
        region: where the jobs run.
    """

    config: SageMakerConfig
    study: str
    uid: str
    region: str
    prefix: str = field(init=False)
    """The study's part of its job names (:func:`job_prefix`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", job_prefix(self.study))

    def name(self, trial: int, attempt: int) -> str:
        """The job name of a trial's attempt (:func:`job_name`)."""
        return job_name(self.prefix, trial, attempt)

    def request(self, trial: TrialSpec, name: str, code_uri: str | None) -> dict[str, Any]:
        """The CreateTrainingJob request of ``trial`` as job ``name``.

        Args:
            trial: a command trial.
            name: its job's name.
            code_uri: where the study's code tarball is, when ``entry_point`` ships code.
        """
        config = self.config
        assert isinstance(trial.entry, CommandEntry)
        hyperparameters = sagemaker_hyperparameters(trial.params)
        if config.entry_point is not None:
            assert code_uri is not None, "a framework image runs code shipped to S3"
            hyperparameters.update(
                sagemaker_program=config.entry_point,
                sagemaker_submit_directory=code_uri,
                sagemaker_region=self.region,
                sagemaker_job_name=name,
                sagemaker_container_log_level="20",
            )
        stopping: dict[str, int] = {"MaxRuntimeInSeconds": int(config.max_runtime)}
        if config.spot.enabled:
            stopping["MaxWaitTimeInSeconds"] = int(config.spot.max_wait or config.max_runtime)
        resources: dict[str, Any] = {
            "InstanceType": config.instance_type,
            "InstanceCount": config.instance_count,
            "VolumeSizeInGB": config.volume_size_gb,
        }
        if config.keep_alive is not None:
            resources["KeepAlivePeriodInSeconds"] = int(config.keep_alive)
        request: dict[str, Any] = {
            "TrainingJobName": name,
            "HyperParameters": hyperparameters,
            "AlgorithmSpecification": {
                "TrainingImage": config.image_uri,
                "TrainingInputMode": "File",
                "MetricDefinitions": [
                    {"Name": d.name, "Regex": d.regex} for d in trial.entry.metric_definitions
                ],
            },
            "RoleArn": config.role_arn,
            "OutputDataConfig": {"S3OutputPath": config.output_path},
            "ResourceConfig": resources,
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": config.spot.enabled,
            "Environment": self.environment(trial.env),
            "Tags": [
                *({"Key": k, "Value": v} for k, v in config.tags.items()),
                {"Key": TAG_STUDY, "Value": self.study},
                {"Key": TAG_UID, "Value": self.uid},
                {"Key": TAG_TRIAL, "Value": str(trial.number)},
                {"Key": TAG_ATTEMPT, "Value": str(trial.attempt)},
            ],
        }
        if config.inputs:
            request["InputDataConfig"] = [_channel(name, c) for name, c in config.inputs.items()]
        if config.spot.checkpoint_path:
            base = config.spot.checkpoint_path.rstrip("/")
            request["CheckpointConfig"] = {"S3Uri": f"{base}/{self.prefix}/trial-{trial.number}"}
        if config.vpc_config is not None:
            request["VpcConfig"] = {
                "Subnets": config.vpc_config.subnets,
                "SecurityGroupIds": config.vpc_config.security_group_ids,
            }
        return request

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """A job's environment: the section's, then the trial's."""
        merged = {**self.config.environment, **env}
        uri = merged.get("MLFLOW_TRACKING_URI", "")
        if uri and not uri.startswith(_REMOTE_MLFLOW):
            # A local store means nothing inside the job: its code logs nowhere rather than
            # into a database that vanishes with the instance.
            merged.pop("MLFLOW_TRACKING_URI")
            merged.pop("MLFLOW_RUN_ID", None)
        return merged

    def code_location(self, data: bytes) -> tuple[str, str]:
        """The bucket and key of the study's code tarball ``data``: named by its digest, so
        changed code is a new object."""
        digest = hashlib.sha256(data).hexdigest()[:12]
        bucket, key = _split_s3(self.config.code_path or self.config.output_path)
        key = "/".join(p for p in (key, self.prefix, "code", f"source-{digest}.tar.gz") if p)
        return bucket, key

    def outcome(
        self,
        job: str,
        trial: int,
        described: Mapping[str, Any],
        printed: Mapping[str, float],
        log: str | None,
    ) -> TrialUpdate:
        """The final update of a finished job.

        Args:
            job: the job's name.
            trial: the trial it ran.
            described: SageMaker's DescribeTrainingJob answer for it.
            printed: the last value of each metric its log showed.
            log: its log, if it had one.
        """
        metrics = dict(printed)
        for item in described.get("FinalMetricDataList", []):
            metrics[item["MetricName"]] = float(item["Value"])
        status = described["TrainingJobStatus"]
        secondary = str(described.get("SecondaryStatus", ""))
        reason = str(described.get("FailureReason", ""))
        common: dict[str, Any] = {
            "node": f"{self.config.instance_type} x{self.config.instance_count}",
            "log": log,
            **self.cost(described),
        }
        if status == "Completed":
            return TrialUpdate(trial, TrialStatus.COMPLETED, metrics, **common)
        if status == "Stopped" and secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
            return TrialUpdate(
                trial,
                TrialStatus.FAILED,
                metrics,
                error=f"SageMaker job {job} was stopped: {secondary} "
                "(backend.max_runtime / spot.max_wait)",
                error_kind=ErrorKind.TIMEOUT,
                **common,
            )
        if status == "Stopped":
            return TrialUpdate(trial, TrialStatus.CANCELLED, metrics, **common)
        user = reason.startswith(("AlgorithmError", "ClientError"))
        return TrialUpdate(
            trial,
            TrialStatus.FAILED,
            metrics,
            error=f"SageMaker job {job} failed: {reason or 'no reason given'}",
            traceback=(log or "")[-TRACEBACK_CHARS:] or None,
            error_kind=ErrorKind.USER if user else ErrorKind.INFRA,
            **common,
        )

    def cost(self, described: Mapping[str, Any]) -> dict[str, Any]:
        """The job's cost and what SageMaker says about it, for the trial's record: the
        ``details`` and, when the price and billed time are known, the ``cost`` of its update.
        """
        config = self.config
        price = config.price()
        details: dict[str, str | float] = {
            "sagemaker.job_name": str(described["TrainingJobName"]),
            "sagemaker.instance_type": config.instance_type,
        }
        artifacts = described.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if artifacts:
            details["sagemaker.model_artifacts"] = str(artifacts)
        billable = described.get("BillableTimeInSeconds")
        training = described.get("TrainingTimeInSeconds")
        if training is not None:
            details["sagemaker.training_seconds"] = float(training)
        if billable is None:
            return {"details": details}
        details["sagemaker.billable_seconds"] = float(billable)
        if price is None:
            return {"details": details}
        rate = price * config.instance_count / 3600
        if training is not None and described.get("EnableManagedSpotTraining"):
            details["sagemaker.spot_savings_usd"] = max(0.0, float(training) - billable) * rate
        return {"details": details, "cost": float(billable) * rate}
