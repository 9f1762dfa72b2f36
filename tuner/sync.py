"""``tuner sync``: write what MLflow is missing, then make it equal the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner.errors import InputError
from tuner.mirror import Repair
from tuner.records import Attr, TrialRecord, is_own

if TYPE_CHECKING:
    from tuner.spec import StudySpec


@dataclass(frozen=True)
class SyncReport:
    """What ``tuner sync`` did."""

    replayed: int
    """Writes saved while MLflow was unreachable, written now."""
    repairs: tuple[Repair, ...]
    """Differences between the store and MLflow that it repaired."""
    unwritten: int
    """Writes that still could not be made (MLflow is still unreachable)."""


def sync_study(spec: StudySpec) -> SyncReport:
    """Writes to MLflow what a study's runs are missing, and repairs what differs.

    Replays the writes saved when MLflow was unreachable, then makes the runs equal the store
    (:func:`converge`, checking every run's intermediate values).

    Raises:
        InputError: if the spec has MLflow tracking turned off.
        StudyBusyError: if an orchestrator is running the study (it keeps MLflow in step).
    """
    from tuner.events import StudyStart
    from tuner.store import load_study, location, records, summarise
    from tuner.study_lock import study_lock
    from tuner.tracking import PENDING_FILE, MlflowTracker

    config = spec.tracking.mlflow
    if config is None:
        raise InputError(
            f"study `{spec.name}` has MLflow tracking turned off (`tracking.mlflow: null`); "
            "there is nothing to sync"
        )
    with study_lock(spec):
        study = load_study(spec)
        folder = location(spec).root
        saved = folder / PENDING_FILE
        replayed = len(saved.read_text().splitlines()) if saved.exists() else 0

        def keep(number: int | None, run_id: str) -> None:
            key = Attr.MLFLOW_PARENT_RUN_ID if number is None else f"{Attr.MLFLOW_RUN_ID}.{number}"
            study.set_user_attr(key, run_id)

        attrs = study.user_attrs
        if config.tracking_uri is None and attrs.get(Attr.TRACKING_URI):
            config = config.model_copy(update={"tracking_uri": attrs[Attr.TRACKING_URI]})
        tracker = MlflowTracker(
            config, keep, study_dir=folder, runs_ahead=False, load_study=lambda: study
        )
        tracker.attach(
            StudyStart(
                spec=spec,
                engine=str(attrs.get(Attr.ENGINE, "")),
                seed=int(attrs.get(Attr.SEED, 0)),
                resumed=True,
                trials=tuple(
                    TrialRecord.from_optuna(t, attrs) for t in study.get_trials() if is_own(t)
                ),
                mlflow_parent_run_id=attrs.get(Attr.MLFLOW_PARENT_RUN_ID),
                backend=spec.backend.type,
            )
        )
        tracker.study_progress(summarise(spec, records(study)))
        repairs = tracker.shutdown(converge=True, deep=True)
        return SyncReport(replayed, tuple(repairs), tracker.unwritten)
