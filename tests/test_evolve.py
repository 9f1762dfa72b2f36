"""A study continued with a changed spec: changes that keep its history meaningful are taken,
the others refused with the exact difference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuner
from conftest import ROOT, run_tuner
from tuner.evolve import SpecChangeError
from tuner.orchestrator import Orchestrator
from tuner.records import TrialState
from tuner.store import load_study, location, records

BASE: dict[str, Any] = {
    "name": "evolving",
    "objective": {"metric": "loss"},
    "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
    "strategy": {"type": "random", "seed": 3},
    "budget": {"max_trials": 5, "max_concurrent": 1},
    "trial": {"function": "examples.functions:quadratic"},
    "backend": {"type": "inprocess"},
    "tracking": {"mlflow": None},
}


def spec_of(**changes: Any) -> tuner.StudySpec:
    data = {**BASE, **changes}
    return tuner.spec.load_spec_text(yaml.safe_dump(data), "study.yaml", str(ROOT))


@pytest.fixture
def finished() -> tuner.StudySpec:
    """A study that ran its five trials."""
    spec = spec_of()
    Orchestrator(spec).run()
    return spec


ACCEPTED: dict[str, dict[str, Any]] = {
    "a wider range": {"space": {"x": {"type": "float", "low": -3.0, "high": 3.0}}},
    "a new parameter with a default": {
        "space": {
            "x": {"type": "float", "low": -1.0, "high": 1.0},
            "y": {"type": "float", "low": -1.0, "high": 1.0, "default": 0.0},
        }
    },
    "a longer budget": {"budget": {"max_trials": 8, "max_concurrent": 2}},
    "another strategy": {"strategy": {"type": "bayesian", "engine": "tpe", "seed": 1}},
    "another backend configuration": {"backend": {"type": "inprocess", "workers": 2}},
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_a_change_that_keeps_the_history_is_accepted(finished: tuner.StudySpec, case: str) -> None:
    changed = spec_of(**{"budget": {"max_trials": 8, "max_concurrent": 1}, **ACCEPTED[case]})
    orchestrator = Orchestrator(changed)
    summary = orchestrator.run(resume=True)

    assert summary.counts[TrialState.COMPLETE] == 8
    assert orchestrator.changes, "the difference is reported"
    kept = records(load_study(changed))[:5]
    assert all(t.state is TrialState.COMPLETE for t in kept)


@pytest.mark.ray
def test_a_study_run_in_process_goes_on_on_ray(finished: tuner.StudySpec, ray_cluster: Any) -> None:
    changed = spec_of(backend={"type": "ray"}, budget={"max_trials": 8, "max_concurrent": 1})
    orchestrator = Orchestrator(changed)
    summary = orchestrator.run(resume=True)

    assert "backend.type: inprocess -> ray" in [str(c) for c in orchestrator.changes]
    assert summary.counts[TrialState.COMPLETE] == 8
    nodes = [t.node for t in records(load_study(changed))]
    assert nodes[:5] == ["local-thread"] * 5  # the earlier trials, kept as they ran
    assert "local-thread" not in nodes[5:]  # the new ones ran on Ray


def test_a_new_choice_rewrites_the_study_and_keeps_every_trial(mlflow_uri: str) -> None:
    x = BASE["space"]["x"]
    tracked = {"mlflow": {"tracking_uri": mlflow_uri}}
    one = {"x": x, "k": {"type": "categorical", "choices": ["a"]}}
    Orchestrator(spec_of(space=one, tracking=tracked)).run()
    before = load_study(spec_of(space=one))
    runs = {k: v for k, v in before.user_attrs.items() if k.startswith("tuner.mlflow_run_id")}
    earlier = [(t.params, t.values) for t in before.trials]

    wider = {"x": x, "k": {"type": "categorical", "choices": ["a", "b"]}}
    changed = spec_of(space=wider, budget={"max_trials": 9}, tracking=tracked)
    orchestrator = Orchestrator(changed)
    summary = orchestrator.run(resume=True)

    assert [str(c) for c in orchestrator.changes] == [
        "space.k.choices: [a] -> [a, b]",
        "budget.max_trials: 5 -> 9",
    ]
    assert summary.counts[TrialState.COMPLETE] == 9
    after = load_study(changed)
    assert [(t.params, t.values) for t in after.trials[:5]] == earlier
    assert {k: after.user_attrs[k] for k in runs} == runs  # the MLflow runs stay the trials'
    assert {t.params["k"] for t in after.trials[5:]} <= {"a", "b"}


def test_a_rewrite_cut_short_by_a_crash_is_finished_or_undone(finished: tuner.StudySpec) -> None:
    from tuner import migrate
    from tuner.store import open_storage

    storage = open_storage(finished)
    before = [t.params for t in load_study(finished).trials]
    side = "evolving" + migrate.SIDE
    migrate._copy(storage, storage.get_study_id_from_name("evolving"), side, None)
    migrate.recover(storage, "evolving")  # not marked complete: dropped, the study untouched
    assert [t.params for t in load_study(finished).trials] == before
    assert side not in [s.study_name for s in storage.get_all_studies()]

    migrate._copy(storage, storage.get_study_id_from_name("evolving"), side, None)
    storage.set_study_system_attr(storage.get_study_id_from_name(side), migrate.COMPLETE, True)
    storage.delete_study(storage.get_study_id_from_name("evolving"))  # killed here
    summary = Orchestrator(spec_of(budget={"max_trials": 6})).run(resume=True)
    assert summary.finished == 6
    assert [t.params for t in load_study(finished).trials[:5]] == before


REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "a renamed metric": ({"objective": {"metric": "error"}}, "objective", "measured"),
    "a changed direction": (
        {"objective": {"metric": "loss", "direction": "maximize"}},
        "objective",
        "ranked",
    ),
    "a range that excludes finished trials": (
        {"space": {"x": {"type": "float", "low": 0.9, "high": 1.0}}},
        "space.x.low",
        "have values it excludes",
    ),
    "a new parameter without a default": (
        {
            "space": {
                "x": {"type": "float", "low": -1.0, "high": 1.0},
                "y": {"type": "float", "low": -1.0, "high": 1.0},
            }
        },
        "space.y",
        "needs a `default:`",
    ),
    "a removed parameter": (
        {"space": {"z": {"type": "float", "low": -1.0, "high": 1.0, "default": 0.0}}},
        "space.x",
        "vary it",
    ),
    "a new constraint": ({"constraints": ["loss <= 0.5"]}, "constraints", "judged"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_change_that_alters_the_history_is_refused_with_the_difference(
    finished: tuner.StudySpec, case: str
) -> None:
    changes, field, reason = REFUSED[case]
    with pytest.raises(SpecChangeError) as caught:
        Orchestrator(spec_of(**changes)).run(resume=True)
    fields = {c.field: c for c in caught.value.refused}
    assert field in fields, fields
    assert reason in (fields[field].problem or "")
    assert "warm_start: {study: evolving}" in str(caught.value)
    assert len(records(load_study(finished))) == 5  # nothing ran


@pytest.fixture
def warm_started() -> tuner.StudySpec:
    """A finished study that learned from the study `source` and ran one seed trial first."""
    Orchestrator(spec_of(name="source")).run()
    spec = spec_of(warm_start={"study": "source"}, seed_trials=[{"x": 0.5}])
    Orchestrator(spec).run()
    return spec


WARM: dict[str, Any] = {"warm_start": {"study": "source"}, "seed_trials": [{"x": 0.5}]}
STARTS: dict[str, tuple[dict[str, Any], str]] = {
    "another source": (
        {**WARM, "warm_start": {"study": "elsewhere"}},
        "warm_start.study: source -> elsewhere",
    ),
    "fewer earlier trials": (
        {**WARM, "warm_start": {"study": "source", "max_trials": 2}},
        "warm_start.max_trials: unset -> 2",
    ),
    "no warm start": ({**WARM, "warm_start": None}, "warm_start: {study: source} -> none"),
    "another seed": (
        {**WARM, "seed_trials": [{"x": 0.25}]},
        "seed_trials.0: {x: 0.5} -> {x: 0.25}",
    ),
    "one more seed": (
        {**WARM, "seed_trials": [{"x": 0.5}, {"x": 0.25}]},
        "seed_trials.1: absent -> {x: 0.25}",
    ),
    "no seeds": ({**WARM, "seed_trials": []}, "seed_trials.0: {x: 0.5} -> removed"),
}


@pytest.mark.parametrize("case", list(STARTS))
def test_a_changed_warm_start_or_seed_is_refused_as_it_acted_when_the_study_began(
    warm_started: tuner.StudySpec, case: str
) -> None:
    changes, shown = STARTS[case]
    saved = location(warm_started).spec.read_text()
    before = load_study(warm_started)
    trials, attrs = len(before.trials), dict(before.user_attrs)

    with pytest.raises(SpecChangeError) as caught:
        Orchestrator(spec_of(**changes, budget={"max_trials": 8})).run(resume=True)

    assert [str(c).split(" (")[0] for c in caught.value.refused] == [shown]
    assert "when the study began" in (caught.value.refused[0].problem or "")
    assert "it changes how the study began" in str(caught.value)
    assert "warm_start: {study: evolving}" in str(caught.value)
    after = load_study(warm_started)  # nothing written: no trial, no attribute, the same spec
    assert (len(after.trials), dict(after.user_attrs)) == (trials, attrs)
    assert location(warm_started).spec.read_text() == saved


def test_a_warm_start_and_seeds_added_on_resume_act_before_the_next_proposal(
    finished: tuner.StudySpec,
) -> None:
    Orchestrator(spec_of(name="source")).run()
    changed = spec_of(**WARM, budget={"max_trials": 7})
    orchestrator = Orchestrator(changed)
    summary = orchestrator.run(resume=True)

    assert [str(c) for c in orchestrator.changes] == [
        "budget.max_trials: 5 -> 7",
        "warm_start: none -> {study: source}",
        "seed_trials: none -> [{x: 0.5}]",
    ]
    assert orchestrator.warm_start is not None
    assert orchestrator.warm_start.used == 5
    assert summary.counts[TrialState.COMPLETE] == 7
    assert [t.params["x"] for t in records(load_study(changed))][5] == 0.5  # the seed, first


def test_a_narrowed_range_that_keeps_every_finished_trial_is_accepted(
    finished: tuner.StudySpec,
) -> None:
    values = [t.params["x"] for t in records(load_study(finished))]
    low, high = min(values), max(values)
    narrowed = spec_of(space={"x": {"type": "float", "low": low, "high": high}})
    assert Orchestrator(narrowed).run(resume=True).finished == 5


def test_the_cli_shows_the_changes_and_runs_more_trials(tmp_path: Path) -> None:
    spec = tmp_path / "study.yaml"
    spec.write_text(json.dumps(BASE))
    assert run_tuner("run", str(spec), cwd=tmp_path).returncode == 0

    wider = tmp_path / "wider.yaml"
    wider.write_text(
        json.dumps({**BASE, "space": {"x": {"type": "float", "low": -2.0, "high": 2.0}}})
    )
    ran = run_tuner("resume", "evolving", "--spec", str(wider), "--max-trials", "3", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "changed space.x.low: -1.0 -> -2.0" in ran.stdout
    assert "8 complete" in ran.stdout  # three more than the five it had

    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(json.dumps({**BASE, "objective": {"metric": "error"}}))
    refused = run_tuner("resume", "evolving", "--spec", str(renamed), cwd=tmp_path)
    assert refused.returncode == 2
    assert "objective: minimize loss -> minimize error" in refused.stdout + refused.stderr

    other = tmp_path / "other.yaml"
    other.write_text(json.dumps({**BASE, "name": "another"}))
    named = run_tuner("resume", "evolving", "--spec", str(other), cwd=tmp_path)
    assert named.returncode == 2
    assert "names study `another`, not `evolving`" in named.stdout + named.stderr


def test_the_strategy_learns_from_earlier_trials_in_the_space_as_it_is_now(
    finished: tuner.StudySpec,
) -> None:
    from optuna.search_space import IntersectionSearchSpace

    from tuner.store import open_study
    from tuner.strategies import make_sampler

    changed = spec_of(
        space={
            "x": {"type": "float", "low": -3.0, "high": 3.0},
            "y": {"type": "float", "low": -1.0, "high": 1.0, "default": 0.25},
        },
        strategy={"type": "bayesian", "engine": "tpe", "seed": 1},
    )
    study = open_study(changed)
    raw = IntersectionSearchSpace().calculate(study)
    assert "y" not in raw  # what optuna's samplers would see: x changed, y missing

    sampler = make_sampler(changed.strategy, changed.search_space, 0)
    view = sampler._history.view(study)
    earlier = view.get_trials()
    assert all(t.params["y"] == 0.25 for t in earlier)
    assert all(t.distributions == changed.search_space.distributions() for t in earlier)
    assert set(IntersectionSearchSpace().calculate(view)) == {"x", "y"}
    assert [t.params["x"] for t in earlier] == [t.params["x"] for t in study.trials]


def test_a_study_whose_space_never_changed_is_read_as_it_is(finished: tuner.StudySpec) -> None:
    from tuner.store import open_study
    from tuner.strategies import make_sampler

    study = open_study(finished)
    sampler = make_sampler(finished.strategy, finished.search_space, 0)
    assert sampler._history.view(study) is study
