"""The Python API: `tuner.Study` reads like the YAML, checks as the YAML, runs as the YAML."""

from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import tuner
from conftest import ROOT, run_tuner
from tuner.spec import BayesianStrategy, SpecError, load_spec_text

BASE: dict[str, Any] = {
    "name": "api",
    "objective": {"metric": "loss", "direction": "minimize"},
    "space": {"x": {"type": "float", "low": -2.0, "high": 2.0}},
    "strategy": {"type": "random", "seed": 7},
    "budget": {"max_trials": 6, "max_concurrent": 2},
    "trial": {"function": "examples.functions:quadratic"},
    "backend": {"type": "inprocess"},
    "tracking": {"mlflow": None},
}


def quadratic(params: dict[str, Any]) -> dict[str, float]:
    return {"loss": (params["x"] - 0.5) ** 2}


def shifted(params: dict[str, Any], offset: float) -> dict[str, float]:
    return {"loss": (params["x"] - offset) ** 2}


def python_study(**changes: Any) -> tuner.Study:
    args: dict[str, Any] = {
        "name": "api",
        "trial": quadratic,
        "space": {"x": tuner.Float(-2.0, 2.0)},
        "objective": "loss",
        "strategy": "random",
        "seed": 7,
        "max_trials": 6,
        "max_concurrent": 2,
        "backend": "inprocess",
        "tracking": None,
    }
    args.update(changes)
    return tuner.Study(**args)


# --- the same spec, the same checks ---------------------------------------------------------


BAD = {
    "a range upside down": {"space": {"x": {"type": "float", "low": 5, "high": 1}}},
    "an unknown engine": {"strategy": {"type": "bayesian", "engine": "tpee"}},
    "no trials at all": {"budget": {"max_trials": 0}},
    "a misspelt budget key": {"budget": {"max_trails": 5}},
    "an unknown backend": {"backend": {"type": "rayy"}},
    "a reserved metric": {"objective": {"metric": "tuner.loss"}},
    "a grid over a continuous float": {"strategy": {"type": "grid"}},
    "a function that is not there": {"trial": {"function": "examples.functions:quadratik"}},
    "an infinite bound": {"space": {"x": {"type": "float", "low": 0, "high": float("inf")}}},
}


@pytest.mark.parametrize("case", list(BAD))
def test_python_and_yaml_report_the_same_problems(case: str) -> None:
    sections = {**BASE, **BAD[case]}
    with pytest.raises(SpecError) as from_yaml:
        load_spec_text(yaml.safe_dump(sections), "study.yaml", str(ROOT))
    with pytest.raises(SpecError) as from_python:
        tuner.Study(**sections)

    def problems(error: SpecError) -> list[tuple[str, str]]:
        return sorted((issue.field, issue.message) for issue in error.issues)

    assert problems(from_python.value) == problems(from_yaml.value)
    assert all(issue.path == "tuner.Study" for issue in from_python.value.issues)
    assert all(issue.line is not None for issue in from_yaml.value.issues)


LOG_FROM_ZERO = {"type": "float", "low": 0, "high": 1, "log": True}


def test_a_parameter_built_wrong_says_so_in_the_words_of_the_spec() -> None:
    with pytest.raises(SpecError) as from_yaml:
        load_spec_text(
            yaml.safe_dump({**BASE, "space": {"lr": LOG_FROM_ZERO}}),
            "study.yaml",
            str(ROOT),
        )
    with pytest.raises(tuner.InputError) as from_python:
        tuner.Float(0, 1, log=True)
    assert from_yaml.value.issues[0].message in str(from_python.value)
    assert str(from_python.value).startswith("tuner.Float(")


def test_every_problem_is_reported_at_once_with_its_field() -> None:
    with pytest.raises(SpecError) as caught:
        python_study(strategy="bayesan", max_trials=0, backend="rayy")
    fields = {issue.field for issue in caught.value.issues}
    assert {"strategy.engine", "budget.max_trials", "backend"} <= fields


