"""The gp engine: optuna's GP, with the trials in flight believed at the GP's mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.samplers import BaseSampler, GPSampler
from optuna.trial import TrialState, create_trial

pytest.importorskip("torch")

from tuner.optuna_adapter import constraint_args, set_constraints
from tuner.strategies._gp import BelieverGPSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0)}


def bowl(params: dict[str, float]) -> float:
    return (params["x"] - 0.3) ** 2 + (params["y"] + 0.2) ** 2


def study_with(
    sampler: BaseSampler,
    running: Sequence[dict[str, float]] = (),
    *,
    known: int = 15,
    history: int = 1,
) -> optuna.Study:
    """``known`` completed trials of the bowl at random points (drawn with seed ``history``),
    and ``running`` in flight."""
    study = optuna.create_study(sampler=sampler)
    rng = np.random.default_rng(history)
    for _ in range(known):
        params = {name: float(rng.uniform(-1.0, 1.0)) for name in SPACE}
        study.add_trial(create_trial(params=params, distributions=SPACE, value=bowl(params)))
    for params in running:
        study.add_trial(create_trial(params=params, distributions=SPACE, state=TrialState.RUNNING))
    return study


def propose(study: optuna.Study) -> dict[str, float]:
    trial = study.ask()
    return {name: trial.suggest_float(name, -1.0, 1.0) for name in SPACE}


def believer(**kwargs: Any) -> BelieverGPSampler:
    return BelieverGPSampler(seed=0, n_startup_trials=3, **kwargs)


def test_with_nothing_in_flight_it_is_optunas_gp() -> None:
    ours = propose(study_with(believer()))
    theirs = propose(study_with(GPSampler(seed=0, n_startup_trials=3)))
    assert ours == theirs


HISTORIES = [1, 2, 3]
"""Different sets of completed trials: the behaviour is not one lucky draw's."""


@pytest.mark.parametrize("history", HISTORIES)
def test_a_running_trial_where_the_model_would_go_sends_the_next_proposal_elsewhere(
    history: int,
) -> None:
    best_guess = propose(study_with(believer(), history=history))
    assert bowl(best_guess) < 0.02  # 15 trials: the model knows where the bottom is
    following = propose(study_with(believer(), [best_guess], history=history))
    assert math.dist(following.values(), best_guess.values()) > 0.02
    assert bowl(following) < 0.05  # elsewhere, but still where the model expects improvement


@pytest.mark.parametrize("history", HISTORIES)
def test_a_batch_of_proposals_spreads_over_the_promising_region(history: int) -> None:
    running: list[dict[str, float]] = []
    for _ in range(6):
        running.append(propose(study_with(believer(), running, history=history)))
    gaps = [math.dist(a.values(), b.values()) for i, a in enumerate(running) for b in running[:i]]
    assert min(gaps) > 1e-4  # refining, never the same point again
    assert sorted(bowl(p) for p in running)[0] < 0.01


def told(study: optuna.Study, trials: int, constrained: bool = False) -> optuna.Study:
    for _ in range(trials):
        trial = study.ask()
        params = {name: trial.suggest_float(name, -1.0, 1.0) for name in SPACE}
        if constrained:
            set_constraints(trial, [params["x"] - 0.5])
        values = [bowl(params), params["x"] ** 2]
        study.tell(trial, values[: len(study.directions)])
    return study


def test_a_constrained_study_with_trials_in_flight_still_proposes() -> None:
    study = told(optuna.create_study(sampler=believer(**constraint_args(1))), 6, True)
    study.ask()  # in flight
    assert propose(study)["x"] <= 1.0


def test_several_objectives_with_trials_in_flight_still_propose() -> None:
    study = told(optuna.create_study(directions=["minimize"] * 2, sampler=believer()), 5)
    study.ask()  # in flight
    assert set(propose(study)) == set(SPACE)
