"""Warm starts and seed trials: earlier results told before the first proposal, known
configurations run first; neither told, queued nor run twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from inprocess import InProcessBackend
from tuner.cli import app
from tuner.errors import InputError
from tuner.events import Listener
from tuner.orchestrator import Orchestrator
from tuner.records import Attr, StudySummary, TrialRecord, TrialState, is_own
from tuner.store import load_study, location, records
from tuner.warm_start import SEED_TRIAL, prepare, stored_report

optuna.logging.set_verbosity(optuna.logging.WARNING)

NARROWED = {
    "x": {"type": "float", "low": 0.0, "high": 2.0},
    "y": {"type": "float", "low": -1.0, "high": 1.0, "default": 0.25},
}
"""The earlier study's `x` in [-2, 2] narrowed to [0, 2], and a new parameter with a default."""


def run(spec: Any, **kwargs: Any) -> StudySummary:
    resume = kwargs.pop("resume", False)
    return Orchestrator(spec, **kwargs).run(resume=resume)


def with_budget(spec: Any, max_trials: int) -> Any:
    return spec.model_copy(
        update={"budget": spec.budget.model_copy(update={"max_trials": max_trials})}
    )


def warm_trials(spec: Any) -> list[optuna.trial.FrozenTrial]:
    return [t for t in load_study(spec).get_trials() if not is_own(t)]


@pytest.fixture
def earlier(make_spec: Callable[..., Any]) -> list[TrialRecord]:
    """A finished study `earlier`: 12 random trials of (x - 1)^2 with x in [-2, 2]."""
    spec = make_spec(name="earlier", budget={"max_trials": 12, "max_concurrent": 2})
    run(spec)
    return records(load_study(spec))


# --- from an earlier study --------------------------------------------------------------------


def test_an_earlier_study_is_mapped_onto_the_new_space(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    inside = [t for t in earlier if t.params["x"] >= 0]
    outside = [t for t in earlier if t.params["x"] < 0]
    assert inside  # the narrowed range keeps some trials
    assert outside  # and drops others
    spec = make_spec(name="later", space=NARROWED, warm_start={"study": "earlier"})

    orchestrator = Orchestrator(spec)
    orchestrator.run()

    told = warm_trials(spec)
    assert [(t.params, t.values) for t in told] == [
        ({"x": t.params["x"], "y": 0.25}, [t.value]) for t in inside
    ]
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in told)
    assert {t.user_attrs[Attr.WARM_START] for t in told} == {"study earlier"}
    report = stored_report(load_study(spec).user_attrs)
    assert report == orchestrator.warm_start
    assert report is not None
    assert (report.source, report.used) == ("study earlier", len(inside))
    assert report.dropped == {"`x` outside the space": len(outside)}