def test_a_study_needs_a_name_unless_its_function_has_one() -> None:
    assert python_study(name=None).name == "quadratic"
    with pytest.raises(SpecError, match=r"name.*required"):
        python_study(name=None, trial=lambda params: params["x"])


def test_an_unknown_keyword_is_a_type_error_as_in_any_python_call() -> None:
    with pytest.raises(TypeError, match="maxtrials"):
        tuner.Study(name="api", maxtrials=3)  # type: ignore[call-arg]


# --- short forms ---------------------------------------------------------------------------


def test_short_forms_expand_to_the_sections_they_stand_for() -> None:
    spec = python_study(
        objective="accuracy",
        direction="maximize",
        strategy="tpe",
        seed=3,
        max_time="10m",
        pruner="median",
        tracking="sqlite:///runs.db",
        storage="studies",
    ).spec
    assert spec.objective.metric == "accuracy"
    assert spec.objective.direction.value == "maximize"
    assert isinstance(spec.strategy, BayesianStrategy)
    assert (spec.strategy.engine, spec.strategy.seed) == ("tpe", 3)
    assert spec.budget.max_time == 600
    assert spec.pruner.type == "median"
    assert spec.tracking.mlflow is not None
    assert spec.tracking.mlflow.tracking_uri == "sqlite:///runs.db"
    assert spec.storage.dir == "studies"
    assert python_study(storage="sqlite:///study.db").spec.storage.url == "sqlite:///study.db"
    bayesian = python_study(strategy="bayesian").spec.strategy
    assert isinstance(bayesian, BayesianStrategy)
    assert (bayesian.engine, bayesian.seed) == (None, 7)  # the default engine: auto


def test_sections_may_be_models_and_keyword_fields_change_them() -> None:
    from tuner.backends.ray import RayConfig

    spec = python_study(
        strategy=BayesianStrategy(engine="tpe", n_startup_trials=4),
        seed=11,
        budget={"max_trials": 10, "max_failures": 3},
        max_trials=20,
        backend=RayConfig(address="auto"),
    ).spec
    assert (spec.strategy.engine, spec.strategy.n_startup_trials, spec.strategy.seed) == (
        "tpe",
        4,
        11,
    )
    assert (spec.budget.max_trials, spec.budget.max_failures) == (20, 3)
    assert spec.backend.type == "ray"
    assert spec.backend.address == "auto"  # type: ignore[attr-defined]


# --- YAML and back -------------------------------------------------------------------------


def machine_folders(*more: Path) -> list[str]:
    """Absolute folders of this machine that portable YAML must not name."""
    return [str(p) for p in (ROOT, Path.cwd(), *more)]


@pytest.mark.parametrize("where", [".", "specs"], ids=["the working folder", "a folder below"])
def test_a_python_study_written_as_yaml_reads_back_the_same(tmp_path: Path, where: str) -> None:
    study = python_study(
        trial="examples.functions:quadratic", pruner={"type": "median"}, tracking=None
    )
    path = tmp_path / where / "study.yaml"
    path.parent.mkdir(exist_ok=True)
    text = study.to_yaml(path)
    assert path.read_text() == text
    for folder in machine_folders(tmp_path):
        assert folder not in text
    again = tuner.Study.from_yaml(path)
    assert again.spec.model_dump(exclude={"trial"}) == study.spec.model_dump(exclude={"trial"})
    assert again.spec.trial.model_dump(exclude={"path"}) == study.spec.trial.model_dump(
        exclude={"path"}
    )
    # it imports from the reader's working folder and the file's own, as any YAML spec does
    folders = dict.fromkeys([os.getcwd(), str(path.parent)])
    assert again.spec.trial.entry.search_path == tuple(folders)
    assert again.to_yaml() == text
    assert again.to_yaml(path) == text
    assert "when" not in text
    assert "max_failures" not in text


