"""Study state in an optuna storage: a journal file in the study's folder unless a URL is given.

The storage holds the truth for every trial (parameters, state, intermediate values, result,
backend handle and MLflow run id as user attributes), so ``optuna-dashboard`` and
``optuna.visualization`` work on every tuner study as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import InputError, TunerError
from tuner.paths import SPEC_FILE, StudyLocation, location
from tuner.records import Attr, StudySummary, TrialRecord, TrialState, is_own
from tuner.spec import SpecError, StudySpec, load_spec
from tuner.strategies.pruners import make_pruner
from tuner.tally import Tally

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage


class StudyNotFoundError(InputError, LookupError):
    """No study matches what was asked for."""


class StudyExistsError(InputError):
    """``tuner run`` on a study that already has trials."""


class StorageError(TunerError):
    """The study's storage cannot be opened; the message says what to check."""


def open_storage(spec: StudySpec) -> BaseStorage:
    """The optuna storage of ``spec``'s study (created if need be).

    Raises:
        StorageError: if ``storage.url``'s database cannot be reached or used.
    """
    from optuna.storages.journal import JournalStorage

    from tuner.journal import DurableJournalFile

    if spec.storage.url:
        return open_url(spec.storage.url)
    from tuner.locks import OwnedFileLock

    where = location(spec)
    where.root.mkdir(parents=True, exist_ok=True)
    journal = str(where.journal)
    # optuna's default lock outlives a killed orchestrator for 30 s; this one knows its owner.
    lock = OwnedFileLock(f"{journal}.lock", journal)
    return JournalStorage(DurableJournalFile(journal, lock_obj=lock))


def open_url(url: str) -> BaseStorage:
    """optuna's storage for ``url``, with what to check when it cannot be opened.

    Raises:
        StorageError: if the database cannot be reached or used.
    """
    import optuna

    from tuner.secrets import redact_url

    shown = redact_url(url)
    try:
        return optuna.storages.get_storage(url)
    except ImportError as exc:  # the spec checks the driver is installed; it can still not load
        raise StorageError(
            f"cannot open the storage {shown}: its database driver does not load ({exc}); "
            "install or repair it, or change `storage.url`"
        ) from None
    except Exception as exc:  # SQLAlchemy's errors: server down, bad credentials, old schema
        reason = redact_url(" ".join(str(exc).split()))[:300]
        raise StorageError(
            f"cannot open the storage {shown} ({type(exc).__name__}: {reason}); check that the "
            "database server runs and the URL's host, user and password"
        ) from None


def open_study(
    spec: StudySpec, sampler: BaseSampler | None = None, storage: BaseStorage | None = None
) -> optuna.Study:
    """The optuna study for ``spec``, created or loaded, with ``sampler`` attached.

    The study carries the objective's metric name, so optuna-dashboard and
    ``optuna.visualization`` label their axes with it rather than "Objective 0".
    """
    import optuna
    from optuna.study import StudyDirection

    from tuner.optuna_adapter import quiet

    directions = [
        StudyDirection.MAXIMIZE if up else StudyDirection.MINIMIZE for up in spec.maximize
    ]
    metrics = [o.metric for o in spec.objectives]
    with quiet():
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage if storage is not None else open_storage(spec),
            sampler=sampler,
            pruner=make_pruner(spec.pruner),
            directions=directions,
            load_if_exists=True,
        )
        if study.metric_names != metrics:  # one write, not one per opening
            study.set_metric_names(metrics)
    return study


def load_study(spec: StudySpec) -> optuna.Study:
    """The existing optuna study for ``spec`` (for reading).

    Raises:
        StudyNotFoundError: if the storage has no such study.
    """
    import optuna

    from tuner.optuna_adapter import quiet

    storage = open_storage(spec)
    try:
        with quiet():
            return optuna.load_study(study_name=spec.name, storage=storage, sampler=None)
    except KeyError:
        raise StudyNotFoundError(
            f"study `{spec.name}` has no state in {spec.storage.url or location(spec).journal}"
        ) from None


def delete_study(spec: StudySpec) -> bool:
    """Deletes the study's state (trials, attributes) if there is any; MLflow runs stay.

    Raises:
        StudyBusyError: if a live orchestrator is running the study.
    """
    import optuna

    from tuner.study_lock import study_lock

    with study_lock(spec):
        storage = open_storage(spec)
        try:
            optuna.delete_study(study_name=spec.name, storage=storage)
        except KeyError:
            return False
        return True


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of ``study``, in order, with its MLflow run id (warm-start trials, which
    never ran here, left out)."""
    attrs = study.user_attrs
    return [
        TrialRecord.from_optuna(t, attrs) for t in study.get_trials(deepcopy=False) if is_own(t)
    ]


def summarise(spec: StudySpec, trials: Iterable[TrialRecord]) -> StudySummary:
    """Counts per state, the best completed trial and what the trials cost."""
    tally = Tally(spec.maximize)
    for record in trials:
        tally.add(record)
    running = tally.counts.get(TrialState.RUNNING, 0)
    return tally.summary(
        spec.name, spec.primary.metric, spec.primary.direction.value, running=running
    )


def find_spec(ref: str, studies_dir: str = "tuner-studies") -> StudySpec:
    """The spec of a study named by its spec file, its folder or its name.

    Raises:
        StudyNotFoundError: if nothing matches ``ref``.
        SpecError: if the matching spec is invalid.
    """
    path = Path(ref)
    candidates: list[Path] = []
    if _is_file(path):
        candidates.append(path)
    if _is_dir(path):
        candidates.append(path / SPEC_FILE)
    candidates.append(Path(studies_dir) / ref / SPEC_FILE)
    for candidate in candidates:
        if _is_file(candidate):
            # Reading a study never imports its trial code: it may be slow (torch) or gone.
            spec = load_spec(candidate, import_trial=False)
            if candidate.name == SPEC_FILE and candidate.parent.name == spec.name:
                return _kept_in(spec, candidate.parent.parent)
            if candidate.name == SPEC_FILE or _is_file(location(spec).spec):
                return spec
            raise StudyNotFoundError(
                f"study `{spec.name}` has not been run yet (no {location(spec).spec}); "
                f"start it with `tuner run {ref}`"
            )
    raise StudyNotFoundError(
        f"no study {ref!r}: not a spec file, a study folder, or a study in {studies_dir}/"
    )


def _kept_in(spec: StudySpec, studies: Path) -> StudySpec:
    """A study's saved spec, its studies folder being where it was found (a relative
    ``storage.dir`` means the folder of whoever ran it, not of whoever reads it)."""
    if spec.storage.url is not None or Path(spec.storage.dir).resolve() == studies.resolve():
        return spec
    storage = spec.storage.model_copy(update={"dir": str(studies)})
    return spec.model_copy(update={"storage": storage})


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: no such study
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def save_spec(spec: StudySpec) -> None:
    """Keeps the spec a study runs with in its folder, for ``resume``, ``status`` and ``best``."""
    where = location(spec)
    where.root.mkdir(parents=True, exist_ok=True)
    where.spec.write_text(spec.to_yaml(), encoding="utf-8")


def dumps(value: Any) -> str:
    """JSON for a user attribute."""
    return json.dumps(value, sort_keys=True, default=str)


__all__ = [
    "Attr",
    "SpecError",
    "StorageError",
    "StudyExistsError",
    "StudyLocation",
    "StudyNotFoundError",
    "delete_study",
    "find_spec",
    "load_study",
    "location",
    "open_storage",
    "open_study",
    "records",
    "save_spec",
    "summarise",
]
