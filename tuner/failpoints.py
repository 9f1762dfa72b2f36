"""Named crash points for the crash-test harness (``tests/crash/``, ``benchmarks/crash.py``).

The harness sets ``TUNER_FAILPOINTS`` to ``name`` or ``name@n`` (comma-separated) and this
process SIGKILLs itself the n-th time (default: the first) it passes that point, exactly as a
power cut or the OOM killer would stop it there. Unset, :func:`hit` is one dictionary lookup.

Points (see :data:`POINTS`): each names a moment that a killed orchestrator must survive.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

ENV = "TUNER_FAILPOINTS"

POINTS = {
    "study.started": "the study is open and no trial has been asked for yet",
    "trial.submitted": "a trial was submitted and its handle stored (it is mid-run)",
    "trial.finished": "a trial's final update arrived; nothing is stored about it yet",
    "trial.told": "a finished trial is told to the store; the MLflow mirror has not heard",
    "trial.pruning": "the pruner decided to stop a trial; it is not cancelled or told yet",
    "journal.append": "half of a journal write is on disk (a torn write)",
    "mlflow.batch": "the MLflow writer is between the calls of one write",
    "mlflow.claimed": "a trial took a run made ahead of need; the store has not kept its id",
}
"""Every point the code passes, and what has happened when a process dies there."""


def _parse(text: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("@")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r} in {ENV}; known: {', '.join(POINTS)}")
        points[name] = int(count or 1)
    return points


_ARMED = _parse(os.environ.get(ENV, ""))
_LOCK = threading.Lock()
_PASSED: dict[str, int] = {}


def hit(name: str, last_words: Callable[[], object] | None = None) -> None:
    """Passes the point ``name``: dies here if the harness armed it for this pass.

    Args:
        name: one of :data:`POINTS`.
        last_words: done just before dying (a torn write writes its first half here).
    """
    if not _ARMED or name not in _ARMED:
        return
    with _LOCK:
        _PASSED[name] = _PASSED.get(name, 0) + 1
        if _PASSED[name] >= _ARMED[name]:
            if last_words is not None:
                last_words()
            os.kill(os.getpid(), signal.SIGKILL)