def test_yaml_written_from_the_functions_folder_reads_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "mymodel.py").write_text("def fit(params):\n    return params['x'] ** 2\n")
    monkeypatch.chdir(project)
    text = python_study(trial="mymodel:fit").to_yaml(project / "specs" / "study.yaml")
    assert str(tmp_path) not in text
    assert yaml.safe_load(text)["trial"]["path"] == [".."]  # where mymodel is, from the file

    moved = tmp_path / "elsewhere" / "project"  # the tree on another machine, read from below
    moved.parent.mkdir()
    project.rename(moved)
    monkeypatch.chdir(moved / "specs")
    monkeypatch.delitem(sys.modules, "mymodel", raising=False)
    loaded = tuner.load_spec(moved / "specs" / "study.yaml")  # imports mymodel to check it
    assert str(moved) in loaded.trial.entry.search_path


@pytest.mark.parametrize("example", ["quickstart", "command"])
def test_a_yaml_study_written_back_names_no_folder_of_this_machine(
    tmp_path: Path, example: str
) -> None:
    source = ROOT / "examples" / example / "study.yaml"
    study = tuner.Study.from_yaml(source)
    beside = study.to_yaml()  # for its own folder
    copy = tmp_path / "copy" / "study.yaml"
    copy.parent.mkdir()
    elsewhere = study.to_yaml(copy)
    for folder in machine_folders(tmp_path):
        assert folder not in beside
    assert str(tmp_path) not in elsewhere
    assert tuner.Study.from_yaml(copy).to_yaml() == elsewhere
    moved = tuner.load_spec(copy).trial.entry
    if example == "command":  # the copy runs the script in the example's folder still
        assert "workdir" not in beside
        assert not os.path.isabs(yaml.safe_load(elsewhere)["trial"]["workdir"])
        assert moved == study.spec.trial.entry
    else:  # the copy imports from the example's folder still, and from its own
        assert "path" not in beside
        assert set(study.spec.trial.entry.search_path) <= set(moved.search_path)


def test_a_yaml_study_changed_in_python_keeps_the_rest() -> None:
    path = ROOT / "examples" / "quickstart" / "study.yaml"
    study = tuner.Study.from_yaml(path, max_trials=4, backend="inprocess", strategy="random")
    original = tuner.load_spec(path)
    assert study.spec.budget.max_trials == 4
    assert study.spec.budget.max_concurrent == original.budget.max_concurrent
    assert study.spec.strategy.type == "random"
    assert study.spec.space == original.space
    assert study.spec.trial.entry == original.trial.entry  # imported from the same folders


def test_from_yaml_reports_problems_with_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "budget": {"max_trials": -1}}))
    with pytest.raises(SpecError) as caught:
        tuner.Study.from_yaml(path)
    issue = caught.value.issues[0]
    assert (issue.path, issue.field) == (str(path), "budget.max_trials")
    assert issue.line is not None


@pytest.mark.parametrize(
    "function",
    [lambda params: 0.0, functools.partial(shifted, offset=1.0), quadratic],
    ids=["lambda", "partial", "a test module's function"],
)
def test_code_yaml_cannot_name_is_refused_with_what_to_do(function: Any) -> None:
    study = python_study(trial=function)
    if function is quadratic:
        assert "test_study:quadratic" in study.to_yaml()  # importable from the tests folder
        return
    with pytest.raises(tuner.InputError, match="move it into a module"):
        study.to_yaml()


