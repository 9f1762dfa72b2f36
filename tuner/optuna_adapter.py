"""The few optuna internals tuner relies on, in one place, for the optuna versions it supports.

optuna is tuner's backbone, through its public API almost everywhere. Where that API stops
short, tuner reaches inside, and only here: a trial's storage id (to tell a trial an earlier
orchestrator left running), the study's storage, the cached read of trials that optuna's own
samplers use, and the journal file's lock interface. ``tests/test_optuna_adapter.py`` checks
each against the installed optuna; :data:`SUPPORTED` is the range the package declares.

It also keeps optuna's own lines out of a script or notebook that calls tuner (:func:`quiet`).
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from optuna import study as optuna_study

# The journal file backend's lock interface and lock context (exported from its module only).
from optuna.storages.journal._file import BaseJournalFileLock, get_lock_file

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import FrozenTrial, TrialState

    from tuner.space import Space

SUPPORTED = ">=4.4,<6"
"""The optuna releases tuner is tested with (``pyproject.toml`` declares the same)."""

__all__ = [
    "CONSTRAINTS_KEY",
    "SUPPORTED",
    "BaseJournalFileLock",
    "EvolvedHistory",
    "PruningView",
    "constraint_args",
    "journal_file_lock",
    "journal_path",
    "live_trial",
    "quiet",
    "reload",
    "report_intermediate",
    "set_constraints",
    "storage_of",
    "trial_id",
    "trials_in",
]


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes."""
    storage: BaseStorage = study._storage  # noqa: SLF001
    return storage


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """A trial's id in its storage (not its number in the study)."""
    found: int = trial._trial_id  # noqa: SLF001
    return found


