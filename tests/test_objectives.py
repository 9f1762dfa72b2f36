"""Several objectives, constraints: the Pareto front, feasibility, early stopping on one."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import mlflow
import pytest

import tuner
from conftest import run_tuner
from tuner.orchestrator import Orchestrator
from tuner.records import TrialRecord, TrialState
from tuner.spec import SpecError
from tuner.store import load_study, records

SPACE = {
    "width": {"type": "int", "low": 4, "high": 64},
    "depth": {"type": "int", "low": 1, "high": 4},
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
}
TWO = [{"metric": "error"}, {"metric": "latency_ms"}]


def two_objective_spec(make_spec: Any, **sections: Any) -> Any:
    return make_spec(
        name="tradeoff",
        objective=TWO,
        space=SPACE,
        strategy={"type": "bayesian", "engine": "tpe", "seed": 3, "n_startup_trials": 5},
        budget={"max_trials": 16, "max_concurrent": 2},
        trial={"function": "examples.functions:accuracy_vs_latency"},
        **sections,
    )


def brute_force_front(trials: list[TrialRecord]) -> set[int]:
    """Trials no other trial beats in both objectives (all minimised), the slow way."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and not t.infeasible]

    def beats(a: TrialRecord, b: TrialRecord) -> bool:
        av, bv = a.values, b.values
        assert av is not None
        assert bv is not None
        pairs = list(zip(av, bv, strict=True))
        return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

    return {t.number for t in done if not any(beats(o, t) for o in done)}


def test_a_two_objective_study_reports_its_pareto_front(make_spec: Any) -> None:
    spec = two_objective_spec(make_spec)
    summary = Orchestrator(spec, tracker=None).run()

    trials = records(load_study(spec))
    assert summary.counts[TrialState.COMPLETE] == 16
    assert all(t.values is not None and len(t.values) == 2 for t in trials)
    assert {t.number for t in summary.front} == brute_force_front(trials)
    assert summary.best is None  # several objectives: no single best
    assert 1 <= len(summary.front) <= 16


@pytest.mark.parametrize("engine", ["auto", "nsga2", "gp", "qmc"])
def test_every_engine_for_several_objectives_finds_a_feasible_front(
    make_spec: Any, engine: str
) -> None:
    if engine == "gp":
        pytest.importorskip("torch")
    spec = two_objective_spec(
        make_spec,
        constraints=["memory_mb <= 600"],
    ).model_copy(update={"strategy": tuner.spec.BayesianStrategy(engine=engine, seed=2)})
    summary = Orchestrator(spec, tracker=None).run()

    trials = records(load_study(spec))
    assert summary.counts[TrialState.COMPLETE] == 16
    assert any(t.infeasible for t in trials)  # the bound cuts the space: some broke it
    assert {t.number for t in summary.front} == brute_force_front(trials)
    assert all(t.metrics["memory_mb"] <= 600 for t in summary.front)


def test_the_python_result_holds_the_front_and_plots_it(make_spec: Any) -> None:
    spec = two_objective_spec(make_spec)
    result = tuner.Study(spec).run(progress=False)

    assert isinstance(result.best, list)
    assert {b.number for b in result.best} == brute_force_front(list(result.records))
    assert set(result.best[0].values) == {"error", "latency_ms"}
    assert result.trials["pareto"].sum() == len(result.best)
    assert result.plot_pareto_front().data
    assert result.plot_history(metric="latency_ms").data
    with pytest.raises(ValueError, match="not an objective"):
        result.plot_history(metric="memory_mb")