# --- running ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "concurrent"),
    [
        ({"type": "random", "seed": 7}, 2),
        # one at a time, so each proposal sees the same finished trials on both sides
        ({"type": "bayesian", "engine": "tpe", "seed": 3, "n_startup_trials": 4}, 1),
    ],
    ids=["random", "tpe"],
)
def test_python_and_yaml_studies_run_the_same_trials_for_the_same_seed(
    tmp_path: Path, strategy: dict[str, Any], concurrent: int
) -> None:
    study = python_study(strategy=strategy, seed=None, max_trials=10, max_concurrent=concurrent)
    folder = tmp_path / "yaml-user"
    folder.mkdir()
    study.to_yaml(folder / "study.yaml")

    from_python = study.run(progress=False)
    done = run_tuner("run", "study.yaml", cwd=folder)  # as a YAML user runs it
    assert done.returncode == 0, done.stdout + done.stderr
    from_yaml = tuner.load("api", dir=str(folder / "tuner-studies"))

    def trials(result: tuner.StudyResult) -> list[tuple[Any, ...]]:
        return [(t.number, t.state, dict(t.params), t.value, t.engine) for t in result.records]

    assert len(from_python.records) == 10  # for tpe, 6 after its 4 random start-up trials
    assert trials(from_yaml) == trials(from_python)


@pytest.mark.parametrize(
    "function",
    [
        quadratic,
        lambda params: {"loss": (params["x"] - 0.5) ** 2},
        functools.partial(shifted, offset=0.5),
        "test_study:quadratic",
    ],
    ids=["function", "lambda", "partial", "reference"],
)
def test_any_kind_of_trial_function_runs(function: Any) -> None:
    result = python_study(trial=function).run(progress=False)
    assert result.counts[tuner.TrialState.COMPLETE] == 6
    assert result.best is not None
    assert result.best.value == pytest.approx((result.best.params["x"] - 0.5) ** 2)


def test_a_closure_over_notebook_data_runs_on_ray_workers(ray_cluster: Any) -> None:
    data = [0.1 * i for i in range(10)]  # what a notebook cell would have loaded

    def fit(params: dict[str, Any]) -> dict[str, float]:
        return {"loss": sum((x - params["x"]) ** 2 for x in data) / len(data)}

    result = python_study(trial=fit, backend="ray", max_trials=8).run(progress=False)
    assert result.counts[tuner.TrialState.COMPLETE] == 8
    assert result.trials["node"].notna().all()


def test_the_result_has_the_best_trial_a_table_and_plots(mlflow_uri: str) -> None:
    def train(params: dict[str, Any]) -> dict[str, float]:
        tuner.report(step=0, loss=1.0)
        return {"loss": (params["x"] - 0.5) ** 2, "width": params["width"] * 2.0}

    study = python_study(
        trial=train,
        space={"x": tuner.Float(-2.0, 2.0), "width": tuner.Int(1, 4)},
        tracking={"mlflow": {"tracking_uri": mlflow_uri}},
    )
    result = study.run(progress=False)

    trials = result.trials
    assert isinstance(trials, pd.DataFrame)
    assert list(trials.columns) == [
        "number",
        "state",
        "value",
        "x",
        "param.width",
        "loss",
        "metric.width",
        "seconds",
        "attempts",
        "node",
        "cost",
        "engine",
        "run_id",
    ]  # fmt: skip  (a parameter and a metric both named `width` are told apart)
    assert len(trials) == 6
    assert set(trials["state"]) == {"COMPLETE"}
    assert (trials["metric.width"] == trials["param.width"] * 2.0).all()
    assert (trials["seconds"] >= 0).all()
    assert (trials["attempts"] == 1).all()
    assert (trials["engine"] == "random").all()  # the engine that proposed each trial
    best = result.best
    assert best is not None
    assert best.value == trials["value"].min()
    assert best.params == {"x": best.params["x"], "width": best.params["width"]}
    assert best.metrics["width"] == best.params["width"] * 2.0
    assert best.run_id is not None
    assert best.run_id == trials.loc[best.number, "run_id"]

    import mlflow

    run = mlflow.MlflowClient(mlflow_uri).get_run(best.run_id)
    assert float(run.data.params["x"]) == pytest.approx(best.params["x"])

    for figure in (
        result.plot_history(),
        result.plot_parallel_coordinates(),
        result.plot_importances(),
        result.plot_intermediate_values(),
    ):
        assert figure.data, "a figure with nothing drawn"
        assert "api" in figure.layout.title.text
    assert "best: trial" in repr(result)
    assert "best: trial" in result._repr_html_()


