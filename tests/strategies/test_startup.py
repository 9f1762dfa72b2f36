"""A warm start ends the random start-up: every engine with a model proposes from the earlier
results at once, instead of drawing its first trials at random as if they were not there."""

from __future__ import annotations

import importlib.util
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution

from tuner.records import Attr
from tuner.space import Float, Space
from tuner.spec import BayesianStrategy
from tuner.strategies import Problem, make_sampler, startup_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)

PLANE = Space({"x": Float(-5.0, 5.0), "y": Float(-5.0, 5.0)})
OPTIMUM = (1.0, -2.0)
EARLIER = [(1.4, -1.7), (4.0, -2.0), (-2.0, -2.0), (1.0, 1.0), (1.0, -5.0), (-3.0, 3.0)]
"""Earlier results: one near the optimum, the rest 3 or more away from it."""


def bowl(x: float, y: float) -> float:
    return (x - OPTIMUM[0]) ** 2 + (y - OPTIMUM[1]) ** 2


def sampler_for(engine: str, seed: int, warm: bool, **strategy: Any) -> optuna.Study:
    """A study told the earlier results (if ``warm``) as a warm start does, with its sampler
    made after, as the orchestrator makes it."""
    study = optuna.create_study()
    dists = {"x": FloatDistribution(-5.0, 5.0), "y": FloatDistribution(-5.0, 5.0)}
    for x, y in EARLIER if warm else ():
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x, "y": y},
                distributions=dists,
                value=bowl(x, y),
                user_attrs={Attr.WARM_START: "study earlier"},
            )
        )
    prior = tuple(study.get_trials(deepcopy=False))
    chosen = BayesianStrategy(engine=engine, seed=seed, **strategy)
    study.sampler = make_sampler(chosen, PLANE, seed, Problem(prior=prior))
    return study


def first_proposal(study: optuna.Study) -> tuple[float, float]:
    config = PLANE.suggest(study.ask())
    return config["x"], config["y"]


ENGINES = [
    pytest.param(
        engine,
        marks=pytest.mark.skipif(
            importlib.util.find_spec("torch") is None, reason="the GP needs torch"
        ),
    )
    if engine in ("auto", "gp")
    else engine
    for engine in ("auto", "gp", "tpe", "skopt")
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 1])
def test_the_first_proposal_comes_from_the_model_not_the_random_start(
    engine: str, seed: int
) -> None:
    cold = first_proposal(sampler_for(engine, seed, warm=False))
    warm = first_proposal(sampler_for(engine, seed, warm=True))
    assert warm != cold  # cold, it is the seed's first random draw
    # A start-up the spec sets counts the earlier results, as optuna counts them: 6 of 10
    # done, the first proposal is the random one.
    assert first_proposal(sampler_for(engine, seed, warm=True, n_startup_trials=10)) == cold


def test_auto_says_its_first_proposal_came_from_the_gp() -> None:
    pytest.importorskip("torch")
    study = sampler_for("auto", 0, warm=True)
    trial = study.ask()
    assert study.sampler.engine_for(trial.number) == "gp"


def test_too_few_earlier_results_keep_the_random_start() -> None:
    prior = (object(),) * 2
    assert startup_trials(BayesianStrategy(), Problem(prior=prior)) == 10  # type: ignore[arg-type]
    assert startup_trials(BayesianStrategy(), Problem(prior=prior * 2)) == 3  # type: ignore[arg-type]


def test_a_start_up_the_spec_sets_counts_the_earlier_results_as_optuna_does() -> None:
    prior = (object(),) * 6
    strategy = BayesianStrategy(n_startup_trials=8)
    assert startup_trials(strategy, Problem(prior=prior)) == 8  # type: ignore[arg-type]