def test_an_infeasible_trial_is_recorded_but_never_the_best(make_spec: Any) -> None:
    spec = make_spec(
        name="constrained",
        objective={"metric": "error"},
        constraints=["memory_mb <= 200"],
        space=SPACE,
        strategy={"type": "bayesian", "engine": "tpe", "seed": 5, "n_startup_trials": 6},
        budget={"max_trials": 20, "max_concurrent": 2},
        trial={"function": "examples.functions:accuracy_vs_latency"},
    )
    summary = Orchestrator(spec, tracker=None).run()

    trials = records(load_study(spec))
    infeasible = [t for t in trials if t.infeasible]
    assert infeasible, "the space is mostly infeasible: some trial must have broken the bound"
    assert all(t.metrics["memory_mb"] > 200 for t in infeasible)
    assert all("memory_mb <= 200" in (t.infeasible or "") for t in infeasible)
    feasible = [t for t in trials if t.state is TrialState.COMPLETE and not t.infeasible]
    assert summary.best is not None
    assert summary.best.metrics["memory_mb"] <= 200
    assert summary.best.value == min(t.value for t in feasible if t.value is not None)
    # optuna's constrained samplers see each trial's constraint values
    stored = load_study(spec).trials[infeasible[0].number]
    assert stored.system_attrs["constraints"][0] > 0


def test_early_stopping_watches_the_objective_the_spec_names(make_spec: Any) -> None:
    spec = two_objective_spec(
        make_spec,
        pruner={"type": "median", "objective": "error", "n_startup_trials": 3},
    )
    summary = Orchestrator(spec, tracker=None).run()

    assert summary.counts[TrialState.PRUNED] >= 1
    assert summary.finished == 16
    study = load_study(spec)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert all(t.intermediate_values for t in pruned)


@pytest.mark.parametrize(("watched", "stops"), [("latency_ms", True), ("error", False)])
def test_early_stopping_can_watch_an_objective_other_than_the_first(
    make_spec: Any, watched: str, stops: bool
) -> None:
    # Every trial reports the same error and its own latency at each step: only a pruner
    # watching the latency has anything to stop.
    spec = make_spec(
        name="watching",
        objective=TWO,
        space=SPACE,
        pruner={"type": "median", "objective": watched, "n_startup_trials": 3},
        strategy={"type": "random", "seed": 4},
        budget={"max_trials": 12, "max_concurrent": 1},
        trial={"function": "trial_functions:latency_grows_error_flat"},
    )
    summary = Orchestrator(spec, tracker=None).run()

    assert (summary.counts[TrialState.PRUNED] > 0) is stops
    trials = load_study(spec).trials
    for trial in trials:
        if trial.state.name != "PRUNED":
            continue
        # what the pruner saw is the latency, above the median of the trials finished before
        earlier = [t.values[1] for t in trials[: trial.number] if t.state.name == "COMPLETE"]
        latency = 2.0 + 0.05 * trial.params["width"] * trial.params["depth"]
        assert set(trial.intermediate_values.values()) == {latency}
        assert latency > statistics.median(earlier)


def test_front_trials_are_tagged_in_mlflow_with_a_front_table(
    make_spec: Any, mlflow_uri: str
) -> None:
    spec = two_objective_spec(
        make_spec,
        constraints=["memory_mb <= 600"],
        tracking={"mlflow": {"tracking_uri": mlflow_uri}},
    )
    summary = Orchestrator(spec).run()

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("tradeoff")
    runs = client.search_runs([experiment.experiment_id], "tags.`tuner.trial` != ''")
    by_number = {int(r.data.tags["tuner.trial"]): r for r in runs}
    front = {t.number for t in summary.front}
    for number, run in by_number.items():
        record = next(t for t in records(load_study(spec)) if t.number == number)
        if record.state is TrialState.COMPLETE:
            assert run.data.tags["tuner.pareto"] == str(number in front).lower()
        assert ("tuner.infeasible" in run.data.tags) == bool(record.infeasible)
    parent = load_study(spec).user_attrs["tuner.mlflow_parent_run_id"]
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert "pareto.csv" in artifacts
    assert "plots" in artifacts
    assert any("pareto_front" in a.path for a in client.list_artifacts(parent, "plots"))
    table = client.download_artifacts(parent, "pareto.csv")
    rows = Path(table).read_text().splitlines()
    assert rows[0].startswith("number,error,latency_ms")
    assert len(rows) - 1 == len(front)