def test_load_reads_any_study_back_as_the_run_returned_it() -> None:
    result = python_study().run(progress=False)
    loaded = tuner.load("api", dir=python_study().spec.storage.dir)
    assert loaded.best == result.best
    assert loaded.trials.equals(result.trials)
    with pytest.raises(tuner.StudyNotFoundError):
        tuner.load("no-such-study")


class Gate:
    """Holds a study's second trial until the test lets it go."""

    def __init__(self) -> None:
        self.calls = 0
        self.second_started = threading.Event()
        self.release = threading.Event()


def held_second(params: dict[str, Any], gate: Gate) -> dict[str, float]:
    gate.calls += 1
    if gate.calls == 2:
        gate.second_started.set()
        gate.release.wait(timeout=60)
    return quadratic(params)


def load_while_the_second_trial_runs() -> tuple[tuner.StudyResult, tuner.StudyResult]:
    """``tuner.load("api")`` while a study of 3 trials runs its second; and its final result."""
    gate = Gate()
    trial = functools.partial(held_second, gate=gate)
    study = python_study(trial=trial, max_trials=3, max_concurrent=1)
    ended: list[tuner.StudyResult] = []
    runner = threading.Thread(target=lambda: ended.append(study.run(progress=False)))
    runner.start()
    try:
        assert gate.second_started.wait(timeout=60), "the second trial never started"
        running = tuner.load("api")
    finally:
        gate.release.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert ended, "the study raised; see the thread's traceback above"
    return running, ended[0]


def test_load_reads_a_study_while_it_runs() -> None:
    running, ended = load_while_the_second_trial_runs()
    assert list(running.trials["state"]) == ["COMPLETE", "RUNNING"]
    assert pd.isna(running.trials.loc[1, "value"])
    assert running.best is not None
    assert (running.best.number, running.best.value) == (0, running.records[0].value)
    assert "best: trial 0" in repr(running)

    assert list(ended.trials["state"]) == ["COMPLETE"] * 3
    assert list(tuner.load("api").trials["state"]) == ["COMPLETE"] * 3


def test_a_running_studys_counts_show_its_running_trial() -> None:
    running, _ = load_while_the_second_trial_runs()
    assert running.counts[tuner.TrialState.RUNNING] == 1


def test_load_reads_a_study_whose_function_is_a_lambda() -> None:
    result = python_study(trial=lambda params: quadratic(params)).run(progress=False)
    assert tuner.load("api").best == result.best


def test_load_finds_a_study_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = python_study().run(progress=False)
    studies = tmp_path / "tuner-studies"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert tuner.load("api", dir=str(studies)).best == result.best
    assert tuner.load(str(studies / "api")).best == result.best


def test_running_again_asks_whether_to_continue_or_start_over() -> None:
    study = python_study(max_trials=3)
    first = study.run(progress=False)
    with pytest.raises(tuner.StudyExistsError, match=r"resume=True.*overwrite=True"):
        study.run(progress=False)

    more = tuner.Study(study.spec, max_trials=5).run(resume=True, progress=False)
    assert [t.params for t in more.records[:3]] == [t.params for t in first.records]
    assert len(more.records) == 5

    again = study.run(overwrite=True, progress=False)
    assert len(again.records) == 3
    with pytest.raises(tuner.InputError, match="not both"):
        study.run(resume=True, overwrite=True)


def test_the_terminal_display_shows_each_trial(capsys: pytest.CaptureFixture[str]) -> None:
    python_study().run()
    out = capsys.readouterr().out
    assert "api: starting" in out
    assert out.count("loss=") >= 6
    assert "\x1b[" not in out  # not a terminal: no escape codes
