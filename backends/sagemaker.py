"""The SageMaker backend: one training job per trial, through plain boto3.

Each trial is a training job named ``<study>-<trial>-<attempt>``, tagged with the study and
the trial, running the spec's image: either the researcher's own image (its entry point runs)
or a framework image that runs ``entry_point`` from ``source_dir`` (packed once per study and
uploaded to S3, passed the way SageMaker's framework containers expect). Hyperparameters are
SageMaker strings; metrics are read with the spec's ``metric_definitions``.

Jobs are watched by batched polling: one ``ListTrainingJobs`` call (paged) covers every job of
the study, a job is described only once it has finished, and the CloudWatch log stream of a
running job is tailed with forward tokens, so intermediate metrics (and early stopping) work as
on Ray. Faults are normal: throttling is retried by botocore's standard retry mode,
``ResourceLimitExceeded`` holds the trial and lowers the concurrency, a job not yet listed
counts as running, and stopping a finished job is a success.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import os
import random
import re
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from backends.sagemaker_prices import PRICES
from tuner.backend import (
    BackendConfig,
    BackendContext,
    BackendError,
    CommandEntry,
    ErrorKind,
    MissingExtraError,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.spec import Duration
from tuner.trial_runner import TRACEBACK_LIMIT, MetricParser, OutputLog, hyperparameter_string

_log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TAG_STUDY = "tuner:study"
TAG_UID = "tuner:study-uid"
TAG_TRIAL = "tuner:trial"
TAG_ATTEMPT = "tuner:attempt"

MAX_JOB_NAME = 63
_PREFIX_LENGTH = 48
"""Longest study part of a job name: leaves room for ``-<trial up to 7 digits>-<attempt>``."""
VISIBILITY_GRACE = timedelta(minutes=2)
"""How long a created job may be missing from listings (they lag) before it is described."""
LOG_PAGES = 20
"""Most pages of one log stream read per poll (a page is up to 1 MB)."""
_FINISHED = ("Completed", "Failed", "Stopped")
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


class Channel(BaseModel):
    """An input channel: an S3 prefix the job gets in ``/opt/ml/input/data/<channel>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str = Field(description="s3://bucket/prefix")

    @field_validator("uri")
    @classmethod
    def _s3(cls, value: str) -> str:
        return _s3_uri(value)

    content_type: str | None = None
    input_mode: Literal["File", "FastFile", "Pipe"] = "File"
    distribution: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"


def _s3_uri(value: str) -> str:
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
        raise ValueError(f"{value!r} is not an S3 URI; write it as s3://bucket/prefix")
    return value.rstrip("/")


class Spot(BaseModel):
    """Managed spot training: cheaper, may wait for capacity and be interrupted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    max_wait: Duration | None = Field(
        None, description="Longest a job waits for spot capacity plus runs; >= max_runtime."
    )
    checkpoint_path: str | None = Field(
        None,
        description="S3 prefix for /opt/ml/checkpoints, one folder per trial, so an "
        "interrupted trial resumes from its last checkpoint.",
    )

    @field_validator("checkpoint_path")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        return None if value is None else _s3_uri(value)


class VpcConfig(BaseModel):
    """Run the jobs inside a VPC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnets: list[str] = Field(min_length=1)
    security_group_ids: list[str] = Field(min_length=1)


