"""Reading training jobs' CloudWatch logs on from where the last read stopped.

SageMaker writes one stream per host and start (``<job>/algo-<host>-<epoch>``; a spot restart
opens a new stream for the same host). Each stream is read with forward tokens, page by page,
so a poll costs what is new, never the whole log again; an expired token is replaced by
reading on from the last event's time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tuner.backends.sagemaker._aws import error_code

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_PAGES = 20
"""Most pages of one log stream read per poll (a page is up to 1 MB)..."""
LOG_PAGES_FINAL = 500
"""... and when a job has finished (its log's last lines hold the error)."""
_REDISCOVER = 10
"""Every how many reads of a job its streams are listed again (a new host, a restart)."""


@dataclass
class LogStream:
    """A CloudWatch log stream of a job, read on from ``token``."""

    name: str
    token: str | None = None
    last_time: int = 0
    """Timestamp (ms) of the last event read: where to read on if the token expires."""


@dataclass
class JobLog:
    """Where the reading of one job's log streams stands."""

    job: str
    streams: dict[str, LogStream] = field(default_factory=dict)
    reads: int = 0


def host_order(stream: str) -> tuple[int, int]:
    """``<job>/algo-<host>-<epoch>`` sorts by host, then oldest first (a spot restart of a
    job writes a new stream for the same host)."""
    match = re.search(r"/algo-(\d+)-(\d+)$", stream)
    return (int(match.group(1)), int(match.group(2))) if match else (1_000_000, 0)


class LogReader:
    """Reads what is new in jobs' log streams through a CloudWatch Logs client.

    Args:
        client: a boto3 ``logs`` client.
    """

    def __init__(self, client: Any):
        self._logs = client

    def new_lines(self, log: JobLog, *, final: bool = False) -> Iterator[tuple[int, str]]:
        """The ``(host, line)`` of every line written since the last read, host by host.

        A stream's lines come once its pages are read, so an error (raised to the caller)
        leaves the streams already read where they were read to; the next read goes on from
        there. ``final`` reads more pages, for a job that has finished.
        """
        log.reads += 1
        hosts = {host_order(s)[0] for s in log.streams}
        if final or 1 not in hosts or log.reads % _REDISCOVER == 0:
            try:
                found = self._logs.describe_log_streams(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{log.job}/"
                )["logStreams"]
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                found = []  # no log yet
            for stream in found:
                name = stream["logStreamName"]
                log.streams.setdefault(name, LogStream(name))
        for stream in sorted(log.streams.values(), key=lambda s: host_order(s.name)):
            host = host_order(stream.name)[0]
            for line in self._read(stream, LOG_PAGES_FINAL if final else LOG_PAGES):
                yield host, line

    def _read(self, stream: LogStream, pages: int) -> list[str]:
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
                if error_code(exc) == "InvalidParameterException" and stream.token:
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
