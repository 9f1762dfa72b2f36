"""The study loop against the in-process backend: fast, real trial code, no Ray."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest

from inprocess import InProcessBackend, InProcessConfig
from tuner.backend import TrialStatus, TrialUpdate
from tuner.events import Listener as NullListener
from tuner.events import StudyStart
from tuner.orchestrator import Orchestrator
from tuner.records import Attr, StopReason, StudySummary, TrialRecord, TrialState
from tuner.store import StudyExistsError, load_study, location, open_study, records

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Recorder(NullListener):
    """Keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.closed = False

    def study_started(self, start: StudyStart) -> None:
        self.events.append(("study_started", start))

    def trial_started(self, record: TrialRecord) -> None:
        self.events.append(("trial_started", record))

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        self.events.append(("trial_reported", (number, step, dict(metrics))))

    def trial_finished(self, record: TrialRecord) -> None:
        self.events.append(("trial_finished", record))

    def trial_retried(self, number: int, attempt: int, error: str) -> None:
        self.events.append(("trial_retried", (number, attempt, error)))

    def study_finished(self, summary: StudySummary) -> None:
        self.events.append(("study_finished", summary))

    def close(self) -> None:
        self.closed = True

    def of(self, kind: str) -> list[Any]:
        return [payload for event, payload in self.events if event == kind]


def run(spec: Any, **kwargs: Any) -> tuple[StudySummary, Recorder]:
    recorder = Recorder()
    resume = kwargs.pop("resume", False)
    summary = Orchestrator(spec, listeners=[recorder], **kwargs).run(resume=resume)
    return summary, recorder


def test_a_study_runs_its_budget_and_keeps_every_trial(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(budget={"max_trials": 12, "max_concurrent": 3})
    summary, recorder = run(spec)
    assert summary.stop_reason is StopReason.MAX_TRIALS
    assert summary.counts[TrialState.COMPLETE] == 12
    trials = records(load_study(spec))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
    assert summary.best is not None
    assert summary.best.value == min(t.value for t in trials if t.value is not None)
    assert all(t.metrics == {"loss": t.value} for t in trials)
    assert recorder.closed
    assert len(recorder.of("trial_started")) == len(recorder.of("trial_finished")) == 12
    assert location(spec).spec.is_file()


def test_never_more_than_max_concurrent_trials_run(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(
        trial={"function": "examples.functions:sleepy"},
        budget={"max_trials": 8, "max_concurrent": 2},
        space={"x": {"type": "float", "low": 0, "high": 1}},
    )
    _, recorder = run(spec)
    running = peak = 0
    for event, _ in recorder.events:
        running += {"trial_started": 1, "trial_finished": -1}.get(event, 0)
        peak = max(peak, running)
    assert peak == 2


def test_failing_trials_are_recorded_with_their_traceback_and_the_study_goes_on(
    make_spec: Callable[..., Any],
) -> None:
    spec = make_spec(
        trial={"function": "examples.functions:flaky"},
        space={"x": {"type": "float", "low": -1, "high": 1}},
        budget={"max_trials": 20, "max_concurrent": 2, "max_failures": 100},
    )
    summary, _ = run(spec)
    trials = records(load_study(spec))
    failed = [t for t in trials if t.state is TrialState.FAILED]
    assert failed
    assert summary.counts[TrialState.COMPLETE] + len(failed) == 20
    for trial in failed:
        assert trial.params["x"] < 0
        assert trial.error is not None
        assert trial.error.startswith("ValueError: x=")
        assert trial.traceback is not None
        assert "examples/functions.py" in trial.traceback


def test_the_study_stops_at_max_failures_with_a_clear_message(
    make_spec: Callable[..., Any],
) -> None:
    spec = make_spec(
        trial={"function": "examples.functions:flaky"},
        space={"x": {"type": "float", "low": -2, "high": -1}},
        budget={"max_trials": 50, "max_concurrent": 2, "max_failures": 3},
    )
    summary, _ = run(spec)
    assert summary.stop_reason is StopReason.MAX_FAILURES
    assert summary.message is not None
    assert "max_failures = 3" in summary.message
    assert summary.counts[TrialState.FAILED] >= 3
    assert summary.finished < 50


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (math.nan, "is nan"),
        (math.inf, "is inf"),
        ({"accuracy": 0.5}, "reported no `loss` metric (it reported: accuracy)"),
        (None, "returned None"),
        ({"loss": "high"}, "must be a number"),
    ],
)
def test_bad_results_are_failed_trials(
    make_spec: Callable[..., Any], returned: Any, error: str
) -> None:
    spec = make_spec(
        trial={"function": lambda params: returned},
        budget={"max_trials": 2, "max_concurrent": 1},
    )
    summary, _ = run(spec)
    assert summary.counts[TrialState.FAILED] == 2
    assert all(error in (t.error or "") for t in records(load_study(spec)))


