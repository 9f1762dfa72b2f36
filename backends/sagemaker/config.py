"""The ``backend: {type: sagemaker}`` section: where and how the training jobs run.

Everything the spec can check before any job is checked here, with what to change; the limits
that only a job's request shows (metric definitions, hyperparameters) are checked in
:mod:`tuner.backends.sagemaker.jobs`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
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

from tuner.backend import BackendConfig
from tuner.backends.sagemaker.prices import PRICES
from tuner.units import Duration

MAX_TAGS = 50
MAX_ENVIRONMENT = 100
_OWN_ENVIRONMENT = 8
"""Variables tuner adds to a job's environment (TUNER_*, MLFLOW_*), with room to spare."""
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")


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