class SageMakerConfig(BackendConfig):
    """``backend: {type: sagemaker, ...}``: where and how the training jobs run."""

    type: Literal["sagemaker"] = "sagemaker"
    role_arn: str = Field(
        description="The IAM role the jobs run as, e.g. arn:aws:iam::123456789012:role/SageMaker.",
    )
    image_uri: str = Field(
        min_length=1, description="The training image: your own (ECR) or a framework image."
    )
    instance_type: str = Field("ml.m5.large", description="e.g. ml.g5.xlarge.")
    instance_count: int = Field(1, ge=1)
    volume_size_gb: int = Field(30, ge=1)
    region: str | None = Field(None, description="AWS region; the AWS profile's if unset.")
    inputs: dict[str, Channel] = Field(
        default_factory=dict, description="Channels, e.g. {train: s3://bucket/data/train}."
    )
    output_path: str = Field(description="Where models go: <output_path>/<job>/output/.")
    source_dir: str | None = Field(
        None, description="Folder packed and shipped to the job (default: the spec's folder)."
    )
    entry_point: str | None = Field(
        None,
        description="The script a framework image runs, relative to source_dir; unset, the "
        "image's own entry point runs.",
    )
    code_path: str | None = Field(
        None, description="S3 prefix for the code (default: output_path)."
    )
    environment: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    spot: Spot = Spot()
    max_runtime: Duration = Field(86400.0, description="A job's longest run (MaxRuntime).")
    keep_alive: Duration | None = Field(
        None, le=3600, description="Warm-pool time between jobs (at most 1h)."
    )
    vpc_config: VpcConfig | None = None
    prices: dict[str, float] = Field(
        default_factory=dict,
        description="USD per instance-hour, over the bundled us-east-1 table.",
    )
    poll_interval: Duration = Field(
        15.0, description="Seconds between status polls (one call covers every job)."
    )
    max_attempts: int = Field(
        8, ge=1, description="Attempts per AWS call (botocore standard retry mode)."
    )
    limit_backoff: Duration = Field(
        60.0, description="First wait before a job refused by a quota is tried again."
    )

    runs_functions: ClassVar[bool] = False

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str) -> str:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/\S+", value):
            raise ValueError(
                f"{value!r} is not an IAM role ARN; give the role the jobs run as, e.g. "
                "arn:aws:iam::123456789012:role/SageMakerExecution"
            )
        return value

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not re.fullmatch(r"ml\.[a-z0-9-]+\.[a-z0-9]+", value):
            raise ValueError(f"{value!r} is not a SageMaker instance type such as ml.g5.xlarge")
        return value

    @field_validator("output_path", "code_path")
    @classmethod
    def _s3_path(cls, value: str | None) -> str | None:
        return None if value is None else _s3_uri(value)

    @field_validator("inputs", mode="before")
    @classmethod
    def _uri_shorthand(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"uri": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("source_dir")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        spec_dir = (info.context or {}).get("spec_dir") or os.getcwd()
        path = Path(spec_dir, value).resolve()
        if not path.is_dir():
            raise ValueError(f"{str(path)!r} is not a folder; give the folder that holds the code")
        return str(path)

    @field_validator("environment")
    @classmethod
    def _environment_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,511}", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if len(text) > 512:
                raise ValueError(f"the value of {name} is longer than SageMaker's 512 characters")
        return value

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(("aws:", "tuner:")):
                raise ValueError(f"tag {key!r}: keys starting with aws: or tuner: are reserved")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> SageMakerConfig:
        wait = self.spot.max_wait
        if self.spot.enabled and wait is not None and wait < self.max_runtime:
            raise ValueError(
                f"spot.max_wait ({wait:g}s) must be at least max_runtime "
                f"({self.max_runtime:g}s): it covers waiting for capacity plus the run; "
                "raise max_wait or lower max_runtime"
            )
        if self.source_dir is not None and self.entry_point is None:
            raise ValueError(
                "`source_dir` is shipped for a framework image to run; name the script "
                "with `entry_point: train.py`"
            )
        if self.entry_point is not None:
            folder = self.source_dir or (info.context or {}).get("spec_dir") or os.getcwd()
            if not Path(folder, self.entry_point).is_file():
                raise ValueError(
                    f"entry_point {self.entry_point!r} is not a file in {folder!r}; it is "
                    "relative to source_dir (default: the spec's folder)"
                )
        return self

    def price(self) -> float | None:
        """USD per instance-hour of ``instance_type``, if known."""
        return self.prices.get(self.instance_type, PRICES.get(self.instance_type))

    def cost_problem(self) -> str | None:
        if self.price() is not None:
            return None
        return (
            f"no price is known for {self.instance_type}; add it to the backend section as "
            f"`prices: {{{self.instance_type}: <USD per instance-hour>}}`"
        )


# --- names and code ---------------------------------------------------------------------------


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


# --- jobs -------------------------------------------------------------------------------------


