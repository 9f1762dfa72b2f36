"""Where a study's files live: one folder per study under ``storage.dir``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner.spec import StudySpec

SPEC_FILE = "spec.yaml"
JOURNAL_FILE = "journal.log"


@dataclass(frozen=True)
class StudyLocation:
    """Where a study's files live."""

    root: Path

    @property
    def spec(self) -> Path:
        """The spec the study runs with, as last started."""
        return self.root / SPEC_FILE

    @property
    def journal(self) -> Path:
        """The default optuna journal."""
        return self.root / JOURNAL_FILE

    @property
    def orchestrator(self) -> Path:
        """Held by the process running the study (see :func:`tuner.locks.orchestrator_lock`)."""
        return self.root / "orchestrator.lock"


def location(spec: StudySpec) -> StudyLocation:
    """The folder of ``spec``'s study."""
    return StudyLocation(Path(spec.storage.dir) / spec.name)
