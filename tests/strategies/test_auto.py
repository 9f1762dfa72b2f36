"""The default engine chooses the engine for each proposal from the space and the history."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import optuna
import pytest

from tuner.space import Categorical, Float, Int, Space
from tuner.spec import BayesianStrategy
from tuner.strategies import PendingAwareSampler, Problem, make_sampler
from tuner.strategies._auto import AutoSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the GP needs torch (extra `gp`)"
)

PLANE = Space({"x": Float(-5.0, 5.0), "y": Float(-5.0, 5.0)})


def bowl(config: dict[str, Any]) -> float:
    return (config["x"] - 1.0) ** 2 + (config.get("y", 0.0) + 2.0) ** 2 + 0.1 * config.get("n", 0)


def auto(space: Space, *, gp_trials: int = 200, problem: Problem = Problem()) -> Any:
    sampler = make_sampler(BayesianStrategy(n_startup_trials=4, seed=1), space, 1, problem)
    assert isinstance(sampler.base, AutoSampler)
    sampler.base._gp_trials = gp_trials
    return sampler


def run(
    sampler: PendingAwareSampler, space: Space, trials: int, study: optuna.Study | None = None
) -> tuple[optuna.Study, list[str]]:
    """Runs ``trials`` trials one at a time; returns the study and who proposed each."""
    study = study or optuna.create_study(sampler=sampler)
    engines = []
    for _ in range(trials):
        trial = study.ask()
        config = space.suggest(trial)
        engines.append(sampler.engine_for(trial.number))
        study.tell(trial, bowl(config))
    return study, engines


@needs_torch
def test_a_space_of_floats_gets_the_gp_after_its_random_start() -> None:
    _, engines = run(auto(PLANE), PLANE, 7)
    assert engines == ["random"] * 4 + ["gp"] * 3


@pytest.mark.parametrize(
    "space",
    [
        Space({"x": Float(-5.0, 5.0), "n": Int(0, 8)}),
        Space({"x": Float(-5.0, 5.0), "y": Float(-5.0, 5.0, step=0.5)}),
        Space({"x": Float(-5.0, 5.0), "act": Categorical(["relu", "tanh"])}),
        Space(
            {
                "opt": Categorical(["sgd", "adam"]),
                "x": Float(-5.0, 5.0),
                "y": Float(-5.0, 5.0, when={"opt": "sgd"}),
            }
        ),
    ],
    ids=["integer", "stepped", "categorical", "conditional"],
)
def test_integer_categorical_and_conditional_spaces_get_tpe(space: Space) -> None:
    _, engines = run(auto(space), space, 7)
    assert engines == ["random"] * 4 + ["tpe"] * 3


def test_several_objectives_get_tpe() -> None:
    sampler = auto(PLANE, problem=Problem(objectives=2))
    study = optuna.create_study(sampler=sampler, directions=["minimize", "minimize"])
    for _ in range(6):
        trial = study.ask()
        config = PLANE.suggest(trial)
        study.tell(trial, [bowl(config), abs(config["x"])])
    assert sampler.engine_for(study.ask().number) == "tpe"


@needs_torch
def test_a_long_run_hands_over_to_cmaes_warm_started_from_the_history() -> None:
    sampler = auto(PLANE, gp_trials=12)
    study, engines = run(sampler, PLANE, 12)
    assert engines[-1] == "gp"
    best = study.best_value
    proposals = []
    for _ in range(8):
        trial = study.ask()
        config = PLANE.suggest(trial)
        assert sampler.engine_for(trial.number) == "cmaes"
        proposals.append(bowl(config))
        study.tell(trial, bowl(config))
    # CMA-ES started from the middle of the space with its default spread proposes around
    # (0, 0), a loss of about 5 and more; warm-started, it searches where the GP found the
    # best trials. A uniform draw's median loss here is about 17.
    assert np.median(proposals) < max(4 * best, 2.0), (best, proposals)


def test_a_one_parameter_space_hands_over_to_tpe() -> None:
    line = Space({"x": Float(-5.0, 5.0)})
    sampler = auto(line, gp_trials=6)
    _, engines = run(sampler, line, 8)
    assert engines[6:] == ["tpe", "tpe"]


@needs_torch
def test_a_resumed_long_run_goes_on_with_cmaes() -> None:
    storage = optuna.storages.InMemoryStorage()
    first = auto(PLANE, gp_trials=10)
    study = optuna.create_study(sampler=first, storage=storage, study_name="s")
    run(first, PLANE, 12, study)
    resumed = auto(PLANE, gp_trials=10)
    study = optuna.load_study(study_name="s", storage=storage, sampler=resumed)
    _, engines = run(resumed, PLANE, 3, study)
    assert engines == ["cmaes"] * 3


def test_without_torch_a_space_of_floats_gets_tpe(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    _, engines = run(auto(PLANE), PLANE, 6)
    assert engines == ["random"] * 4 + ["tpe"] * 2


def test_a_pending_configuration_drawn_again_is_labelled_random() -> None:
    space = Space({"act": Categorical(["relu", "tanh"])})
    sampler = auto(space)
    study = optuna.create_study(sampler=sampler)
    for _ in range(4):  # past the start-up trials
        trial = study.ask()
        study.tell(trial, 1.0 if space.suggest(trial)["act"] == "relu" else 2.0)
    pending = [study.ask() for _ in range(3)]
    for trial in pending:
        space.suggest(trial)
    # Both configurations are pending when the third trial is proposed: it is drawn again.
    labels = [sampler.engine_for(trial.number) for trial in pending]
    assert labels[0] == "tpe"
    assert labels[2] == "random"


@needs_torch
def test_without_cmaes_a_long_run_hands_over_to_tpe(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a)
    )
    _, engines = run(auto(PLANE, gp_trials=6), PLANE, 8)
    assert engines == ["random"] * 4 + ["gp"] * 2 + ["tpe"] * 2


def test_with_trials_in_flight_the_model_proposes_once_enough_have_started() -> None:
    """Random start-up trials count as they start: with six in flight and three completed,
    the seventh is the model's, not a seventh blind draw."""
    space = Space({"x": Float(-5.0, 5.0), "n": Int(0, 8)})
    sampler = make_sampler(BayesianStrategy(n_startup_trials=6, seed=1), space, 1)
    study = optuna.create_study(sampler=sampler)
    running = []
    for _ in range(6):
        trial = study.ask()
        running.append((trial, space.suggest(trial)))
    assert [sampler.engine_for(t.number) for t, _ in running] == ["random"] * 6

    def finish_one() -> None:
        trial, config = running.pop(0)
        study.tell(trial, bowl(config))

    finish_one()
    finish_one()
    trial = study.ask()  # two completed: too few for a model
    running.append((trial, space.suggest(trial)))
    assert sampler.engine_for(trial.number) == "random"
    finish_one()
    trial = study.ask()  # three completed, seven started
    space.suggest(trial)
    assert sampler.engine_for(trial.number) == "tpe"