def test_warm_start_defaults_fill_in_what_earlier_trials_lack(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    space = {**NARROWED, "z": {"type": "int", "low": 1, "high": 9}}
    spec = make_spec(
        name="later", space=space, warm_start={"study": "earlier", "defaults": {"z": 4}}
    )
    run(spec)
    assert {(t.params["y"], t.params["z"]) for t in warm_trials(spec)} == {(0.25, 4)}


def test_a_parameter_with_no_default_drops_every_earlier_trial(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    space = {**NARROWED, "z": {"type": "int", "low": 1, "high": 9}}
    spec = make_spec(name="later", space=space, warm_start={"study": "earlier"})
    run(spec)
    report = stored_report(load_study(spec).user_attrs)
    assert report is not None
    assert report.used == 0
    assert report.dropped["no value for `z`"] > 0
    assert warm_trials(spec) == []


def test_warm_trials_are_not_run_counted_or_reported(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(
        name="later", warm_start={"study": "earlier"}, budget={"max_trials": 5, "max_concurrent": 2}
    )
    backend = InProcessBackend()
    summary = run(spec, backend=backend)

    assert len(warm_trials(spec)) == 12
    assert summary.counts[TrialState.COMPLETE] == 5
    assert len(backend.submitted) == 5
    own = records(load_study(spec))
    assert len(own) == 5
    assert summary.best is not None
    assert summary.best.number in {t.number for t in own}


def test_warm_trials_are_in_the_store_before_the_first_trial_starts(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(name="later", warm_start={"study": "earlier"}, budget={"max_trials": 1})
    seen: list[list[Any]] = []

    class FirstStart(Listener):
        def trial_started(self, record: TrialRecord) -> None:
            stored = load_study(spec).get_trials()
            seen.append([(t.state, is_own(t)) for t in stored if t.number != record.number])

    run(spec, listeners=[FirstStart()])
    assert seen == [[(optuna.trial.TrialState.COMPLETE, False)] * 12]


def test_the_first_proposals_are_informed_by_the_earlier_study(
    make_spec: Callable[..., Any],
) -> None:
    run(make_spec(name="earlier", budget={"max_trials": 30, "max_concurrent": 2}))
    tpe = {"type": "bayesian", "engine": "tpe", "seed": 1, "n_startup_trials": 5}
    distances = {}
    for name, source in (("cold", None), ("warm", {"study": "earlier"})):
        spec = make_spec(
            name=name,
            strategy=tpe,
            warm_start=source,
            budget={"max_trials": 3, "max_concurrent": 1},
        )
        run(spec)
        distances[name] = [abs(t.params["x"] - 1.0) for t in records(load_study(spec))]
    # Cold, TPE draws its first 5 at random; warm, its model already knows where x = 1 is.
    assert max(distances["warm"]) < 0.5
    assert max(distances["cold"]) > 0.5


def test_a_resumed_study_does_not_tell_its_warm_trials_again(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(name="later", warm_start={"study": "earlier"}, budget={"max_trials": 3})
    run(spec)
    summary = run(with_budget(spec, 6), resume=True)
    assert len(warm_trials(spec)) == 12
    assert summary.counts[TrialState.COMPLETE] == 6


def test_max_trials_keeps_the_best_earlier_trials(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(name="later", warm_start={"study": "earlier", "max_trials": 3})
    run(spec)
    best = sorted(t.value for t in earlier if t.value is not None)[:3]
    assert sorted(t.values[0] for t in warm_trials(spec)) == best
    report = stored_report(load_study(spec).user_attrs)
    assert report is not None
    assert report.dropped == {"not among the best 3 (max_trials)": 9}


def test_the_status_shows_the_warm_start(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(name="later", space=NARROWED, warm_start={"study": "earlier"})
    run(spec)
    used = sum(t.params["x"] >= 0 for t in earlier)
    result = CliRunner().invoke(app, ["status", str(location(spec).root)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("warm start:"))
    assert line == (
        f"warm start: {used} trials from study earlier "
        f"({12 - used} dropped: {12 - used} `x` outside the space)"
    )


def test_a_missing_study_is_an_error_naming_the_studies_there_are(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(name="later", warm_start={"study": "earleir"})
    for _ in range(2):  # the second time, this study's own folder is there too
        with pytest.raises(
            InputError, match=r"warm_start\.study: no `earleir` .*did you mean `earlier`"
        ) as caught:
            run(spec)
        assert "later" not in str(caught.value)  # never this study itself


def test_an_earlier_study_in_another_store_is_found_by_its_url(
    make_spec: Callable[..., Any], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'earlier.db'}"
    first = make_spec(
        name="earlier", storage={"url": url}, budget={"max_trials": 12, "max_concurrent": 2}
    )
    run(first)
    inside = sum(t.params["x"] >= 0 for t in records(load_study(first)))
    assert 0 < inside < 12  # the narrowed range keeps some trials and drops others

    in_own_folder = make_spec(name="lost", space=NARROWED, warm_start={"study": "earlier"})
    with pytest.raises(InputError, match="no `earlier`"):
        run(in_own_folder)  # not where this study's storage is: the URL is what finds it

    spec = make_spec(name="later", space=NARROWED, warm_start={"study": "earlier", "storage": url})
    assert spec.storage.url is None  # the later study keeps its own journal folder
    summary = run(spec)

    report = stored_report(load_study(spec).user_attrs)
    assert report is not None
    assert (report.source, report.used) == ("study earlier", inside)
    assert report.dropped == {"`x` outside the space": 12 - inside}
    assert len(warm_trials(spec)) == inside
    assert summary.counts[TrialState.COMPLETE] == 6  # the later study's own budget


def test_a_default_for_an_unknown_parameter_is_a_spec_error_with_its_line(tmp_path: Path) -> None:
    from tuner.spec import SpecError, load_spec_text

    text = (
        "name: later\nobjective: {metric: loss}\n"
        "space: {x: {type: float, low: -2.0, high: 2.0}}\nbudget: {max_trials: 3}\n"
        "trial: {function: examples.functions:quadratic}\n"
        "warm_start: {study: earlier, defaults: {xx: 1.0}, metrics: {los: loss}}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "later.yaml", str(tmp_path))
    issues = {i.field: i for i in caught.value.issues}
    assert "did you mean `x`" in issues["warm_start.defaults.xx"].message
    assert issues["warm_start.defaults.xx"].line == 6
    assert "not an objective" in issues["warm_start.metrics.los"].message


# --- from an MLflow experiment ----------------------------------------------------------------


def hand_made_runs(uri: str, name: str, runs: list[dict[str, Any]]) -> None:
    """Runs logged as a researcher would by hand: params (strings in MLflow) and metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(name)
    for run_ in runs:
        made = client.create_run(experiment, tags=run_.get("tags", {}))
        for key, value in run_.get("params", {}).items():
            client.log_param(made.info.run_id, key, value)
        for key, value in run_.get("metrics", {}).items():
            client.log_metric(made.info.run_id, key, value)
        client.set_terminated(made.info.run_id, run_.get("status", "FINISHED"))


MLFLOW_SPACE = {
    "x": {"type": "float", "low": -2.0, "high": 2.0},
    "depth": {"type": "int", "low": 1, "high": 8},
    "kernel": {"type": "categorical", "choices": ["rbf", "poly"]},
    "degree": {"type": "int", "low": 2, "high": 5, "when": {"kernel": "poly"}},
    "bias": {"type": "categorical", "choices": [True, False], "default": True},
}


def test_hand_made_mlflow_runs_are_told_with_their_params_converted(
    make_spec: Callable[..., Any], mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tuner.warm_start._PAGE", 2)  # every page is read, not the first
    hand_made_runs(
        mlflow_uri,
        "manual",
        [
            {
                "params": {"x": 0.5, "depth": 3, "kernel": "poly", "degree": 4, "bias": False},
                "metrics": {"loss": 0.25},
            },
            {
                "params": {"x": 1, "depth": "4.0", "kernel": "rbf", "degree": 3, "epochs": 10},
                "metrics": {"loss": 0.0, "accuracy": 0.9},
            },
            {"params": {"x": 5, "depth": 3, "kernel": "rbf"}, "metrics": {"loss": 16.0}},
            {"params": {"x": 0.1, "depth": 2, "kernel": "linear"}, "metrics": {"loss": 0.81}},
            {"params": {"x": 0.1, "depth": 2.5, "kernel": "rbf"}, "metrics": {"loss": 0.81}},
            {"params": {"x": 0.3, "kernel": "rbf"}, "metrics": {"loss": 0.49}},
            {"params": {"x": 0.2, "depth": 2, "kernel": "rbf"}, "metrics": {"acc": 0.5}},
            {
                "params": {"x": 0.9, "depth": 1, "kernel": "rbf"},
                "metrics": {"loss": 0.01},
                "status": "FAILED",
            },
            # tuner's own runs: a study's parent run and a pruned trial are not results
            {
                "params": {"x": 0.7, "depth": 1, "kernel": "rbf"},
                "metrics": {"loss": 0.09},
                "tags": {"tuner.study": "old"},
            },
            {
                "params": {"x": 0.6, "depth": 1, "kernel": "rbf"},
                "metrics": {"loss": 0.16},
                "tags": {"tuner.study": "old", "tuner.trial": "3", "tuner.state": "PRUNED"},
            },
            {
                "params": {"x": -1.0, "depth": 6, "kernel": "rbf"},
                "metrics": {"loss": 4.0},
                "tags": {"tuner.study": "old", "tuner.trial": "4", "tuner.state": "COMPLETE"},
            },
        ],
    )
    spec = make_spec(
        name="later",
        space=MLFLOW_SPACE,
        warm_start={"mlflow_experiment": "manual", "tracking_uri": mlflow_uri},
        budget={"max_trials": 2},
    )
    run(spec)

    told = sorted(((t.params, t.values) for t in warm_trials(spec)), key=lambda p: p[0]["x"])
    assert told == [
        ({"x": -1.0, "depth": 6, "kernel": "rbf", "bias": True}, [4.0]),
        ({"x": 0.5, "depth": 3, "kernel": "poly", "degree": 4, "bias": False}, [0.25]),
        ({"x": 1.0, "depth": 4, "kernel": "rbf", "bias": True}, [0.0]),
    ]
    assert isinstance(told[2][0]["depth"], int)
    report = stored_report(load_study(spec).user_attrs)
    assert report is not None
    assert (report.source, report.used) == ("mlflow experiment manual", 3)
    assert report.dropped == {
        "`x` outside the space": 1,
        "`kernel` outside the space": 1,
        "`depth` outside the space": 1,
        "no value for `depth`": 1,
        "no metric `loss`": 1,
    }
    assert len(records(load_study(spec))) == 2


def test_several_objectives_are_told_as_values_and_the_front_is_kept_first(
    make_spec: Callable[..., Any], mlflow_uri: str
) -> None:
    points = [(1.0, 10.0), (2.0, 5.0), (3.0, 20.0), (1.5, 30.0)]
    hand_made_runs(
        mlflow_uri,
        "manual",
        [{"params": {"x": 0.5}, "metrics": {"val_loss": a, "latency_ms": b}} for a, b in points],
    )
    spec = make_spec(
        objective=[{"metric": "loss"}, {"metric": "latency_ms"}],
        warm_start={
            "mlflow_experiment": "manual",
            "tracking_uri": mlflow_uri,
            "metrics": {"loss": "val_loss"},
            "max_trials": 2,
        },
    )
    study = optuna.create_study(directions=["minimize", "minimize"])
    report = prepare(study, spec)
    assert sorted(t.values for t in study.trials) == [[1.0, 10.0], [2.0, 5.0]]
    assert report is not None
    assert report.dropped == {"not among the best 2 (max_trials)": 2}


def test_a_missing_experiment_is_an_error_naming_the_experiments_there_are(
    make_spec: Callable[..., Any], mlflow_uri: str
) -> None:
    hand_made_runs(mlflow_uri, "manual-runs", [])
    spec = make_spec(warm_start={"mlflow_experiment": "manual-run", "tracking_uri": mlflow_uri})
    with pytest.raises(
        InputError, match=r"warm_start\.mlflow_experiment: no `manual-run` .*`manual-runs`"
    ):
        run(spec)


# --- seed trials ------------------------------------------------------------------------------

XY = {
    "x": {"type": "float", "low": -2.0, "high": 2.0},
    "y": {"type": "float", "low": -1.0, "high": 1.0},
}
SEEDS = [{"x": 1.5, "y": -0.5}, {"x": -0.5}, {"x": 0.25, "y": 0.75}]


def test_seed_trials_run_first_with_exactly_their_params(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(space=XY, seed_trials=SEEDS, budget={"max_trials": 5, "max_concurrent": 1})
    summary = run(spec)

    trials = load_study(spec).get_trials()
    assert summary.counts[TrialState.COMPLETE] == 5
    assert [t.user_attrs.get(SEED_TRIAL) for t in trials] == [0, 1, 2, None, None]
    assert (trials[0].params, trials[2].params) == (SEEDS[0], SEEDS[2])
    assert trials[1].params["x"] == -0.5
    assert -1.0 <= trials[1].params["y"] <= 1.0  # left out of the seed: proposed


def test_seed_trials_are_neither_lost_nor_repeated_on_resume(
    make_spec: Callable[..., Any],
) -> None:
    spec = make_spec(space=XY, seed_trials=SEEDS[1:], budget={"max_trials": 1, "max_concurrent": 1})
    run(spec)
    run(with_budget(spec, 4), resume=True)
    trials = load_study(spec).get_trials()
    assert [t.user_attrs.get(SEED_TRIAL) for t in trials] == [0, 1, None, None]
    assert [t.params["x"] for t in trials[:2]] == [-0.5, 0.25]
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4


def test_warm_trials_come_before_the_seed_trials(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    spec = make_spec(
        name="later",
        warm_start={"study": "earlier"},
        seed_trials=[{"x": 0.5}],
        budget={"max_trials": 2, "max_concurrent": 1},
    )
    run(spec)
    own = records(load_study(spec))
    assert [t.params["x"] for t in own][:1] == [0.5]
    assert own[0].number == 12


# --- a run killed halfway through -------------------------------------------------------------


def test_a_run_killed_while_telling_tells_only_the_rest_next_time(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    from tuner.warm_start import map_all, study_trials, tell

    spec = make_spec(name="later", warm_start={"study": "earlier"})
    assert spec.warm_start is not None
    source, found = study_trials(spec, spec.warm_start)
    mapped, _ = map_all(spec, found)
    study = optuna.create_study()
    tell(study, spec, mapped[:5], source)  # killed here: the study is not marked warm-started

    report = prepare(study, spec)
    assert report is not None
    assert report.used == 12
    refs = [t.user_attrs["tuner.warm_start_ref"] for t in study.trials]
    assert sorted(refs) == sorted(f"trial {t.number}" for t in earlier)


def test_a_run_killed_while_queueing_seeds_queues_only_the_rest_next_time(
    make_spec: Callable[..., Any],
) -> None:
    spec = make_spec(space=XY, seed_trials=SEEDS)
    study = optuna.create_study()
    study.enqueue_trial(SEEDS[0], user_attrs={SEED_TRIAL: 0})  # killed before the next one

    prepare(study, spec)
    assert [t.user_attrs[SEED_TRIAL] for t in study.trials] == [0, 1, 2]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING] * 3


def test_the_run_says_what_the_warm_start_told_the_strategy(
    make_spec: Callable[..., Any], earlier: list[TrialRecord]
) -> None:
    from rich.console import Console

    from tuner.progress import ProgressDisplay

    spec = make_spec(name="later", space=NARROWED, warm_start={"study": "earlier"})
    console = Console(record=True, width=200)
    display = ProgressDisplay(console)
    run(spec, listeners=[display])
    display.close()
    used = sum(t.params["x"] >= 0 for t in earlier)
    lines = console.export_text().splitlines()
    assert f"warm start: {used} trials from study earlier ({12 - used} dropped: " in "\n".join(
        lines[:3]
    )


# --- the strategy made after the warm start -------------------------------------------------

FLOATS = {
    "x": {"type": "float", "low": -2.0, "high": 2.0},
    "y": {"type": "float", "low": -1.0, "high": 1.0, "default": 0.0},
}


@pytest.mark.parametrize(("told", "first"), [(2, "random"), (3, "gp"), (12, "gp")])
def test_the_default_engine_proposes_from_three_earlier_trials_on(
    make_spec: Callable[..., Any], told: int, first: str
) -> None:
    pytest.importorskip("torch")
    run(make_spec(name="earlier", budget={"max_trials": 12, "max_concurrent": 2}))
    spec = make_spec(
        name="later",
        space=FLOATS,
        strategy={"type": "bayesian", "seed": 3},  # auto, its start-up unset
        warm_start={"study": "earlier", "max_trials": told},
        budget={"max_trials": 2, "max_concurrent": 1},
    )
    run(spec)
    engines = [t.engine for t in records(load_study(spec))]
    assert engines == [first, first]
    resumed = run(with_budget(spec, 3), resume=True)  # a resumed study knows them too
    assert resumed.counts[TrialState.COMPLETE] == 3
    assert records(load_study(spec))[-1].engine == first


def test_an_engine_that_cannot_be_made_leaves_the_study_as_it_was(
    make_spec: Callable[..., Any], earlier: list[TrialRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner import strategies
    from tuner.backend import MissingExtraError

    def missing(*args: Any) -> Any:
        raise MissingExtraError("torch", "gp", "the `gp` engine")

    spec = make_spec(
        name="later",
        strategy={"type": "bayesian", "engine": "gp"},
        warm_start={"study": "earlier"},
        seed_trials=[{"x": 0.5}],
    )
    with monkeypatch.context() as patched:
        patched.setitem(strategies.ENGINES, "gp", missing)
        with pytest.raises(MissingExtraError):
            run(spec)
    assert load_study(spec).get_trials() == []  # nothing told, nothing queued
    pytest.importorskip("torch")
    summary = run(spec)  # installed now: it runs as a new study, not one to resume
    assert summary.counts[TrialState.COMPLETE] == 6
    assert records(load_study(spec))[0].engine == "seed"
