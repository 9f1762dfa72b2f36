"""The qmc engine: a scrambled Sobol design over the whole space, from the first trial on."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from scipy.stats import qmc

from tuner.orchestrator import Orchestrator
from tuner.records import TrialState
from tuner.space import Categorical, Float, Space
from tuner.spec import BayesianStrategy, RandomStrategy
from tuner.strategies import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

CUBE = Space({name: Float(0.0, 1.0) for name in "abc"})


def first_points(strategy: Any, space: Space, seed: int, count: int = 16) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=make_sampler(strategy, space, seed))
    configs = []
    for _ in range(count):
        trial = study.ask()
        configs.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return configs


def as_array(configs: list[dict[str, Any]], names: str = "abc") -> np.ndarray:
    return np.array([[c[n] for n in names] for c in configs])


def test_the_first_16_points_cover_the_space_more_evenly_than_random_ones() -> None:
    for seed in range(5):
        sobol = as_array(first_points(BayesianStrategy(engine="qmc", seed=seed), CUBE, seed))
        random = as_array(first_points(RandomStrategy(seed=seed), CUBE, seed))
        # Measured: about 0.005 for Sobol against 0.03 to 0.06 for random points.
        assert qmc.discrepancy(sobol) < qmc.discrepancy(random) / 2, seed


def test_the_design_starts_at_the_first_trial() -> None:
    """The first 16 Sobol points put exactly one point in each sixteenth of every axis; optuna's
    own QMC sampler draws the first trial at random, which breaks that."""
    for seed in range(3):
        points = as_array(first_points(BayesianStrategy(engine="qmc", seed=seed), CUBE, seed))
        for axis in range(3):
            assert sorted((points[:, axis] * 16).astype(int)) == list(range(16)), (seed, axis)


def test_the_seed_fixes_the_design() -> None:
    def design(seed: int) -> list[dict[str, Any]]:
        return first_points(BayesianStrategy(engine="qmc", seed=seed), CUBE, seed, count=4)

    assert design(1) == design(1)
    assert design(1) != design(2)


def test_a_conditional_parameter_is_spread_over_the_trials_that_have_it() -> None:
    space = Space(
        {
            "x": Float(0.0, 1.0),
            "act": Categorical(["relu", "tanh"]),
            "slope": Float(0.0, 1.0, when={"act": "relu"}),
        }
    )
    configs = first_points(BayesianStrategy(engine="qmc", seed=3), space, 3, count=32)
    assert all(space.contains(c) for c in configs)
    slopes = sorted(c["slope"] for c in configs if c["act"] == "relu")
    assert len(slopes) == 16  # the Sobol net splits the categorical's axis evenly
    # One slope in each eighth of its range: a space-filling design, not clumps.
    assert sorted({int(s * 8) for s in slopes}) == list(range(8))


def test_a_study_with_two_objectives_runs_on_qmc_with_trials_in_flight(make_spec: Any) -> None:
    spec = make_spec(
        name="qmc-front",
        objective=[{"metric": "error"}, {"metric": "latency_ms"}],
        space={
            "width": {"type": "int", "low": 4, "high": 64},
            "depth": {"type": "int", "low": 1, "high": 4},
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        },
        strategy={"type": "bayesian", "engine": "qmc", "seed": 2},
        budget={"max_trials": 8, "max_concurrent": 3},
        trial={"function": "examples.functions:accuracy_vs_latency"},
    )
    summary = Orchestrator(spec).run()
    assert summary.counts[TrialState.COMPLETE] == 8
    assert summary.front
