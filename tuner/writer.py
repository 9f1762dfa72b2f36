"""Writes in order, off the caller's thread, losing none while their destination is away.

:class:`OrderedWriter` applies :class:`Op` s one at a time on a background thread. A write that
fails goes to a backlog, and every later one queues behind it, so writes keep their order; the
backlog is retried every ``retry_interval`` seconds. What is still unwritten when the writer
stops is handed back, and can be saved as JSON lines and replayed later. The MLflow mirror
(:mod:`tuner.tracking`) is its user: the study loop never waits on a tracking server.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

_IDLE = "idle"
_RETRY = "retry"


@dataclass
class Op:
    """One write, as data: it can wait in the backlog and be saved to a file."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def _nothing(op: Op) -> None:
    return None


class OrderedWriter:
    """Applies ops in order on a thread of its own; see the module docstring.

    Args:
        apply: does one op; raises if it could not (the op then waits in the backlog).
        take: called on the writer's thread just before an op is first tried (a coalescing
            op takes its buffered data here, so a retry re-sends exactly the same).
        after: called after each op and on every idle tick while nothing is backlogged.
        failed: called when an op fails (for waiters that must not wait for a dead server).
        retry_interval: seconds between tries of the backlog.
        name: the thread's name.
    """

    def __init__(
        self,
        apply: Callable[[Op], None],
        *,
        take: Callable[[Op], None] = _nothing,
        after: Callable[[Op], None] = _nothing,
        failed: Callable[[], None] = lambda: None,
        retry_interval: float = 5.0,
        name: str = "tuner-writer",
    ):
        self._apply, self._take, self._after, self._failed = apply, take, after, failed
        self._retry_interval = retry_interval
        self._queue: queue.Queue[Op | None] = queue.Queue()
        self._backlog: list[Op] = []
        self._idle = threading.Condition()
        self._busy = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def backlogged(self) -> bool:
        """Whether writes are waiting for their destination to come back."""
        return bool(self._backlog)

    def submit(self, op: Op) -> None:
        """Queues ``op`` behind every write submitted before it."""
        with self._idle:
            self._busy += 1
        self._queue.put(op)

    def retry(self) -> None:
        """Tries the backlog now (in order, behind what is queued)."""
        self.submit(Op(_RETRY))

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every write so far is done or backlogged; says whether all are done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._busy or not self._queue.empty():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining if remaining is not None else 0.5)
        return not self._backlog

    def stop(self) -> list[Op]:
        """Stops the thread after what is queued; returns the writes that never went through."""
        self._queue.put(None)
        self._thread.join()
        left, self._backlog = self._backlog, []
        return left

    def _work(self) -> None:
        last_try = 0.0
        while True:
            try:
                op = self._queue.get(timeout=self._retry_interval if self._backlog else 0.2)
            except queue.Empty:
                op = Op(_IDLE)
            if op is None:
                return
            try:
                due = time.monotonic() - last_try > self._retry_interval
                if op.kind == _RETRY or (op.kind == _IDLE and self._backlog and due):
                    last_try = time.monotonic()
                    self._write_backlog()
                elif op.kind != _IDLE:
                    self._take(op)
                    if self._backlog:  # behind the backlog, to keep the order
                        op.data["retried"] = True
                        self._backlog.append(op)
                    else:
                        self._try(op)
                if not self._backlog:
                    self._after(op)
            finally:
                if op.kind != _IDLE:
                    with self._idle:
                        self._busy -= 1
                        self._idle.notify_all()

    def _try(self, op: Op) -> None:
        try:
            self._apply(op)
        except Exception as exc:  # the destination is a mirror: never stop the caller
            _log.warning("write failed (%s); kept to retry: %s", op.kind, short(exc))
            op.data["retried"] = True
            self._backlog.append(op)
            self._failed()

    def _write_backlog(self) -> None:
        while self._backlog:
            op = self._backlog[0]
            try:
                self._apply(op)
            except Exception as exc:
                _log.info("still unreachable (%s): %s", op.kind, short(exc))
                return
            self._backlog.pop(0)
        _log.warning("the destination is reachable again; the backlog is written")


def save_ops(ops: list[Op], path: Path) -> None:
    """Appends ``ops`` to ``path``, one JSON object a line."""
    with path.open("a", encoding="utf-8") as out:
        for op in ops:
            out.write(json.dumps({"kind": op.kind, "data": op.data}, default=str) + "\n")


def load_ops(path: Path) -> list[Op]:
    """The ops saved in ``path`` (which is then removed); none if there is no such file."""
    if not path.exists():
        return []
    saved = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.unlink()
    return [Op(item["kind"], item["data"]) for item in saved]


def short(exc: BaseException) -> str:
    """The first line of an error, with its type, for a log line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
