"""A study from its spec to its end: the wiring around :class:`tuner.loop.Loop`.

:class:`Orchestrator` opens the study's store, sampler, backend and listeners (MLflow, the progress
display), holds the orchestrator's lock, runs the loop, and closes everything whatever happens.
Each of them can be injected (a backend, listeners, a tracker, a storage, the clock), so the
whole study runs in milliseconds in tests against an in-process backend.

Example:
    >>> from tuner.orchestrator import Orchestrator
    >>> from tuner import load_spec
    >>> summary = Orchestrator(load_spec("examples/quickstart/study.yaml")).run()  # doctest: +SKIP
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tuner import migrate as migration
from tuner.backend import Backend, BackendContext
from tuner.events import Listeners, StudyListener
from tuner.evolve import Change, check_evolution
from tuner.loop import Clock, Loop
from tuner.optuna_adapter import reload
from tuner.plugins import create_backend
from tuner.records import Attr, StopReason, StudySummary
from tuner.spec import StudySpec
from tuner.store import (
    StudyExistsError,
    location,
    open_storage,
    open_study,
    save_spec,
)
from tuner.strategies import PendingAwareSampler, Problem, make_sampler
from tuner.tracking import MlflowTracker
from tuner.warm_start import WarmStartReport, queue_seed_trials, warm_start

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from tuner.locks import HeldLock


_DEFAULT = object()


class Orchestrator:
    """Runs a study spec to the end of its budget.

    Args:
        spec: the validated study spec.
        backend: where trials run; built from ``spec.backend`` if not given (and then closed
            at the end; a backend passed in is left open for its owner).
        listeners: receive the study's events (the CLI passes its progress display).
        tracker: the MLflow mirror; built from ``spec.tracking`` unless given (``None``: off).
        storage: an optuna storage; the spec's (journal file by default) unless given.
        clock: seconds, monotonic; for the time budget.
        sleep: waits (between tries of a failing backend).
    """

    def __init__(
        self,
        spec: StudySpec,
        *,
        backend: Backend | None = None,
        listeners: Sequence[StudyListener] = (),
        tracker: Any = _DEFAULT,
        storage: BaseStorage | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.spec = spec
        self._backend = backend
        self._extra_listeners = list(listeners)
        self._tracker = tracker
        self._storage = storage
        self.clock = clock
        self.sleep = sleep
        self.summary: StudySummary | None = None
        self.lock: HeldLock | None = None
        """The orchestrator's lock while :meth:`run` holds it."""
        self.engine: str | None = None
        self.warm_start: WarmStartReport | None = None
        """What the spec's ``warm_start`` told the study (kept as a study attribute too)."""
        self.tracking_uri: str | None = None

    # --- public --------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> StudySummary:
        """Runs trials until the budget ends or the space is exhausted.

        Args:
            resume: continue a study that already has trials; trials an earlier run left
                running are reattached where the backend can, else queued again.

        Returns:
            The final summary; ``stop_reason`` says why it stopped.

        Raises:
            StudyExistsError: without ``resume``, if the study already has trials.
            StudyBusyError: if another live process is running the study.
            KeyboardInterrupt: after cancelling running trials and closing the study.
        """
        from tuner.study_lock import study_lock

        with study_lock(self.spec) as lock:
            # `lock.lost` is set if another orchestrator takes the study over (shared storage)
            self.lock = lock
            return self._run(resume)

    def _run(self, resume: bool) -> StudySummary:
        spec = self.spec
        storage = self._storage if self._storage is not None else open_storage(spec)
        migration.recover(storage, spec.name)  # a rewrite a crash interrupted is finished
        prior = _existing_trials(storage, spec.name)
        if prior and not resume:
            raise StudyExistsError(
                f"study `{spec.name}` already has {prior} trials in {_where(spec)}; continue "
                f"it with `tuner resume {spec.name}`, or give the spec a new `name`"
            )
        if prior:
            self.changes = _check_changes(spec, storage)
            if migration.needs_migration(storage, spec.name, spec.search_space):
                migration.migrate(storage, spec.name, spec.search_space)
        # Kept before a new study's first write to the store, so a kill after it can resume;
        # a changed spec only once the check above accepted it.
        save_spec(spec)
        probe = open_study(spec, None, storage)
        seed = probe.user_attrs.get(Attr.SEED)
        if seed is None:
            seed = spec.strategy.seed if spec.strategy.seed is not None else secrets.randbits(31)
            probe.set_user_attr(Attr.SEED, seed)
        self.warm_start, sampler = prepare_strategy(spec, probe, _run_seed(seed, prior))
        self.engine = sampler.engine
        study = open_study(spec, sampler, storage)
        study.set_user_attr(Attr.ENGINE, sampler.engine)
        uid = study.user_attrs.get(Attr.UID)
        if uid is None:
            uid = secrets.token_hex(6)
            study.set_user_attr(Attr.UID, uid)

        owns_backend = self._backend is None
        backend = self._backend or create_backend(
            spec.backend,
            BackendContext(
                spec.name,
                location(spec).root,
                spec.budget.max_concurrent,
                spec.trial.resources.to_resources(),
                uid=uid,
            ),
        )
        listeners = self._make_listeners(study)
        events = Listeners(listeners)
        loop = Loop(spec, study, sampler, backend, events, Clock(self.clock, self.sleep), self.lock)
        try:
            loop.start(seed=seed, resumed=resume and prior > 0)
            loop.run()
        except KeyboardInterrupt:
            loop.stop_reason = StopReason.INTERRUPTED
            raise
        finally:
            try:
                self.summary = loop.finish()
            finally:
                events.close()
                if owns_backend and not loop.abandoned:
                    backend.close()
        return self.summary

    # --- wiring --------------------------------------------------------------------------

    def _make_listeners(self, study: optuna.Study) -> list[StudyListener]:
        tracker = self._tracker
        if tracker is _DEFAULT:
            config = self.spec.tracking.mlflow
            tracker = None
            if config is not None:
                tracker = MlflowTracker(
                    config,
                    keep_run_id=_run_id_keeper(study),
                    study_dir=location(self.spec).root,
                    load_study=lambda: _reload(study),
                )
        self.tracking_uri = getattr(tracker, "tracking_uri", None)
        if self.tracking_uri:
            study.set_user_attr(Attr.TRACKING_URI, self.tracking_uri)
        return [*([tracker] if tracker is not None else []), *self._extra_listeners]


