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
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuner.backends.sagemaker_prices import PRICES
from tuner.backend import (
    BackendConfig,
    BackendContext,
    BackendError,
    CommandEntry,
    ErrorKind,
    MetricDefinition,
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
MAX_TAGS = 50
MAX_ENVIRONMENT = 100
MAX_METRIC_DEFINITIONS = 40
MAX_HYPERPARAMETERS = 95
"""SageMaker's 100, less the five ``sagemaker_*`` entries for shipped code."""
_OWN_ENVIRONMENT = 8
"""Variables tuner adds to a job's environment (TUNER_*, MLFLOW_*), with room to spare."""
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
_PREFIX_LENGTH = 48
"""Longest study part of a job name: leaves room for ``-<trial up to 7 digits>-<attempt>``."""
VISIBILITY_GRACE = timedelta(minutes=2)
"""How long a created job may be missing from listings (they lag) before it is described."""
LOG_PAGES = 20
"""Most pages of one log stream read per poll (a page is up to 1 MB)..."""
LOG_PAGES_FINAL = 500
"""... and when a job has finished (its log's last lines hold the error)."""
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


def _s3_uri(value: str) -> str:
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
        raise ValueError(f"{value!r} is not an S3 URI; write it as s3://bucket/prefix")
    return value.rstrip("/")


S3Uri: TypeAlias = Annotated[str, AfterValidator(_s3_uri)]
"""``s3://bucket/prefix``, checked when the spec is loaded."""


class Channel(BaseModel):
    """An input channel: an S3 prefix the job gets in ``/opt/ml/input/data/<channel>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: S3Uri = Field(description="s3://bucket/prefix")
    content_type: str | None = None
    input_mode: Literal["File", "FastFile", "Pipe"] = "File"
    distribution: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"


class Spot(BaseModel):
    """Managed spot training: cheaper, may wait for capacity and be interrupted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    max_wait: Duration | None = Field(
        None, description="Longest a job waits for spot capacity plus runs; >= max_runtime."
    )
    checkpoint_path: S3Uri | None = Field(
        None,
        description="S3 prefix for /opt/ml/checkpoints, one folder per trial, so an "
        "interrupted trial resumes from its last checkpoint.",
    )


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
    output_path: S3Uri = Field(description="Where models go: <output_path>/<job>/output/.")
    source_dir: str | None = Field(
        None, description="Folder packed and shipped to the job (default: the spec's folder)."
    )
    entry_point: str | None = Field(
        None,
        description="The script a framework image runs, relative to source_dir; unset, the "
        "image's own entry point runs.",
    )
    code_path: S3Uri | None = Field(
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
        if len(value) > MAX_ENVIRONMENT - _OWN_ENVIRONMENT:
            raise ValueError(
                f"SageMaker takes {MAX_ENVIRONMENT} environment variables per job and tuner "
                f"adds up to {_OWN_ENVIRONMENT}; give at most {MAX_ENVIRONMENT - _OWN_ENVIRONMENT}"
            )
        for name, text in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,511}", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if len(text) > 512:
                raise ValueError(f"the value of {name} is longer than SageMaker's 512 characters")
        return value

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_TAGS - 4:
            raise ValueError(f"SageMaker takes {MAX_TAGS} tags and tuner adds 4; give at most 46")
        for key, text in value.items():
            if key.startswith(("aws:", "tuner:")):
                raise ValueError(f"tag {key!r}: keys starting with aws: or tuner: are reserved")
            if not (0 < len(key) <= 128 and len(text) <= 256) or not _TAG_TEXT.fullmatch(
                key + text
            ):
                raise ValueError(
                    f"tag {key!r}: keys are 1-128 and values up to 256 letters, digits, spaces "
                    "and _ . : / = + - @"
                )
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
        if self.spot.enabled and self.keep_alive:
            raise ValueError(
                "SageMaker keeps no warm pool for spot jobs; drop `keep_alive` or `spot`"
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
class _Stream:
    """A CloudWatch log stream of a job, read on from ``token``."""

    name: str
    token: str | None = None
    last_time: int = 0
    """Timestamp (ms) of the last event read: where to read on if the token expires."""


@dataclass
class _Job:
    """A training job this backend follows."""

    name: str
    trial: int
    attempt: int
    parser: MetricParser
    request: dict[str, Any] | None = None
    """The CreateTrainingJob request while the job waits to be created."""
    attempted: bool = False
    """A create was sent; it may have got through even if no answer came back."""
    created: datetime | None = None
    log: OutputLog = field(default_factory=OutputLog)
    streams: dict[str, _Stream] = field(default_factory=dict)
    polls: int = 0
    cancelled: bool = False
    stop_sent: bool = False
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


def _unanswered(exc: Exception) -> bool:
    """Whether a call failed without an answer (the request may have got through)."""
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, BotoCoreError)


def _check_limits(entry: CommandEntry, params: Mapping[str, Any]) -> None:
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


def _host_order(stream: str) -> tuple[int, int]:
    """``<job>/algo-<host>-<epoch>`` sorts by host, then oldest first (a spot restart of a
    job writes a new stream for the same host)."""
    match = re.search(r"/algo-(\d+)-(\d+)$", stream)
    return (int(match.group(1)), int(match.group(2))) if match else (1_000_000, 0)


class SageMakerBackend:
    """Runs each trial as a SageMaker training job.

    Args:
        config: the ``backend`` section of the spec.
        context: the study's name, unique id and concurrency.
        session: a ``boto3.Session`` (default: one for ``config.region``).
        clock: monotonic seconds, for polling and backoff.
        sleep: waits between polls.

    Raises:
        BackendError: without a region or credentials, or when the study's job names are
            taken by another study; before any job is created.
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
        bundled = self._price is not None and config.instance_type not in config.prices
        if bundled and self.region != "us-east-1":
            _log.warning(
                "trial costs use the us-east-1 price of %s; give %s's in `prices:`",
                config.instance_type,
                self.region,
            )
        self._jobs: dict[str, _Job] = {}
        """Jobs not done yet: running, waiting to be created, or stopping."""
        self._ready: list[TrialUpdate] = []
        """Updates known before the next poll (jobs that finished while no one watched)."""
        self._next_poll = 0.0
        self._swept = False
        self._code_uri: str | None = None
        self._rng = random.Random()
        self._check_names()

    def _check_names(self) -> None:
        """Refuses, before any job, a study whose job names an earlier study took."""
        first = job_name(self.prefix, 0, 0)
        try:
            described = self._sm.describe_training_job(TrainingJobName=first)
        except Exception as exc:
            if _error_code(exc) in ("ValidationException", "ResourceNotFound"):
                return
            raise
        if not self._is_ours(described["TrainingJobArn"]):
            raise BackendError(
                f"SageMaker already has a training job named {first}, from an earlier study "
                f"called {self.study!r}; job names are unique for ever in an account and "
                "region, so give this study a new `name`"
            )

    # --- the protocol ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, trial: TrialSpec) -> TrialHandle:
        if not isinstance(trial.entry, CommandEntry):
            raise BackendError("the SageMaker backend runs command trials only")
        _check_limits(trial.entry, trial.params)
        name = job_name(self.prefix, trial.number, trial.attempt)
        job = _Job(name, trial.number, trial.attempt, MetricParser(trial.entry.metric_definitions))
        job.request = self._request(trial, name)
        handle = TrialHandle(self.name, trial.number, {"job": name, "attempt": trial.attempt})
        waiting = any(j.request is not None for j in self._jobs.values())
        self._jobs[name] = job  # before the call: a create that gets through is never lost
        if waiting:
            self._hold(job, None)  # others wait for quota: queue behind them
            return handle
        try:
            self._create(job)
        except Exception:
            del self._jobs[name]
            raise
        return handle

    def poll(self, timeout: float) -> list[TrialUpdate]:
        if not self._ready:
            now = self._clock()
            if now < self._next_poll:
                self._sleep(max(0.0, min(timeout, self._next_poll - now)))
            if self._clock() >= self._next_poll:
                self._next_poll = self._clock() + self._config.poll_interval
                self._refresh()
        ready, self._ready = self._ready, []
        return ready

    def cancel(self, handle: TrialHandle) -> None:
        job = self._jobs.get(str(handle.data.get("job", "")))
        if job is None or job.cancelled or job.done:
            return
        job.cancelled = True
        job.request = None  # no one waits behind it
        if job.created is None and not job.attempted:
            job.done = True  # never created: nothing to stop
            return
        self._stop(job)

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
        """Stops every job of the study that still runs: those it follows, those whose
        creation it never heard back about, and any other found by the study's tag."""
        for job in self._jobs.values():
            job.request = None
            if (job.created is not None or job.attempted) and not job.done and not job.stop_sent:
                job.cancelled = True
                self._stop(job)
        try:
            self._stop_tagged(lambda name: True)
        except Exception as exc:
            _log.warning("could not search the study's jobs to stop them: %s", exc)

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
        """Creates ``job``; False if it has to wait (a quota, or no answer came back).

        Raises:
            BackendError: for a quota of zero, or a name another study took.
            botocore.exceptions.ClientError: for a request SageMaker refuses.
        """
        assert job.request is not None
        try:
            job.attempted = True
            self._sm.create_training_job(**job.request)
        except Exception as exc:
            code = _error_code(exc)
            job.attempted = _unanswered(exc)  # refused outright: it does not exist
            if code == "ResourceLimitExceeded":
                if re.search(r"\bis 0 Instances?\b", str(exc)):
                    raise BackendError(
                        f"the account's quota for this job is 0 ({str(exc).split(': ', 1)[-1]}); "
                        "request an increase in the Service Quotas console, or pick another "
                        "instance_type"
                    ) from None
                self._hold(job, exc)
                return False
            if _unanswered(exc):
                # It may exist: the next try finds it (ResourceInUse, ours) or creates it.
                _log.warning("no answer creating job %s (%s); trying again", job.name, exc)
                self._hold(job, None)
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
        """Keeps a trial to create later; a quota refusal (``exc``) runs fewer at once."""
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
            if now < job.next_try:
                return  # keep their order: later ones wait behind this one
            try:
                if not self._create(job):
                    return
            except Exception as exc:  # refused for good: the trial fails, the study goes on
                job.request, job.done = None, True
                self._ready.append(
                    TrialUpdate(
                        job.trial,
                        TrialStatus.FAILED,
                        error=f"SageMaker refused job {job.name}: {exc}",
                        error_kind=ErrorKind.USER,
                    )
                )
                continue
            _log.info("trial %d: job %s created after waiting", job.trial, job.name)
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

    def _metric_definitions(self, described: Mapping[str, Any]) -> tuple[MetricDefinition, ...]:
        spec = described.get("AlgorithmSpecification", {})
        return tuple(
            MetricDefinition(d["Name"], d["Regex"]) for d in spec.get("MetricDefinitions", [])
        )

    # --- watching jobs --------------------------------------------------------------------

    def _refresh(self) -> None:
        """One poll: what every job did since the last one, into ``self._ready``.

        Any AWS error here is a warning, and what it stopped is tried again at the next poll:
        a throttled log read or a lost connection must not end a study of running jobs.
        """
        # A finished job's update is out: forget it (its log and parser with it), so a long
        # study's polls cost what its running jobs do.
        self._jobs = {name: job for name, job in self._jobs.items() if not job.done}
        if not self._swept:
            self._swept = self._guarded("search the study's jobs", self._sweep_orphans)
        self._guarded("create waiting jobs", self._create_held)
        live = [j for j in self._jobs.values() if j.created is not None and not j.done]
        if not live:
            return
        statuses: dict[str, str] = {}
        if not self._guarded(
            "list the study's jobs", lambda: statuses.update(self._statuses(live))
        ):
            return
        for job in live:
            self._guarded(f"follow job {job.name}", self._follow, job, statuses.get(job.name))

    def _guarded(self, what: str, action: Callable[..., Any], *args: Any) -> bool:
        try:
            action(*args)
        except Exception as exc:
            _log.warning(
                "could not %s (%s: %s); trying again at the next poll",
                what,
                type(exc).__name__,
                exc,
            )
            return False
        return True

    def _sweep_orphans(self) -> None:
        self._stop_tagged(lambda name: name not in self._jobs)

    def _follow(self, job: _Job, status: str | None) -> None:
        assert job.created is not None
        now = datetime.now(UTC)
        if status is None:
            if now - job.created < VISIBILITY_GRACE:
                return  # created, not listed yet: running
            status = self._describe_status(job)
        if job.cancelled:
            if status == "InProgress" and not job.stop_sent:
                self._stop(job)  # the first stop failed: send it again
            job.done = status in _FINISHED or status == "Missing"
            return
        if status == "Missing":
            job.done = True
            self._ready.append(
                TrialUpdate(
                    job.trial,
                    TrialStatus.FAILED,
                    error=f"SageMaker job {job.name} disappeared",
                    error_kind=ErrorKind.INFRA,
                )
            )
        elif status in _FINISHED:
            described = self._sm.describe_training_job(TrainingJobName=job.name)
            self._ready.extend(self._final(job, described))
        else:
            self._ready.extend(self._tail(job))
            if self._price is not None:
                # An upper bound: from creation (provisioning included), at on-demand rates.
                hours = (now - job.created).total_seconds() / 3600
                cost = hours * self._price * self._config.instance_count
                self._ready.append(TrialUpdate(job.trial, TrialStatus.RUNNING, cost=cost))

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

    def _tail(self, job: _Job, *, final: bool = False) -> list[TrialUpdate]:
        """Reads what is new in the job's log streams; metric lines of its first host become
        updates. Best effort: a failed read is tried again from where it stopped."""
        job.polls += 1
        hosts = {_host_order(s)[0] for s in job.streams}
        if final or 1 not in hosts or job.polls % 10 == 0:  # new streams: a host, a restart
            try:
                found = self._logs.describe_log_streams(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job.name}/"
                )["logStreams"]
            except Exception as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
                found = []  # no log yet
            for stream in found:
                name = stream["logStreamName"]
                job.streams.setdefault(name, _Stream(name))
        updates: list[TrialUpdate] = []
        for stream in sorted(job.streams.values(), key=lambda s: _host_order(s.name)):
            for line in self._read(stream, LOG_PAGES_FINAL if final else LOG_PAGES):
                job.log.write(line + "\n")
                if _host_order(stream.name)[0] == 1:
                    updates.extend(
                        TrialUpdate(job.trial, TrialStatus.RUNNING, {name: value}, step)
                        for name, step, value in job.parser.feed(line)
                    )
        return updates

    def _read(self, stream: _Stream, pages: int) -> list[str]:
        """Lines of ``stream`` after its token, up to ``pages`` pages; the end is where the
        token comes back unchanged (an empty page is not the end)."""
        lines: list[str] = []
        for _ in range(pages):
            kwargs: dict[str, Any] = {"nextToken": stream.token} if stream.token else {}
            if stream.token is None and stream.last_time:
                kwargs = {"startTime": stream.last_time + 1}
            try:
                page = self._logs.get_log_events(
                    logGroupName=LOG_GROUP,
                    logStreamName=stream.name,
                    startFromHead=True,
                    **kwargs,
                )
            except Exception as exc:
                if _error_code(exc) == "InvalidParameterException" and stream.token:
                    stream.token = None  # an expired token: read on by time
                    continue
                raise
            for event in page["events"]:
                lines.append(event["message"].rstrip("\n"))
                stream.last_time = max(stream.last_time, int(event.get("timestamp", 0)))
            unchanged = page["nextForwardToken"] == stream.token
            stream.token = page["nextForwardToken"]
            if unchanged:
                break
        return lines

    def _final(self, job: _Job, described: Mapping[str, Any]) -> list[TrialUpdate]:
        """The updates for a finished job: its last metric lines, then its outcome."""
        try:
            updates = [u for u in self._tail(job, final=True) if u.metrics]
        except Exception as exc:  # the outcome matters more than the log's last lines
            _log.warning("could not read the end of job %s's log: %s", job.name, exc)
            updates = []
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
        job.done = True
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

    def _stop(self, job: _Job) -> None:
        """Asks SageMaker to stop ``job``; a failed request is sent again at the next poll."""
        try:
            self._sm.stop_training_job(TrainingJobName=job.name)
            _log.info("stopping SageMaker job %s", job.name)
        except Exception as exc:
            # Finished, already stopping, or never created: there is nothing left to stop.
            if _error_code(exc) not in ("ValidationException", "ResourceNotFound"):
                _log.warning("could not stop job %s (%s); trying again", job.name, exc)
                return
        job.stop_sent = True

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
                job = self._jobs.get(name)
                if not which(name) or (job is not None and job.stop_sent):
                    continue
                if job is None:
                    _log.warning("stopping SageMaker job %s: no trial follows it", name)
                    job = _Job(name, -1, 0, MetricParser(()), cancelled=True)
                    job.created = datetime.now(UTC)
                    self._jobs[name] = job
                self._stop(job)
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
