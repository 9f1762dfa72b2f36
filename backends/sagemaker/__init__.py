"""The SageMaker backend: one training job per trial, through plain boto3.

Each trial is a training job named ``<study>-<trial>-<attempt>``, tagged with the study and
the trial; hyperparameters are SageMaker strings and metrics are read with the spec's
``metric_definitions``. The package keeps one job per module:

- :mod:`.config`: the ``backend:`` section (channels, spot, VPC) and its checks, prices;
- :mod:`.jobs`: job names, the study's code tarball, the CreateTrainingJob request and its
  limits, and what a finished job's description says;
- :mod:`.logs`: the CloudWatch log reader (streams per host, forward tokens);
- :mod:`.backend`: :class:`SageMakerBackend`, the lifecycle of the jobs;
- :mod:`.prices`: the bundled on-demand prices.

The entry point is ``tuner.backends.sagemaker:SageMakerBackend``.
"""

from __future__ import annotations

from tuner.backends.sagemaker.backend import VISIBILITY_GRACE, SageMakerBackend
from tuner.backends.sagemaker.backend import _Job as _Job
from tuner.backends.sagemaker.config import (
    MAX_ENVIRONMENT,
    MAX_TAGS,
    Channel,
    S3Uri,
    SageMakerConfig,
    Spot,
    VpcConfig,
)
from tuner.backends.sagemaker.jobs import (
    MAX_HYPERPARAMETERS,
    MAX_JOB_NAME,
    MAX_METRIC_DEFINITIONS,
    TAG_ATTEMPT,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_UID,
    JobTemplate,
    job_name,
    job_prefix,
    pack_source,
    sagemaker_hyperparameters,
)
from tuner.backends.sagemaker.logs import LOG_GROUP, LOG_PAGES, LOG_PAGES_FINAL
from tuner.backends.sagemaker.prices import PRICES

__all__ = [
    "LOG_GROUP",
    "LOG_PAGES",
    "LOG_PAGES_FINAL",
    "MAX_ENVIRONMENT",
    "MAX_HYPERPARAMETERS",
    "MAX_JOB_NAME",
    "MAX_METRIC_DEFINITIONS",
    "MAX_TAGS",
    "PRICES",
    "TAG_ATTEMPT",
    "TAG_STUDY",
    "TAG_TRIAL",
    "TAG_UID",
    "VISIBILITY_GRACE",
    "Channel",
    "JobTemplate",
    "S3Uri",
    "SageMakerBackend",
    "SageMakerConfig",
    "Spot",
    "VpcConfig",
    "job_name",
    "job_prefix",
    "pack_source",
    "sagemaker_hyperparameters",
]
