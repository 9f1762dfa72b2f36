"""The study journal file: optuna's, made safe against a write torn by a crash.

optuna's journal is one JSON line per change, appended under a lock and fsync'd. A process
killed in the middle of an append leaves a last line without its newline. optuna skips such a
line when it reads, but the next append would continue it and turn the journal into one that
no longer loads. Before each append this backend cuts a torn tail off (under the lock, so no
live writer is mid-line): the change it held was never acknowledged to anyone.
"""

from __future__ import annotations

import os
from typing import Any

from optuna.storages.journal import JournalFileBackend

from tuner import failpoints
from tuner.optuna_adapter import journal_file_lock, journal_path


class DurableJournalFile(JournalFileBackend):
    """A :class:`~optuna.storages.journal.JournalFileBackend` that heals a torn last line."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        import json

        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        data = text.encode("utf-8")
        with journal_file_lock(self), open(journal_path(self), "r+b") as journal:
            _cut_torn_tail(journal)
            journal.seek(0, os.SEEK_END)

            def half_written() -> None:
                journal.write(data[: max(1, len(data) // 2)])
                journal.flush()
                os.fsync(journal.fileno())

            failpoints.hit("journal.append", half_written)
            journal.write(data)
            journal.flush()
            os.fsync(journal.fileno())


def _cut_torn_tail(journal: Any) -> None:
    """Truncates ``journal`` after its last newline if it does not end with one."""
    size = journal.seek(0, os.SEEK_END)
    if size == 0:
        return
    journal.seek(size - 1)
    if journal.read(1) == b"\n":
        return
    # Walk back to the last complete line (a torn line is at most one append long).
    block = 64 * 1024
    end = size
    while end > 0:
        start = max(0, end - block)
        journal.seek(start)
        chunk = journal.read(end - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            journal.truncate(start + cut + 1)
            return
        end = start
    journal.truncate(0)