def _reload(study: optuna.Study) -> optuna.Study:
    """A fresh handle on ``study`` for another thread (the tracker's end-of-study plots)."""

    return reload(study)


def _run_id_keeper(study: optuna.Study) -> Callable[[int | None, str], None]:
    """Stores run ids as study attributes: a trial may finish before its run exists, and
    optuna refuses attribute writes to finished trials."""

    def keep(number: int | None, run_id: str) -> None:
        key = Attr.MLFLOW_PARENT_RUN_ID if number is None else f"{Attr.MLFLOW_RUN_ID}.{number}"
        study.set_user_attr(key, run_id)

    return keep


def _check_changes(spec: StudySpec, storage: BaseStorage) -> list[Change]:
    """How ``spec`` differs from the spec the study last ran with.

    Raises:
        SpecChangeError: if it changes what the finished trials meant.
    """
    from tuner.records import TrialRecord, is_own
    from tuner.spec import SpecError, load_spec

    saved = location(spec).spec
    if not saved.is_file():
        return []  # a shared storage used from another machine: nothing to compare with
    try:
        before = load_spec(saved, import_trial=False)
    except SpecError:
        return []  # written by another version of tuner; the storage decides what is kept
    study_id = storage.get_study_id_from_name(spec.name)
    trials = [
        TrialRecord.from_optuna(t)
        for t in storage.get_all_trials(study_id, deepcopy=False)
        if is_own(t)
    ]
    return check_evolution(before, spec, trials)


def _existing_trials(storage: BaseStorage, name: str) -> int:
    """The study's own trials (warm-start ones never ran here)."""
    from tuner.records import is_own

    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return sum(1 for t in storage.get_all_trials(study_id, deepcopy=False) if is_own(t))


def _run_seed(seed: int, prior_trials: int) -> int:
    """The sampler seed for a run: the study's seed, varied on resume so draws do not repeat."""
    return seed if prior_trials == 0 else (seed + 7919 * prior_trials) % 2**31


def _where(spec: StudySpec) -> str:
    return spec.storage.url or str(location(spec).journal)


def prepare_strategy(
    spec: StudySpec, study: optuna.Study, seed: int
) -> tuple[WarmStartReport | None, PendingAwareSampler]:
    """Readies ``study`` for its first proposal and makes its strategy.

    The strategy is made first, before anything is written, so an engine that cannot be made
    (an extra not installed) fails with the study as it was; then the warm start's trials are
    told (once a study), the strategy is made again knowing them (its model proposes from
    them), and the seed trials are queued (once a study).

    Args:
        study: the study's optuna study, opened and not yet asked for a trial.
        seed: the strategy's seed for this run.

    Returns:
        What the warm start told (``None`` without ``warm_start``) and the strategy.

    Raises:
        InputError: if the warm start's source does not exist or does not fit the study.
        MissingExtraError: if the engine needs a package that is not installed.
    """
    known = strategy_problem(spec, study)  # a resumed study's warm start is told already
    sampler = make_sampler(spec.strategy, spec.search_space, seed, known)
    report = warm_start(study, spec)
    problem = strategy_problem(spec, study)
    if len(problem.prior) != len(known.prior):
        sampler = make_sampler(spec.strategy, spec.search_space, seed, problem)
    queue_seed_trials(study, spec)
    return report, sampler


def strategy_problem(spec: StudySpec, study: optuna.Study) -> Problem:
    """What ``spec``'s strategy solves beyond its space.

    Returns:
        The objectives, the constraints and the completed trials a warm start told ``study``.
    """
    from optuna.trial import TrialState as OptunaState

    from tuner.records import is_own

    states = (OptunaState.COMPLETE,)
    prior = tuple(t for t in study.get_trials(deepcopy=False, states=states) if not is_own(t))
    return Problem(objectives=len(spec.objectives), constraints=len(spec.constraints), prior=prior)