@dataclass
class _Job:
    """A training job this backend follows."""

    name: str
    trial: int
    attempt: int
    parser: MetricParser
    request: dict[str, Any] | None = None
    """The CreateTrainingJob request while the job waits to be created."""
    created: datetime | None = None
    log: OutputLog = field(default_factory=OutputLog)
    streams: dict[str, str | None] = field(default_factory=dict)
    """Log stream -> the forward token to read it on from."""
    cancelled: bool = False
    done: bool = False
    tries: int = 0
    next_try: float = 0.0


def _import_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingExtraError("boto3", "sagemaker", "the SageMaker backend") from None
    return boto3


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class SageMakerBackend:
    """Runs each trial as a SageMaker training job.

    Args:
        config: the ``backend`` section of the spec.
        context: the study's name, unique id and concurrency.
        session: a ``boto3.Session`` (default: one for ``config.region``).
        clock: monotonic seconds, for polling and backoff.
        sleep: waits between polls.

    Raises:
        BackendError: without a region or credentials, before any job is created.
    """

    name: ClassVar[str] = "sagemaker"
    Config: ClassVar[type[SageMakerConfig]] = SageMakerConfig

    def __init__(
        self,
        config: SageMakerConfig,
        context: BackendContext,
        *,
        session: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        boto3 = _import_boto3()
        from botocore.config import Config as BotoConfig

        self._config = config
        self._clock = clock
        self._sleep = sleep
        session = session or boto3.Session(region_name=config.region)
        region = config.region or session.region_name or os.environ.get("AWS_REGION")
        if not region:
            raise BackendError(
                "the SageMaker backend needs a region: set `backend.region` in the spec, or "
                "AWS_REGION / AWS_DEFAULT_REGION, or use a profile with a region"
            )
        self.region: str = region
        if session.get_credentials() is None:
            raise BackendError(
                "no AWS credentials found for the SageMaker backend: set AWS_PROFILE, or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role provides them"
            )
        boto_config = BotoConfig(
            region_name=self.region,
            retries={"mode": "standard", "total_max_attempts": config.max_attempts},
            user_agent_extra="hpo-tuner",
        )
        self._sm = session.client("sagemaker", config=boto_config)
        self._logs = session.client("logs", config=boto_config)
        self._s3 = session.client("s3", config=boto_config)
        self.study = context.study
        self.uid = context.uid or context.study
        self.prefix = job_prefix(context.study)
        self._wanted = max(1, context.max_concurrent)
        self._capacity = self._wanted
        self._limited_at: float | None = None
        self._price = config.price()
        self._jobs: dict[str, _Job] = {}
        self._ready: list[TrialUpdate] = []
        """Final updates known before the next poll (jobs that finished while no one watched)."""
        self._next_poll = 0.0
        self._swept = False
        self._code_uri: str | None = None
        self._rng = random.Random()

    # --- the protocol ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, trial: TrialSpec) -> TrialHandle:
        if not isinstance(trial.entry, CommandEntry):
            raise BackendError("the SageMaker backend runs command trials only")
        name = job_name(self.prefix, trial.number, trial.attempt)
        job = _Job(name, trial.number, trial.attempt, MetricParser(trial.entry.metric_definitions))
        job.request = self._request(trial, name)
        handle = TrialHandle(self.name, trial.number, {"job": name, "attempt": trial.attempt})
        if any(j.request is not None for j in self._jobs.values()):
            self._jobs[name] = job  # others wait for quota: queue behind them
            self._hold(job, None)
            return handle
        self._create(job)
        self._jobs[name] = job
        return handle

    def poll(self, timeout: float) -> list[TrialUpdate]:
        if self._ready:
            ready, self._ready = self._ready, []
            return ready
        now = self._clock()
        if now < self._next_poll:
            self._sleep(max(0.0, min(timeout, self._next_poll - now)))
            if self._clock() < self._next_poll:
                return []
        self._next_poll = self._clock() + self._config.poll_interval
        updates = self._refresh()
        ready, self._ready = self._ready, []
        return ready + updates

    def cancel(self, handle: TrialHandle) -> None:
        job = self._jobs.get(str(handle.data.get("job", "")))
        if job is None or job.cancelled or job.done:
            return
        job.cancelled = True
        if job.request is not None:  # never created
            job.done = True
            return
        self._stop(job.name)

    def reattach(self, handle: TrialHandle) -> bool:
        attempt = int(handle.data.get("attempt", 0))
        name = str(handle.data.get("job") or job_name(self.prefix, handle.trial, attempt))
        try:
            described = self._sm.describe_training_job(TrainingJobName=name)
        except Exception as exc:
            if _error_code(exc) in ("ValidationException", "ResourceNotFound"):
                return False  # never created: the trial is queued again
            raise
        if not self._is_ours(described["TrainingJobArn"]):
            return False
        definitions = self._metric_definitions(described)
        job = _Job(name, handle.trial, attempt, MetricParser(definitions))
        job.created = described["CreationTime"]
        self._jobs[name] = job
        if described["TrainingJobStatus"] in _FINISHED:
            self._ready.extend(self._final(job, described))
        _log.info("trial %d: following SageMaker job %s", handle.trial, name)
        return True

    def close(self) -> None:
        for job in self._jobs.values():
            if job.created is not None and not job.done and not job.cancelled:
                job.cancelled = True
                self._stop(job.name)
        try:
            self._stop_tagged(lambda name: True)
        except Exception:
            _log.warning("could not list the study's jobs to stop them", exc_info=True)

    # --- creating jobs --------------------------------------------------------------------

    def _request(self, trial: TrialSpec, name: str) -> dict[str, Any]:
        config = self._config
        assert isinstance(trial.entry, CommandEntry)
        hyperparameters = sagemaker_hyperparameters(trial.params)
        if config.entry_point is not None:
            hyperparameters.update(
                sagemaker_program=config.entry_point,
                sagemaker_submit_directory=self._code(trial.entry),
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
            "Environment": self._environment(trial.env),
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

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        merged = {**self._config.environment, **env}
        uri = merged.get("MLFLOW_TRACKING_URI", "")
        if uri and not uri.startswith(_REMOTE_MLFLOW):
            # A local store means nothing inside the job: its code logs nowhere rather than
            # into a database that vanishes with the instance.
            merged.pop("MLFLOW_TRACKING_URI")
            merged.pop("MLFLOW_RUN_ID", None)
        return merged

    def _code(self, entry: CommandEntry) -> str:
        """The S3 URI of the study's code tarball, uploaded on first use."""
        if self._code_uri is None:
            folder = self._config.source_dir or entry.workdir or os.getcwd()
            data = pack_source(folder)
            digest = hashlib.sha256(data).hexdigest()[:12]
            bucket, key = _split_s3(self._config.code_path or self._config.output_path)
            key = "/".join(p for p in (key, self.prefix, "code", f"source-{digest}.tar.gz") if p)
            self._s3.put_object(Bucket=bucket, Key=key, Body=data)
            self._code_uri = f"s3://{bucket}/{key}"
            _log.info("uploaded %s (%d KB) to %s", folder, len(data) // 1024, self._code_uri)
        return self._code_uri

    def _create(self, job: _Job) -> bool:
        """Creates ``job``; returns False if a quota refused it (it is then held)."""
        assert job.request is not None
        try:
            self._sm.create_training_job(**job.request)
        except Exception as exc:
            code = _error_code(exc)
            if code == "ResourceLimitExceeded":
                self._hold(job, exc)
                return False
            if code != "ResourceInUse":
                raise
            # A retried call whose first attempt got through, or another study's job.
            described = self._sm.describe_training_job(TrainingJobName=job.name)
            if not self._is_ours(described["TrainingJobArn"]):
                raise BackendError(
                    f"a SageMaker training job named {job.name} already exists from another "
                    f"study called {self.study!r} (job names are unique for ever in an account "
                    "and region); give the study a new `name`"
                ) from None
        job.request = None
        job.created = datetime.now(UTC)
        return True

    def _hold(self, job: _Job, exc: Exception | None) -> None:
        """Keeps a trial SageMaker refused for quota, to create it later; runs fewer at once."""
        job.tries += 1
        wait = min(self._config.limit_backoff * 2 ** (job.tries - 1), 900.0)
        job.next_try = self._clock() + wait * self._rng.uniform(0.8, 1.2)
        if exc is None:
            return
        running = sum(1 for j in self._jobs.values() if j.created is not None and not j.done)
        self._capacity = max(1, min(self._capacity, running))
        self._limited_at = self._clock()
        _log.warning(
            "SageMaker refused job %s (%s); it waits %.0fs, and the study runs at most %d "
            "jobs at once for now",
            job.name,
            str(exc).split(": ", 1)[-1],
            wait,
            self._capacity,
        )

    def _create_held(self) -> None:
        now = self._clock()
        for job in list(self._jobs.values()):
            if job.request is None or job.done:
                continue
            if now < job.next_try or not self._create(job):
                return  # keep their order: later ones wait behind this one
            _log.info("trial %d: job %s created after waiting for quota", job.trial, job.name)
        # No one waits: win back one slot at a time, slowly.
        if (
            self._limited_at is not None
            and self._capacity < self._wanted
            and now - self._limited_at > 5 * self._config.limit_backoff
        ):
            self._capacity += 1
            self._limited_at = now if self._capacity < self._wanted else None

    def _is_ours(self, arn: str) -> bool:
        tags = self._sm.list_tags(ResourceArn=arn).get("Tags", [])
        return any(t["Key"] == TAG_UID and t["Value"] == self.uid for t in tags)

    def _metric_definitions(self, described: Mapping[str, Any]) -> tuple[Any, ...]:
        from tuner.backend import MetricDefinition

        spec = described.get("AlgorithmSpecification", {})
        return tuple(
            MetricDefinition(d["Name"], d["Regex"]) for d in spec.get("MetricDefinitions", [])
        )

    # --- watching jobs --------------------------------------------------------------------

    def _refresh(self) -> list[TrialUpdate]:
        if not self._swept:
            self._swept = True
            self._stop_tagged(lambda name: name not in self._jobs)
        self._create_held()
        live = [j for j in self._jobs.values() if j.created is not None and not j.done]
        if not live:
            return []
        statuses = self._statuses(live)
        updates: list[TrialUpdate] = []
        now = datetime.now(UTC)
        for job in live:
            assert job.created is not None
            status = statuses.get(job.name)
            if status is None:
                if now - job.created < VISIBILITY_GRACE:
                    continue  # created, not listed yet: running
                status = self._describe_status(job)
            if job.cancelled:
                job.done = status in _FINISHED or status == "Missing"
                continue
            if status == "Missing":
                job.done = True
                updates.append(
                    TrialUpdate(
                        job.trial,
                        TrialStatus.FAILED,
                        error=f"SageMaker job {job.name} disappeared",
                        error_kind=ErrorKind.INFRA,
                    )
                )
            elif status in _FINISHED:
                described = self._sm.describe_training_job(TrainingJobName=job.name)
                updates.extend(self._final(job, described))
            else:
                updates.extend(self._tail(job))
                if self._price is not None:
                    hours = (now - job.created).total_seconds() / 3600
                    cost = hours * self._price * self._config.instance_count
                    updates.append(TrialUpdate(job.trial, TrialStatus.RUNNING, cost=cost))
        return updates

    def _statuses(self, live: list[_Job]) -> dict[str, str]:
        """The status of every listed job of the study created since the oldest live one."""
        since = min(j.created for j in live if j.created is not None) - timedelta(minutes=10)
        statuses: dict[str, str] = {}
        pages = self._sm.get_paginator("list_training_jobs").paginate(
            NameContains=self.prefix, CreationTimeAfter=since, MaxResults=100
        )
        for page in pages:
            for summary in page.get("TrainingJobSummaries", []):
                statuses[summary["TrainingJobName"]] = summary["TrainingJobStatus"]
        return statuses

    def _describe_status(self, job: _Job) -> str:
        try:
            described = self._sm.describe_training_job(TrainingJobName=job.name)
            return str(described["TrainingJobStatus"])
        except Exception as exc:
            if _error_code(exc) in ("ValidationException", "ResourceNotFound"):
                return "Missing"
            raise

    def _tail(self, job: _Job) -> list[TrialUpdate]:
        """Reads what is new in the job's log streams; metric lines become updates."""
        try:
            found = self._logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job.name}/"
            )["logStreams"]
        except Exception as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return []  # no log yet
            raise
        for stream in sorted(s["logStreamName"] for s in found):
            job.streams.setdefault(stream, None)
        updates: list[TrialUpdate] = []
        for index, stream in enumerate(sorted(job.streams)):
            for line in self._read(job, stream):
                job.log.write(line + "\n")
                if index == 0:  # metrics come from the first host, as on SageMaker
                    updates.extend(
                        TrialUpdate(job.trial, TrialStatus.RUNNING, {name: value}, step)
                        for name, step, value in job.parser.feed(line)
                    )
        return updates

    def _read(self, job: _Job, stream: str) -> list[str]:
        lines: list[str] = []
        for _ in range(LOG_PAGES):
            token = job.streams[stream]
            kwargs: dict[str, Any] = {"nextToken": token} if token else {}
            page = self._logs.get_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True, **kwargs
            )
            lines.extend(event["message"].rstrip("\n") for event in page["events"])
            job.streams[stream] = page["nextForwardToken"]
            if not page["events"] or page["nextForwardToken"] == token:
                break
        return lines

    def _final(self, job: _Job, described: Mapping[str, Any]) -> list[TrialUpdate]:
        """The updates for a finished job: its last metric lines, then its outcome."""
        job.done = True
        updates = [u for u in self._tail(job) if u.metrics]
        metrics = dict(job.parser.last)
        for item in described.get("FinalMetricDataList", []):
            metrics[item["MetricName"]] = float(item["Value"])
        status = described["TrainingJobStatus"]
        secondary = str(described.get("SecondaryStatus", ""))
        reason = str(described.get("FailureReason", ""))
        log = job.log.text() or None
        common: dict[str, Any] = {
            "node": f"{self._config.instance_type} x{self._config.instance_count}",
            "log": log,
            **self._cost(described),
        }
        if status == "Completed":
            final = TrialUpdate(job.trial, TrialStatus.COMPLETED, metrics, **common)
        elif status == "Stopped" and secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
            final = TrialUpdate(
                job.trial,
                TrialStatus.FAILED,
                metrics,
                error=f"SageMaker job {job.name} was stopped: {secondary} "
                "(backend.max_runtime / spot.max_wait)",
                error_kind=ErrorKind.TIMEOUT,
                **common,
            )
        elif status == "Stopped":
            final = TrialUpdate(job.trial, TrialStatus.CANCELLED, metrics, **common)
        else:
            user = reason.startswith(("AlgorithmError", "ClientError"))
            final = TrialUpdate(
                job.trial,
                TrialStatus.FAILED,
                metrics,
                error=f"SageMaker job {job.name} failed: {reason or 'no reason given'}",
                traceback=(log or "")[-TRACEBACK_LIMIT:] or None,
                error_kind=ErrorKind.USER if user else ErrorKind.INFRA,
                **common,
            )
        return [*updates, final]

    def _cost(self, described: Mapping[str, Any]) -> dict[str, Any]:
        """The job's cost and what SageMaker says about it, for the trial's record."""
        config = self._config
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
        if self._price is None:
            return {"details": details}
        rate = self._price * config.instance_count / 3600
        if training is not None and described.get("EnableManagedSpotTraining"):
            details["sagemaker.spot_savings_usd"] = max(0.0, float(training) - billable) * rate
        return {"details": details, "cost": float(billable) * rate}

    # --- stopping -------------------------------------------------------------------------

    def _stop(self, name: str) -> None:
        try:
            self._sm.stop_training_job(TrainingJobName=name)
            _log.info("stopping SageMaker job %s", name)
        except Exception as exc:
            # Finished, already stopping, or never listed: there is nothing left to stop.
            if _error_code(exc) not in ("ValidationException", "ResourceNotFound"):
                raise

    def _stop_tagged(self, which: Callable[[str], bool]) -> None:
        """Stops the study's running jobs, found by its tag, that ``which`` picks."""
        filters = [
            {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": "InProgress"},
            {"Name": f"Tags.{TAG_UID}", "Operator": "Equals", "Value": self.uid},
        ]
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"NextToken": token} if token else {}
            page = self._sm.search(
                Resource="TrainingJob", SearchExpression={"Filters": filters}, **kwargs
            )
            for result in page.get("Results", []):
                name = result["TrainingJob"]["TrainingJobName"]
                known = self._jobs.get(name)
                if which(name) and not (known and known.cancelled):
                    if known is None:
                        _log.warning("stopping SageMaker job %s: no trial follows it", name)
                    self._stop(name)
            token = page.get("NextToken")
            if not token:
                return


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
