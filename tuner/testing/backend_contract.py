"""The contract every execution backend keeps, as a pytest class to subclass.

:class:`tuner.backend.Backend` says what a backend has; :class:`BackendContract` checks what it
does: a trial completes with its metrics, ``poll`` returns only what is new (a trial's
intermediate updates, steps in order, before its one final update), a user error is a ``USER``
failure, ``cancel`` ends a running trial and is idempotent, ``reattach`` answers a bool,
handles survive JSON, ``capacity`` is a positive int, and ``close`` after use does not raise.

A backend's tests subclass it and provide the fixtures marked *provide* below: how to build the
backend for a context, and the trials it can run (function references or commands, whichever it
runs); a backend that runs functions mixes in :class:`FunctionTrials` for most of them. Every
wait is bounded by :attr:`BackendContract.deadline`, and no test asserts how long anything
took, so the suite is as fast as the backend and never hangs on a broken one::

    import pytest
    from tuner.backend import FunctionEntry
    from tuner.plugins import create_backend
    from tuner.testing.backend_contract import BackendContract, ContractTrial, FunctionTrials

    from my_package.slurm import SlurmConfig


    class TestSlurmBackend(FunctionTrials, BackendContract):
        @pytest.fixture
        def make_backend(self):
            return lambda context: create_backend(SlurmConfig(), context)

        @pytest.fixture
        def long_trial(self):
            return ContractTrial(FunctionEntry("my_tests.trials:sleeps"), {"seconds": 600})

        # optionally infra_failure

One job, the contract's tests with the fixtures they need; its length is the number of things
every backend must do.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tuner.backend import (
    Backend,
    BackendContext,
    CommandEntry,
    ErrorKind,
    FunctionEntry,
    MissingExtraError,
    Resources,
    TrialHandle,
    TrialSpec,
    TrialStatus,
    TrialUpdate,
)
from tuner.plugins import backend_problems

try:
    import pytest
except ImportError:
    raise MissingExtraError("pytest", "dev", "tuner's backend contract suite") from None

__all__ = ["BackendContract", "ContractTrial", "FunctionTrials", "InfraFailure"]

MakeBackend = Callable[[BackendContext], Backend]
"""Builds the backend under test for a study's context."""


@dataclass(frozen=True)
class ContractTrial:
    """A trial the suite submits, and what it must end with.

    Attributes:
        entry: what runs: a function reference or a command, whichever the backend runs.
        params: the trial's parameters.
        metrics: final metrics the trial must complete with (at least these; compared with a
            relative tolerance of 1e-6).
        steps: the steps of the intermediate reports it makes, in order (for every metric it
            reports); empty for a trial that reports nothing before its end.
        objective: the metric the study optimises.
        env: extra environment of the trial.
        resources: what one trial needs.
    """

    entry: FunctionEntry | CommandEntry
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    steps: tuple[int, ...] = ()
    objective: str = "loss"
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class InfraFailure:
    """A trial whose infrastructure dies under it.

    Attributes:
        trial: the trial to submit.
        kill: kills its worker, node or job once it was submitted (it may wait, bounded, for
            the trial to start); ``None`` when the trial's infrastructure dies by itself.
    """

    trial: ContractTrial
    kill: Callable[[Backend, TrialHandle], None] | None = None