def test_intermediate_metrics_arrive_in_order_and_reach_optuna(
    make_spec: Callable[..., Any],
) -> None:
    spec = make_spec(
        trial={"function": "examples.functions:curve"},
        budget={"max_trials": 3, "max_concurrent": 3},
    )
    _, recorder = run(spec)
    reports = recorder.of("trial_reported")
    for number in range(3):
        steps = [step for n, step, _ in reports if n == number]
        assert steps == [0, 1, 2, 3, 4]
    frozen = load_study(spec).trials
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3, 4] for t in frozen)


def test_the_grid_ends_cleanly_when_exhausted(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(
        strategy={"type": "grid"},
        space={
            "x": {"type": "float", "low": 0, "high": 1, "step": 0.5},
            "k": {"type": "categorical", "choices": ["a", "b"]},
        },
        budget={"max_concurrent": 4},
    )
    summary, _ = run(spec)
    assert summary.stop_reason is StopReason.EXHAUSTED
    configs = [(t.params["x"], t.params["k"]) for t in records(load_study(spec))]
    assert sorted(configs) == sorted((x, k) for x in (0.0, 0.5, 1.0) for k in "ab")


def test_max_time_cancels_running_trials_and_queues_them_again(
    make_spec: Callable[..., Any],
) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.3  # every look at the clock is 0.3 s later
        return now[0]

    spec = make_spec(
        trial={"function": "examples.functions:sleepy"},
        space={
            "x": {"type": "float", "low": 0, "high": 1},
            "seconds": {"type": "categorical", "choices": [30]},
        },
        budget={"max_time": 2, "max_concurrent": 2},
    )
    backend = InProcessBackend(InProcessConfig(workers=2))
    summary, recorder = run(spec, clock=clock, backend=backend)
    assert summary.stop_reason is StopReason.MAX_TIME
    assert sorted(backend.cancelled) == [0, 1]
    cancelled = [r for r in recorder.of("trial_finished") if r.state is TrialState.CANCELLED]
    assert len(cancelled) == 2
    study = load_study(spec)
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert sorted(t.system_attrs["fixed_params"]["x"] for t in waiting) == sorted(
        r.params["x"] for r in cancelled
    )
    assert not backend.closed  # a backend passed in belongs to the caller


def test_resume_keeps_completed_trials_and_reruns_interrupted_ones(
    make_spec: Callable[..., Any],
) -> None:
    spec = make_spec(budget={"max_trials": 5, "max_concurrent": 1})
    run(spec)
    # An orchestrator killed mid-trial leaves a RUNNING trial behind in the storage.
    study = load_study(spec)
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(-2, 2)})
    orphan_x = orphan.params["x"]
    orphan.set_user_attr(Attr.HANDLE, '{"backend": "inprocess", "trial": 5, "data": {}}')
    completed_before = {t.number: t.params for t in study.trials if t.state.is_finished()}

    with pytest.raises(StudyExistsError, match="tuner resume"):
        Orchestrator(spec).run()

    resumed = spec.model_copy(update={"budget": spec.budget.model_copy(update={"max_trials": 8})})
    summary, recorder = run(resumed, resume=True)
    assert summary.counts[TrialState.COMPLETE] == 8
    started = recorder.of("study_started")[0]
    assert started.resumed
    finished = recorder.of("trial_finished")
    assert [r.number for r in finished if r.state is TrialState.CANCELLED] == [orphan.number]
    ran_now = [r for r in finished if r.state is not TrialState.CANCELLED]
    assert len(ran_now) == 3  # only what was missing
    rerun = [r for r in ran_now if r.params["x"] == orphan_x]
    assert len(rerun) == 1  # the interrupted trial ran again, said so, not as a proposal
    assert rerun[0].engine == "requeued"
    assert {r.engine for r in ran_now if r is not rerun[0]} == {"random"}
    after = load_study(spec)
    for number, params in completed_before.items():
        assert after.trials[number].params == params
        assert after.trials[number].state == optuna.trial.TrialState.COMPLETE
    assert after.trials[orphan.number].user_attrs[Attr.CANCELLED] is True


