"""The SageMaker backend proper: the lifecycle of one training job per trial.

Each trial is a training job (named, built and read back by
:class:`~tuner.backends.sagemaker.jobs.JobTemplate`), running the spec's image: either the
researcher's own image (its entry point runs) or a framework image that runs ``entry_point``
from ``source_dir`` (packed once per study and uploaded to S3).

Jobs are watched by batched polling: one ``ListTrainingJobs`` call (paged) covers every job of
the study, a job is described only once it has finished, and the CloudWatch log stream of a
running job is tailed (:mod:`~tuner.backends.sagemaker.logs`), so intermediate metrics (and
early stopping) work as on Ray. Faults are normal: throttling is retried by botocore's standard
retry mode, ``ResourceLimitExceeded`` holds the trial and lowers the concurrency, a job not yet
listed counts as running, and stopping a finished job is a success.

This module is longer than the others because its one job is one state machine: creating a
job (held while a quota refuses it, found again when an answer was lost), following it, and
stopping it all read and write the same table of jobs and queue of updates.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from tuner.backend import (
    BackendContext,
    BackendError,
    CommandEntry,
    ErrorKind,
    MetricDefinition,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.backends.sagemaker._aws import error_code, import_boto3, unanswered
from tuner.backends.sagemaker.config import SageMakerConfig
from tuner.backends.sagemaker.jobs import (
    TAG_UID,
    JobTemplate,
    check_limits,
    job_name,
    pack_source,
)
from tuner.backends.sagemaker.logs import JobLog, LogReader
from tuner.trial_runner import MetricParser, OutputLog

_log = logging.getLogger(__name__)

VISIBILITY_GRACE = timedelta(minutes=2)
"""How long a created job may be missing from listings (they lag) before it is described."""
_FINISHED = ("Completed", "Failed", "Stopped")


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
    log_streams: JobLog = field(init=False)
    """Where the reading of its CloudWatch log streams stands."""
    cancelled: bool = False
    stop_sent: bool = False
    done: bool = False
    tries: int = 0
    next_try: float = 0.0

    def __post_init__(self) -> None:
        self.log_streams = JobLog(self.name)


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
        boto3 = import_boto3()
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
        self._log_reader = LogReader(self._logs)
        self._s3 = session.client("s3", config=boto_config)
        self.study = context.study
        self.uid = context.uid or context.study
        self._template = JobTemplate(config, self.study, self.uid, self.region)
        self.prefix = self._template.prefix
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
            if error_code(exc) in ("ValidationException", "ResourceNotFound"):
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
        check_limits(trial.entry, trial.params)
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
            if error_code(exc) in ("ValidationException", "ResourceNotFound"):
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
        assert isinstance(trial.entry, CommandEntry)
        code = self._code(trial.entry) if self._config.entry_point is not None else None
        return self._template.request(trial, name, code)

    def _code(self, entry: CommandEntry) -> str:
        """The S3 URI of the study's code tarball, uploaded on first use."""
        if self._code_uri is None:
            folder = self._config.source_dir or entry.workdir or os.getcwd()
            data = pack_source(folder)
            bucket, key = self._template.code_location(data)
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
            code = error_code(exc)
            job.attempted = unanswered(exc)  # refused outright: it does not exist
            if code == "ResourceLimitExceeded":
                if re.search(r"\bis 0 Instances?\b", str(exc)):
                    raise BackendError(
                        f"the account's quota for this job is 0 ({str(exc).split(': ', 1)[-1]}); "
                        "request an increase in the Service Quotas console, or pick another "
                        "instance_type"
                    ) from None
                self._hold(job, exc)
                return False
            if unanswered(exc):
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
            if error_code(exc) in ("ValidationException", "ResourceNotFound"):
                return "Missing"
            raise

    def _tail(self, job: _Job, *, final: bool = False) -> list[TrialUpdate]:
        """Reads what is new in the job's log streams; metric lines of its first host become
        updates. Best effort: a failed read is tried again from where it stopped."""
        updates: list[TrialUpdate] = []
        for host, line in self._log_reader.new_lines(job.log_streams, final=final):
            job.log.write(line + "\n")
            if host == 1:
                updates.extend(
                    TrialUpdate(job.trial, TrialStatus.RUNNING, {name: value}, step)
                    for name, step, value in job.parser.feed(line)
                )
        return updates

    def _final(self, job: _Job, described: Mapping[str, Any]) -> list[TrialUpdate]:
        """The updates for a finished job: its last metric lines, then its outcome."""
        try:
            updates = [u for u in self._tail(job, final=True) if u.metrics]
        except Exception as exc:  # the outcome matters more than the log's last lines
            _log.warning("could not read the end of job %s's log: %s", job.name, exc)
            updates = []
        log = job.log.text() or None
        final = self._template.outcome(job.name, job.trial, described, job.parser.last, log)
        job.done = True
        return [*updates, final]

    # --- stopping -------------------------------------------------------------------------

    def _stop(self, job: _Job) -> None:
        """Asks SageMaker to stop ``job``; a failed request is sent again at the next poll."""
        try:
            self._sm.stop_training_job(TrainingJobName=job.name)
            _log.info("stopping SageMaker job %s", job.name)
        except Exception as exc:
            # Finished, already stopping, or never created: there is nothing left to stop.
            if error_code(exc) not in ("ValidationException", "ResourceNotFound"):
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