class BackendContract:
    """Tests any backend keeps; subclass it in a ``Test...`` class and provide the fixtures.

    Provide ``make_backend``, ``completing_trial``, ``reporting_trial``, ``failing_trial`` and
    ``long_trial``; ``infra_failure`` is optional (its test is skipped without one). Adjust the
    class attributes to the backend.
    """

    deadline: ClassVar[float] = 120.0
    """Longest wait for a trial to reach its end: only a guard against a hang."""
    poll_timeout: ClassVar[float] = 0.5
    """The ``timeout`` of each ``poll``."""
    quiet: ClassVar[float] = 1.0
    """How long to keep polling to see that nothing more comes about a finished trial."""
    reports_cancelled: ClassVar[bool] = True
    """Whether a cancelled trial ends with a ``CANCELLED`` update (else it ends silently)."""
    max_concurrent: ClassVar[int] = 2
    """The context's ``max_concurrent``; the suite runs at most two trials at once."""
    study: ClassVar[str] = "backend-contract"
    """The study name in the context and the trials."""

    # --- provide ------------------------------------------------------------------------------

    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        """*Provide*: a function that builds the backend under test for a context."""
        raise NotImplementedError(f"{type(self).__name__} must provide the `make_backend` fixture")

    @pytest.fixture
    def completing_trial(self) -> ContractTrial:
        """*Provide*: a trial that completes with ``metrics``."""
        raise NotImplementedError(f"{type(self).__name__} must provide `completing_trial`")

    @pytest.fixture
    def reporting_trial(self) -> ContractTrial:
        """*Provide*: a trial that reports metrics at ``steps`` (at least two), then completes."""
        raise NotImplementedError(f"{type(self).__name__} must provide `reporting_trial`")

    @pytest.fixture
    def failing_trial(self) -> ContractTrial:
        """*Provide*: a trial whose own code fails (raises, exits non-zero)."""
        raise NotImplementedError(f"{type(self).__name__} must provide `failing_trial`")

    @pytest.fixture
    def long_trial(self) -> ContractTrial:
        """*Provide*: a trial that runs until it is cancelled (longer than ``deadline``)."""
        raise NotImplementedError(f"{type(self).__name__} must provide `long_trial`")

    @pytest.fixture
    def infra_failure(self) -> InfraFailure | None:
        """*Provide, optionally*: a trial whose infrastructure dies under it."""
        return None

    # --- given --------------------------------------------------------------------------------

    @pytest.fixture
    def backend_context(self, tmp_path: Path) -> BackendContext:
        """The study the backend is built for."""
        folder = tmp_path / "study"
        folder.mkdir(exist_ok=True)
        uid = f"contract-{secrets.token_hex(4)}"
        return BackendContext(self.study, folder, self.max_concurrent, uid=uid)

    @pytest.fixture
    def backend(self, make_backend: MakeBackend, backend_context: BackendContext) -> Iterator[Any]:
        """The backend under test, closed after the test."""
        backend = make_backend(backend_context)
        try:
            yield backend
        finally:
            backend.close()

    # --- helpers ------------------------------------------------------------------------------

    def trial_spec(self, number: int, trial: ContractTrial, attempt: int = 0) -> TrialSpec:
        """What the study would submit for ``trial`` as its trial ``number``."""
        return TrialSpec(
            self.study,
            number,
            dict(trial.params),
            trial.entry,
            trial.objective,
            trial.resources,
            dict(trial.env),
            attempt,
        )

    def run_until_finished(self, backend: Backend, numbers: set[int]) -> list[TrialUpdate]:
        """Polls until every trial in ``numbers`` had its final update; every update seen.

        Fails the test if one has not finished within :attr:`deadline`, or if an update is not
        a :class:`TrialUpdate` of one of ``numbers``.
        """
        updates: list[TrialUpdate] = []
        finished: set[int] = set()
        deadline = time.monotonic() + self.deadline
        while finished != numbers:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"trials {sorted(numbers - finished)} did not finish within "
                    f"{self.deadline:g}s; updates so far: {updates}"
                )
            news = self._poll(backend, numbers)
            updates += news
            finished.update(u.trial for u in news if u.status.is_finished())
        return updates

    def poll_for(self, backend: Backend, seconds: float, numbers: set[int]) -> list[TrialUpdate]:
        """Every update ``poll`` returns over ``seconds``."""
        updates: list[TrialUpdate] = []
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            updates += self._poll(backend, numbers)
        return updates

    def _poll(self, backend: Backend, numbers: set[int]) -> list[TrialUpdate]:
        news = backend.poll(self.poll_timeout)
        assert isinstance(news, list), f"poll returned {type(news).__name__}, not a list"
        for update in news:
            assert isinstance(update, TrialUpdate), f"poll returned {update!r}"
            assert update.trial in numbers, f"an update of a trial never submitted: {update}"
        return news

    def final(self, updates: list[TrialUpdate], number: int) -> TrialUpdate:
        """The one final update of trial ``number``, which is its last update."""
        mine = [u for u in updates if u.trial == number]
        finals = [u for u in mine if u.status.is_finished()]
        assert len(finals) == 1, f"trial {number} had {len(finals)} final updates: {mine}"
        assert mine[-1] is finals[0], f"trial {number} had updates after its final one: {mine}"
        return finals[0]

    # --- the contract -------------------------------------------------------------------------

    def test_the_class_keeps_the_declared_protocol(self, backend: Backend) -> None:
        assert backend_problems(type(backend)) == []
        assert isinstance(backend, Backend)

    def test_capacity_is_a_positive_int(self, backend: Backend) -> None:
        capacity = backend.capacity
        assert isinstance(capacity, int)
        assert not isinstance(capacity, bool)
        assert capacity >= 1

    def test_a_trial_completes_with_its_metrics(
        self, backend: Backend, completing_trial: ContractTrial
    ) -> None:
        handle = backend.submit(self.trial_spec(0, completing_trial))
        assert handle.trial == 0
        assert handle.backend == backend.name

        final = self.final(self.run_until_finished(backend, {0}), 0)

        assert final.status is TrialStatus.COMPLETED, final
        for name, value in completing_trial.metrics.items():
            assert final.metrics.get(name) == pytest.approx(value, rel=1e-6), final

    def test_handles_survive_json(self, backend: Backend, completing_trial: ContractTrial) -> None:
        handle = backend.submit(self.trial_spec(0, completing_trial))
        text = handle.to_json()

        assert isinstance(json.loads(text), dict)
        assert TrialHandle.from_json(text) == handle
        self.run_until_finished(backend, {0})

    def test_poll_returns_only_what_is_new(
        self, backend: Backend, reporting_trial: ContractTrial
    ) -> None:
        for number in (0, 1):
            backend.submit(self.trial_spec(number, reporting_trial))
        updates = self.run_until_finished(backend, {0, 1})
        updates += self.poll_for(backend, self.quiet, {0, 1})

        for number in (0, 1):
            final = self.final(updates, number)
            assert final.status is TrialStatus.COMPLETED, final
            reports = [u for u in updates if u.trial == number and u.metrics and u is not final]
            assert all(u.status is TrialStatus.RUNNING for u in reports), reports
            steps: dict[str, list[int | None]] = {}
            for update in reports:
                for name in update.metrics:
                    steps.setdefault(name, []).append(update.step)
            assert steps, f"trial {number} reported nothing before its end: {updates}"
            for name, seen in steps.items():
                assert seen == list(reporting_trial.steps), (
                    f"trial {number}'s `{name}` came at steps {seen}, not "
                    f"{list(reporting_trial.steps)} (once each, in order)"
                )

    def test_a_user_error_fails_the_trial_with_a_message(
        self, backend: Backend, failing_trial: ContractTrial
    ) -> None:
        backend.submit(self.trial_spec(0, failing_trial))

        final = self.final(self.run_until_finished(backend, {0}), 0)

        assert final.status is TrialStatus.FAILED, final
        assert final.error_kind is ErrorKind.USER, final
        assert isinstance(final.error, str)
        assert final.error.strip(), final

    def test_cancelling_a_running_trial_ends_it(
        self, backend: Backend, long_trial: ContractTrial
    ) -> None:
        handle = backend.submit(self.trial_spec(0, long_trial))
        updates = self._poll(backend, {0})  # let it start
        assert not any(u.status.is_finished() for u in updates), updates

        backend.cancel(handle)
        backend.cancel(handle)
        if self.reports_cancelled:
            updates += self.run_until_finished(backend, {0})
            updates += self.poll_for(backend, self.quiet, {0})
            assert self.final(updates, 0).status is TrialStatus.CANCELLED
        else:
            updates += self.poll_for(backend, self.quiet, {0})
            finals = [u for u in updates if u.status.is_finished()]
            assert len(finals) <= 1, finals
            assert all(u.status is TrialStatus.CANCELLED for u in finals), finals

    def test_cancel_is_idempotent_and_a_no_op_on_finished_and_unknown_trials(
        self, backend: Backend, completing_trial: ContractTrial
    ) -> None:
        handle = backend.submit(self.trial_spec(0, completing_trial))
        self.run_until_finished(backend, {0})

        backend.cancel(handle)
        backend.cancel(TrialHandle.from_json(handle.to_json()))
        backend.cancel(TrialHandle(backend.name, 9_999))

        assert self.poll_for(backend, self.quiet, {0}) == []

    def test_reattach_answers_a_bool_for_unknown_and_finished_trials(
        self, backend: Backend, completing_trial: ContractTrial
    ) -> None:
        assert backend.reattach(TrialHandle(backend.name, 9_999)) is False

        handle = backend.submit(self.trial_spec(0, completing_trial))
        self.run_until_finished(backend, {0})
        followed = backend.reattach(TrialHandle.from_json(handle.to_json()))

        assert isinstance(followed, bool)
        if followed:  # then its updates, a final one included, come through poll again
            self.final(self.run_until_finished(backend, {0}), 0)

    def test_an_infrastructure_failure_is_failed_with_kind_infra(
        self, backend: Backend, infra_failure: InfraFailure | None
    ) -> None:
        if infra_failure is None:
            pytest.skip(f"{type(self).__name__} provides no `infra_failure`")
        handle = backend.submit(self.trial_spec(0, infra_failure.trial))
        if infra_failure.kill is not None:
            infra_failure.kill(backend, handle)

        final = self.final(self.run_until_finished(backend, {0}), 0)

        assert final.status is TrialStatus.FAILED, final
        assert final.error_kind is ErrorKind.INFRA, final

    def test_close_after_use_does_not_raise(
        self,
        make_backend: MakeBackend,
        backend_context: BackendContext,
        completing_trial: ContractTrial,
        long_trial: ContractTrial,
    ) -> None:
        backend = make_backend(backend_context)
        backend.submit(self.trial_spec(0, completing_trial))
        backend.submit(self.trial_spec(1, long_trial))
        deadline = time.monotonic() + self.deadline
        while not any(u.trial == 0 and u.status.is_finished() for u in self._poll(backend, {0, 1})):
            assert time.monotonic() < deadline, f"trial 0 did not finish in {self.deadline:g}s"

        backend.close()  # with trial 1 still running


class FunctionTrials:
    """The trials a backend that runs Python functions completes, reports and fails with,
    from :mod:`tuner.testing.trials` (shipped with tuner). Mix it in before
    :class:`BackendContract`; the backend's tests then provide only ``make_backend`` and
    ``long_trial``::

        class TestSlurmBackend(FunctionTrials, BackendContract): ...
    """

    @pytest.fixture
    def completing_trial(self) -> ContractTrial:
        return ContractTrial(
            FunctionEntry("tuner.testing.trials:quadratic"), {"x": 3.0}, {"loss": 4.0}
        )

    @pytest.fixture
    def reporting_trial(self) -> ContractTrial:
        entry = FunctionEntry("tuner.testing.trials:curve")
        return ContractTrial(entry, {"x": 1.0, "steps": 4}, {"loss": 1.25}, (0, 1, 2, 3))

    @pytest.fixture
    def failing_trial(self) -> ContractTrial:
        return ContractTrial(FunctionEntry("tuner.testing.trials:fails"), {"x": -1.0})