def live_trial(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A handle to report to and tell a trial that is still RUNNING in the store (one that an
    earlier orchestrator started)."""
    import optuna

    return optuna.Trial(study, trial_id(frozen))


def reload(study: optuna.Study) -> optuna.Study:
    """A fresh handle on ``study`` (another thread's own, sharing the storage)."""
    import optuna

    return optuna.load_study(study_name=study.study_name, storage=storage_of(study))


def trials_in(
    study: optuna.Study, states: Sequence[TrialState] | None = None, *, cached: bool = True
) -> list[FrozenTrial]:
    """The study's trials in ``states`` without copies: the read optuna's own samplers make
    while a study runs (``cached`` lets the storage answer from what it already read)."""
    trials: list[FrozenTrial] = study._get_trials(  # noqa: SLF001
        deepcopy=False, states=tuple(states) if states else None, use_cache=cached
    )
    return trials


def journal_file_lock(backend: JournalFileBackend) -> AbstractContextManager[None]:
    """Holds a journal file's lock (what optuna's own appends hold)."""
    lock: BaseJournalFileLock = backend._lock  # noqa: SLF001
    return get_lock_file(lock)


def journal_path(backend: JournalFileBackend) -> str:
    """The file a journal backend appends to."""
    path: str = backend._file_path  # noqa: SLF001
    return path


_quiet_lock = threading.Lock()
_quiet_depth = 0
"""Blocks inside :func:`quiet` (in any thread): the first raises optuna's level, the last puts
it back, so overlapping blocks never restore a level that another block had raised."""
_quiet_saved = 0


@contextmanager
def quiet() -> Iterator[None]:
    """optuna's INFO lines ("A new study created in Journal ...") and its
    ``ExperimentalWarning`` silenced for the ``with`` block, then put back as they were.

    optuna logs through a handler of its own at INFO, so a notebook or a script that calls
    tuner would show optuna's lines among tuner's. Warnings and errors still show, and a level
    the user set above WARNING is kept. Warning filters are process-wide: use it on the thread
    that runs the study.

    Example:
        >>> import optuna
        >>> with quiet():
        ...     study = optuna.create_study()  # no "A new study created in memory" line
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = optuna.logging.get_verbosity()
            if _quiet_saved < optuna.logging.WARNING:
                optuna.logging.set_verbosity(optuna.logging.WARNING)
        _quiet_depth += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                optuna.logging.set_verbosity(_quiet_saved)


class _OneObjective:
    """A storage as it would be for a study of one objective: every call passes through, but
    the study's directions are the watched objective's alone."""

    def __init__(self, storage: BaseStorage, maximize: bool):
        from optuna.study import StudyDirection

        self._storage = storage
        self._direction = StudyDirection.MAXIMIZE if maximize else StudyDirection.MINIMIZE

    def get_study_directions(self, study_id: int) -> list[optuna.study.StudyDirection]:
        return [self._direction]

    def __getattr__(self, name: str) -> object:
        return getattr(self._storage, name)


def report_intermediate(trial: optuna.Trial, value: float, step: int) -> None:
    """Keeps ``value`` as the trial's intermediate value at ``step``, in a study of one
    objective or several (optuna's ``Trial.report`` refuses several)."""
    storage_of(trial.study).set_trial_intermediate_value(trial_id(trial), step, value)


class PruningView:
    """Early stopping on one objective of a multi-objective study.

    optuna's pruners refuse studies of several objectives (``Trial.report`` and
    ``should_prune`` raise). Here a trial's intermediate values of the watched objective are
    kept in the storage as for any trial (:func:`report_intermediate`), and the study's own
    pruner judges them on a view of the study whose only direction is the watched
    objective's: the pruners read intermediate values and directions, never final values.

    Args:
        study: the study (of several objectives).
        maximize: whether the watched objective is maximised.
    """

    def __init__(self, study: optuna.Study, maximize: bool):
        import optuna

        self._storage = storage_of(study)
        with quiet():
            self._view = optuna.Study(
                study_name=study.study_name,
                storage=_OneObjective(self._storage, maximize),  # type: ignore[arg-type]
                sampler=optuna.samplers.RandomSampler(),
                pruner=study.pruner,
            )

    def should_prune(self, trial: optuna.Trial) -> bool:
        """Whether the study's pruner stops the trial, on its values reported so far."""
        frozen = self._storage.get_trial(trial_id(trial))
        return bool(self._view.pruner.prune(self._view, frozen))


CONSTRAINTS_KEY = "constraints"
"""The trial system attribute optuna's constrained samplers read (both the list form of
optuna 4 and 5's per-key form are read by optuna 5)."""


def set_constraints(trial: optuna.Trial, violations: Sequence[float]) -> None:
    """Gives a trial its constraint values (``<= 0``: kept) before it is told, as optuna's
    ``constraints_func`` would after: samplers that handle constraints then use them."""
    storage_of(trial.study).set_trial_system_attr(
        trial_id(trial), CONSTRAINTS_KEY, [float(v) for v in violations]
    )


def constraint_args(count: int) -> dict[str, Any]:
    """A sampler's keyword arguments for constrained studies on this optuna.

    optuna 5 finds the constraints a trial carries by itself; optuna 4 needs a
    ``constraints_func``, which here reads back what :func:`set_constraints` stored.
    """
    import optuna

    if count == 0 or int(optuna.__version__.split(".")[0]) >= 5:
        return {}

    def stored(frozen: FrozenTrial) -> Sequence[float]:
        return list(frozen.system_attrs.get(CONSTRAINTS_KEY, [1.0] * count))

    return {"constraints_func": stored}


class EvolvedHistory:
    """The study's trials as the current space would have them, for the strategy to learn from.

    A study resumed with a changed space (:mod:`tuner.evolve`) has trials whose parameters
    carry the old distributions, or lack a parameter added since. optuna's samplers model
    jointly only the parameters every trial has with one distribution; the others they sample
    blindly. This view gives earlier trials the added parameters' defaults and the current
    distributions (their values fit them: the evolution check made sure), so the history
    keeps informing every parameter. Studies whose space never changed see their own trials.

    Args:
        space: the current space.
    """

    def __init__(self, space: Space):
        self._space = space
        self._current = space.distributions()
        self._seen: dict[int, tuple[TrialState, FrozenTrial | None]] = {}

    def view(self, study: optuna.Study) -> optuna.Study:
        """``study`` itself, or a view of it with the earlier trials mapped onto the space."""
        trials = study._get_trials(deepcopy=False, use_cache=True)  # noqa: SLF001
        if not any(self._mapped(t) is not None for t in trials):
            return study
        return _StudyView(study, lambda read: [self._as_now(t) for t in read])

    def _as_now(self, trial: FrozenTrial) -> FrozenTrial:
        mapped = self._mapped(trial)
        return trial if mapped is None else mapped

    def _mapped(self, trial: FrozenTrial) -> FrozenTrial | None:
        seen = self._seen.get(trial.number)
        if seen is not None and seen[0] == trial.state and trial.state.is_finished():
            return seen[1]
        mapped = self._map(trial)
        self._seen[trial.number] = (trial.state, mapped)
        return mapped

    def _map(self, trial: FrozenTrial) -> FrozenTrial | None:
        from tuner.space import value_problem

        params: dict[str, Any] = {}
        distributions = {}
        changed = False
        for name, param in self._space.items():
            if not self._space.is_active(name, params):
                continue
            if name in trial.params:
                value = trial.params[name]
                known = trial.distributions[name]
                fits = value_problem(param, value) is None
                distributions[name] = self._current[name] if fits else known
                changed |= distributions[name] != known
            elif param.default is not None and trial.state.is_finished():
                value = param.default
                distributions[name] = self._current[name]
                changed = True
            else:
                continue
            params[name] = value
        if not changed:
            return None
        for name in trial.params.keys() - params.keys():  # outside the space: kept as it was
            params[name] = trial.params[name]
            distributions[name] = trial.distributions[name]
        mapped = copy.copy(trial)
        mapped.params = params
        mapped.distributions = distributions
        return mapped


def own_trials(study: optuna.Study, *, for_plots: bool = False) -> optuna.Study:
    """A view of ``study`` for what is reported of it: trials a warm start told it inform the
    strategy and are never shown as the study's.

    Args:
        study: the study.
        for_plots: keep each warm-start trial's place as a failed trial without values, which
            no plot draws: optuna's history plot finds a trial's value at the index of its
            number. Tables want them left out.

    Returns:
        The view; its best-trial properties still read the storage, so ask the view's
        trials, not them.
    """
    from tuner.records import is_own

    if for_plots:
        return _StudyView(study, lambda read: [t if is_own(t) else _place(t) for t in read])
    return _StudyView(study, lambda read: [t for t in read if is_own(t)])


def _place(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` as a failed trial with nothing to draw."""
    from optuna.trial import TrialState

    placed = copy.copy(trial)
    placed.state = TrialState.FAIL
    placed.values = None
    placed.intermediate_values = {}
    return placed


class _StudyView(optuna_study.Study):
    """A study whose trials are read through ``read`` (everything else is the study's)."""

    def __init__(self, study: optuna.Study, read: Callable[[list[FrozenTrial]], list[FrozenTrial]]):
        self.__dict__.update(study.__dict__)
        self._read = read

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._read(
            super()._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        )
        return trials if states is None else [t for t in trials if t.state in states]

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states, use_cache=False)