@needs_torch
def test_a_constrained_long_run_stays_with_tpe() -> None:
    # CMA-ES ignores constraints: a study with some hands over to TPE, which learns them.
    sampler = make_sampler(
        BayesianStrategy(n_startup_trials=4, seed=1), PLANE, 1, Problem(constraints=1)
    )
    sampler.base._gp_trials = 6
    _, engines = run(sampler, PLANE, 8)
    assert engines == ["random"] * 4 + ["gp"] * 2 + ["tpe"] * 2


@needs_torch
def test_a_long_run_resumed_with_a_changed_range_hands_over_without_failing() -> None:
    """Trials from before the change that no longer fit do not warm-start CMA-ES; too few
    that do mean a start from the middle of the space, never an error."""
    storage = optuna.storages.InMemoryStorage()
    first = auto(PLANE, gp_trials=12)
    study = optuna.create_study(sampler=first, storage=storage, study_name="s")
    run(first, PLANE, 8, study)
    narrower = Space({"x": Float(-4.0, 5.0), "y": Float(-5.0, 5.0)})
    resumed = auto(narrower, gp_trials=12)
    study = optuna.load_study(study_name="s", storage=storage, sampler=resumed)
    _, engines = run(resumed, narrower, 8, study)
    assert engines == ["gp"] * 4 + ["cmaes"] * 4