def test_a_reattachable_trial_is_followed_not_rerun(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(budget={"max_trials": 1, "max_concurrent": 1})
    backend = InProcessBackend()
    stored = open_study(spec)
    orphan = stored.ask({"x": optuna.distributions.FloatDistribution(-2, 2)})
    orphan.set_user_attr(Attr.HANDLE, '{"backend": "inprocess", "trial": 0, "data": {}}')
    backend.reattachable.add(orphan.number)
    backend._updates.put(TrialUpdate(orphan.number, TrialStatus.COMPLETED, {"loss": 0.25}))
    summary, _ = run(spec, backend=backend, resume=True)
    assert summary.counts[TrialState.COMPLETE] == 1
    assert backend.submitted == []
    assert load_study(spec).trials[0].value == 0.25


def test_ctrl_c_cancels_running_trials_and_closes_everything(
    make_spec: Callable[..., Any],
) -> None:
    class Interrupt(Recorder):
        def trial_started(self, record: TrialRecord) -> None:
            super().trial_started(record)
            if record.number == 1:
                raise KeyboardInterrupt

    spec = make_spec(
        trial={"function": "examples.functions:sleepy"},
        space={
            "x": {"type": "float", "low": 0, "high": 1},
            "seconds": {"type": "categorical", "choices": [30]},
        },
        budget={"max_trials": 10, "max_concurrent": 2},
    )
    # A listener's errors are contained, except Ctrl-C, which must stop the study.
    recorder = Interrupt()
    backend = InProcessBackend()
    study = Orchestrator(spec, listeners=[recorder], backend=backend)
    with pytest.raises(KeyboardInterrupt):
        study.run()
    assert study.summary is not None
    assert study.summary.stop_reason is StopReason.INTERRUPTED
    assert sorted(backend.cancelled) == [0, 1]
    assert recorder.closed
    assert [s.stop_reason for s in recorder.of("study_finished")] == [StopReason.INTERRUPTED]


def test_a_listener_that_raises_does_not_stop_the_study(make_spec: Callable[..., Any]) -> None:
    class Broken(NullListener):
        def trial_finished(self, record: TrialRecord) -> None:
            raise RuntimeError("tracking server down")

    spec = make_spec(budget={"max_trials": 4, "max_concurrent": 2})
    summary = Orchestrator(spec, listeners=[Broken()]).run()
    assert summary.counts[TrialState.COMPLETE] == 4


def test_a_backend_that_cannot_submit_gives_failed_trials_not_a_crash(
    make_spec: Callable[..., Any],
) -> None:
    class Refusing(InProcessBackend):
        def submit(self, trial: Any) -> Any:
            raise ConnectionError("cluster unreachable")

    spec = make_spec(budget={"max_trials": 10, "max_concurrent": 2, "max_failures": 3})
    summary, _ = run(spec, backend=Refusing())
    assert summary.stop_reason is StopReason.MAX_FAILURES
    errors = [t.error for t in records(load_study(spec))]
    assert errors == ["submitting to the backend failed: cluster unreachable"] * 3


def test_the_same_seed_runs_the_same_configurations(make_spec: Callable[..., Any]) -> None:
    def configs(name: str) -> list[dict[str, Any]]:
        spec = make_spec(
            name=name,
            strategy={"type": "bayesian", "engine": "tpe", "seed": 5, "n_startup_trials": 3},
            budget={"max_trials": 8, "max_concurrent": 1},
        )
        run(spec)
        return [t.params for t in records(load_study(spec))]

    assert configs("first") == configs("second")


def test_infrastructure_failures_are_retried_and_recorded(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(budget={"max_trials": 4, "max_concurrent": 2})
    backend = InProcessBackend()
    backend.infra_failures = {1: 2, 2: 5}  # trial 1 recovers on its 3rd attempt; 2 never does
    summary, recorder = run(spec, backend=backend)
    trials = {t.number: t for t in records(load_study(spec))}
    assert trials[1].state is TrialState.COMPLETE
    assert trials[1].attempts == 3
    assert trials[2].state is TrialState.FAILED
    assert trials[2].attempts == 3  # max_retries defaults to 2
    assert trials[2].error == "WorkerCrashedError: the worker died"
    assert sorted(n for n, *_ in recorder.of("trial_retried")) == [1, 1, 2, 2]
    assert [s.number for s in backend.submitted].count(1) == 3
    assert summary.counts[TrialState.COMPLETE] == 3
    # Every trial counts once, whatever its attempts.
    assert len(trials) == 4


def test_errors_in_trial_code_are_not_retried_unless_asked(make_spec: Callable[..., Any]) -> None:
    flaky = {
        "trial": {"function": "examples.functions:flaky"},
        "space": {"x": {"type": "float", "low": -2, "high": -1}},
        "budget": {"max_trials": 2, "max_concurrent": 1},
    }
    backend = InProcessBackend()
    run(make_spec(name="no-retry", **flaky), backend=backend)
    assert [s.attempt for s in backend.submitted] == [0, 0]

    backend = InProcessBackend()
    trial = {**flaky["trial"], "retry_on_error": True, "max_retries": 1}
    run(make_spec(name="retry", **{**flaky, "trial": trial}), backend=backend)
    assert [s.attempt for s in backend.submitted] == [0, 1, 0, 1]


def test_a_trial_past_its_timeout_is_cancelled_and_failed(make_spec: Callable[..., Any]) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.5
        return now[0]

    spec = make_spec(
        trial={"function": "examples.functions:sleepy", "timeout": "3s"},
        space={
            "x": {"type": "float", "low": 0, "high": 1},
            "seconds": {"type": "categorical", "choices": [60]},
        },
        budget={"max_trials": 2, "max_concurrent": 2, "max_failures": 5},
    )
    backend = InProcessBackend()
    summary, _ = run(spec, backend=backend, clock=clock)
    assert sorted(backend.cancelled) == [0, 1]
    assert summary.counts[TrialState.FAILED] == 2
    assert all(t.error == "timed out after 3s (trial.timeout)" for t in records(load_study(spec)))


def test_command_trials_run_through_the_loop(make_spec: Callable[..., Any], tmp_path: Path) -> None:
    spec = make_spec(
        objective={"metric": "val_loss", "direction": "minimize"},
        space={
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        },
        trial={
            "command": ["python", "train.py", "--epochs", "3", "--epoch-seconds", "0"],
            "workdir": "examples/command",
            "metric_definitions": [{"name": "val_loss", "regex": r"val_loss=([0-9.eE+-]+)"}],
        },
        budget={"max_trials": 4, "max_concurrent": 2},
    )
    summary, recorder = run(spec)
    assert summary.counts[TrialState.COMPLETE] == 4
    steps = [(n, step) for n, step, _ in recorder.of("trial_reported")]
    for number in range(4):
        assert [s for n, s in steps if n == number] == [0, 1, 2]
    record = records(load_study(spec))[0]
    assert record.log is not None
    assert "epoch=2 val_loss=" in record.log


def test_a_pruner_stops_hopeless_trials_early(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(
        trial={"function": "examples.functions:curve"},
        space={
            "x": {"type": "float", "low": -3.0, "high": 3.0},
            "steps": {"type": "categorical", "choices": [8]},
            "sleep": {"type": "categorical", "choices": [0.02]},
        },
        pruner={"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
        budget={"max_trials": 16, "max_concurrent": 1},
    )
    backend = InProcessBackend()
    summary, recorder = run(spec, backend=backend)
    pruned = [r for r in recorder.of("trial_finished") if r.state is TrialState.PRUNED]
    assert pruned
    assert summary.counts[TrialState.PRUNED] == len(pruned)
    assert summary.counts[TrialState.FAILED] == 0
    assert summary.finished == 16
    assert sorted(backend.cancelled) == sorted(r.number for r in pruned)
    study = load_study(spec)
    for record in pruned:
        frozen = study.trials[record.number]
        assert frozen.state == optuna.trial.TrialState.PRUNED
        assert max(frozen.intermediate_values) < 7  # stopped before its last step


def test_pruner_specs_validate() -> None:
    from pydantic import TypeAdapter

    from tuner.spec import Pruner
    from tuner.strategies.pruners import make_pruner

    for section, kind in [
        ({"type": "median"}, optuna.pruners.MedianPruner),
        ({"type": "asha", "reduction_factor": 4}, optuna.pruners.SuccessiveHalvingPruner),
        ({"type": "hyperband", "max_resource": 27}, optuna.pruners.HyperbandPruner),
        ({"type": "none"}, optuna.pruners.NopPruner),
    ]:
        assert isinstance(make_pruner(TypeAdapter(Pruner).validate_python(section)), kind)


def test_a_backend_that_fails_to_poll_for_a_while_does_not_end_the_study(
    make_spec: Callable[..., Any],
) -> None:
    backend = InProcessBackend()
    real_poll = backend.poll
    failures = {"left": 3}

    def poll(timeout: float) -> list[TrialUpdate]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("the cloud API had a bad minute")
        return real_poll(timeout)

    backend.poll = poll  # type: ignore[method-assign]
    waits: list[float] = []
    summary = Orchestrator(make_spec(), backend=backend, tracker=None, sleep=waits.append).run()

    assert summary.counts[TrialState.COMPLETE] == 6
    assert waits == [2.0, 4.0, 8.0]  # backing off between tries


def test_a_backend_that_never_answers_ends_the_study_with_its_error(
    make_spec: Callable[..., Any],
) -> None:
    backend = InProcessBackend()

    def poll(timeout: float) -> list[TrialUpdate]:
        raise ConnectionError("gone for good")

    backend.poll = poll  # type: ignore[method-assign]
    with pytest.raises(ConnectionError, match="gone for good"):
        Orchestrator(make_spec(), backend=backend, tracker=None, sleep=lambda s: None).run()
    assert sorted(backend.cancelled) == [0, 1]  # what it started is stopped


class _Scripted(InProcessBackend):
    """Attempt 0 of a trial dies with its node after 5 s; attempt 1 completes 4 s after it
    starts. Time passes only when the loop polls (one second a poll)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.live: dict[int, tuple[int, float]] = {}

    def submit(self, trial: Any) -> Any:
        from tuner.backend import TrialHandle

        self.submitted.append(trial)
        self.live[trial.number] = (trial.attempt, self.now)
        return TrialHandle(self.name, trial.number, {"attempt": trial.attempt})

    def poll(self, timeout: float) -> list[TrialUpdate]:
        from tuner.backend import ErrorKind

        self.now += 1.0
        updates = []
        for number, (attempt, since) in list(self.live.items()):
            if attempt == 0 and self.now - since >= 5:
                updates.append(
                    TrialUpdate(
                        number, TrialStatus.FAILED, error="node lost", error_kind=ErrorKind.INFRA
                    )
                )
                del self.live[number]
            elif attempt == 1 and self.now - since >= 4:
                updates.append(TrialUpdate(number, TrialStatus.COMPLETED, {"loss": 1.0}))
                del self.live[number]
        return updates


def test_a_retried_attempt_gets_the_whole_timeout(make_spec: Callable[..., Any]) -> None:
    backend = _Scripted()
    spec = make_spec(
        trial={"function": "examples.functions:quadratic", "timeout": "6s"},
        budget={"max_trials": 1, "max_concurrent": 1},
    )
    run(spec, backend=backend, clock=lambda: backend.now)
    (trial,) = records(load_study(spec))
    assert trial.state is TrialState.COMPLETE, trial.error  # 9 s in all, 4 s for attempt 2
    assert trial.attempts == 2


def test_a_resubmission_that_fails_keeps_its_error(make_spec: Callable[..., Any]) -> None:
    class RefusesRetries(InProcessBackend):
        def submit(self, trial: Any) -> Any:
            if trial.attempt > 0:
                raise ConnectionError("cluster unreachable")
            return super().submit(trial)

    backend = RefusesRetries()
    backend.infra_failures = {0: 1}
    spec = make_spec(budget={"max_trials": 1, "max_concurrent": 1})
    run(spec, backend=backend)
    frozen = load_study(spec).trials[0]
    (trial,) = records(load_study(spec))
    assert trial.state is TrialState.FAILED
    assert trial.error == "submitting attempt 2 failed: cluster unreachable"
    assert trial.attempts == 2
    assert "WorkerCrashedError: the worker died" in frozen.user_attrs[Attr.RETRIES]