def test_tuner_best_prints_the_front(tmp_path: Path) -> None:
    spec = tmp_path / "study.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "cli-front",
                "objective": TWO,
                "space": SPACE,
                "strategy": {"type": "random", "seed": 1},
                "budget": {"max_trials": 8, "max_concurrent": 2},
                "trial": {"function": "examples.functions:accuracy_vs_latency"},
                "backend": {"type": "inprocess"},
                "tracking": {"mlflow": None},
            }
        )
    )
    ran = run_tuner("run", str(spec), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Pareto front of cli-front" in ran.stdout
    shown = run_tuner("best", "cli-front", "--json", cwd=tmp_path)
    payload = json.loads(shown.stdout)
    assert [o["metric"] for o in payload["objectives"]] == ["error", "latency_ms"]
    assert payload["front"]
    assert set(payload["front"][0]["values"]) == {"error", "latency_ms"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"strategy": {"type": "bayesian", "engine": "skopt"}}, "strategy.engine", "tpe, gp"),
        ({"pruner": {"type": "median", "objective": "loss"}}, "pruner.objective", "error"),
        ({"objective": [*TWO, {"metric": "error"}]}, "objective.2.metric", "twice"),
        ({"objective": [*TWO, {"metric": "tuner.cost_usd"}]}, "objective", "price"),
        ({"constraints": ["memory <= lots"]}, "constraints.0", "memory_mb <= 4000"),
    ],
)
def test_objective_mistakes_name_the_field(
    make_spec: Any, change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        tuner.Study(two_objective_spec(make_spec), **change)
    issues = {i.field: i.message for i in caught.value.issues}
    assert field in issues, issues
    assert message in issues[field]


def test_a_warm_started_study_reports_only_its_own_trials(make_spec: Any, mlflow_uri: str) -> None:
    Orchestrator(two_objective_spec(make_spec), tracker=None).run()
    spec = two_objective_spec(
        make_spec,
        warm_start={"study": "tradeoff"},
        tracking={"mlflow": {"tracking_uri": mlflow_uri}},
    ).model_copy(update={"name": "later"})
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"max_trials": 4})})
    result = tuner.Study(spec).run(progress=False)

    own = {t.number for t in result.records}
    front = {t.number for t in result.summary.front}
    assert len(own) == 4
    assert front
    assert min(own) >= 16  # the 16 earlier trials came first, told and never run
    assert set(result.trials["number"]) == own
    plotted = {n for trace in result.plot_pareto_front().data for n in _numbers(trace)}
    assert plotted == own
    client = mlflow.MlflowClient(mlflow_uri)
    parent = load_study(spec).user_attrs["tuner.mlflow_parent_run_id"]
    for table, expected in (("trials.csv", own), ("pareto.csv", front)):
        rows = Path(client.download_artifacts(parent, table)).read_text().splitlines()[1:]
        assert {int(row.split(",")[0]) for row in rows} == expected, table


def test_a_warm_started_studys_history_plots_its_own_trials(make_spec: Any) -> None:
    Orchestrator(make_spec(name="earlier", budget={"max_trials": 8}), tracker=None).run()
    spec = make_spec(name="later", warm_start={"study": "earlier"}, budget={"max_trials": 3})
    result = tuner.Study(spec).run(progress=False)

    own = [t.number for t in result.records]
    assert own == [8, 9, 10]
    history = result.plot_history()
    drawn = {
        x
        for trace in history.data
        for x, y in zip(trace.x, trace.y, strict=True)
        if y is not None and math.isfinite(y)  # the best-value line starts at inf
    }
    assert sorted(drawn) == own


def _numbers(trace: Any) -> list[int]:
    """The trial numbers in an optuna Pareto-front plot's hover texts (JSON with <br>s)."""
    return [json.loads(text.replace("<br>", ""))["number"] for text in trace.text or ()]
