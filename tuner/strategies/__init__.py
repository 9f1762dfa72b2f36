"""Strategies: a registry of names to optuna samplers.

Every strategy is an optuna ``BaseSampler`` wrapped in :class:`PendingAwareSampler`, which
completes each configuration up front and never hands out one that is still pending.

Example:
    >>> from tuner.space import Space, Float
    >>> from tuner.spec import RandomStrategy
    >>> sampler = make_sampler(RandomStrategy(seed=1), Space({"x": Float(0, 1)}), seed=1)
    >>> sampler.engine
    'random'
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.optuna_adapter import constraint_args
from tuner.strategies._batch import PendingAwareSampler, config_key
from tuner.strategies._grid import GridSampler

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

    from tuner.space import Space
    from tuner.spec import BayesianStrategy, GridStrategy, RandomStrategy


@dataclass(frozen=True)
class Problem:
    """What a sampler is asked to solve beyond its space.

    Attributes:
        objectives: how many objectives (several: a Pareto front).
        constraints: how many constraints each trial carries.
        prior: the completed trials a warm start told the study before its first proposal.
    """

    objectives: int = 1
    constraints: int = 0
    prior: tuple[FrozenTrial, ...] = ()


def startup_trials(strategy: BayesianStrategy, problem: Problem) -> int:
    """Random trials before an engine's model proposes (optuna counts every completed trial,
    warm-start ones too).

    ``n_startup_trials`` when the spec sets it; otherwise 10, or none beyond a warm start of
    at least :data:`~tuner.strategies._auto.MODEL_TRIALS` trials: the researcher's earlier
    results are what the model proposes from, so the first proposal is already informed.
    """
    from tuner.strategies._auto import MODEL_TRIALS, STARTUP_TRIALS

    if strategy.n_startup_trials is not None:
        return strategy.n_startup_trials
    return MODEL_TRIALS if len(problem.prior) >= MODEL_TRIALS else STARTUP_TRIALS


EngineFactory = Callable[["BayesianStrategy", "Space", int, Problem], "BaseSampler"]


def default_engine(problem: Problem = Problem()) -> str:
    """``auto``, which chooses an engine for each proposal (:mod:`tuner.strategies._auto`)."""
    return "auto"


def _tpe(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import TPESampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # Multivariate TPE with groups handles conditional spaces; the constant liar makes
        # running trials count as bad, so parallel proposals spread out.
        return TPESampler(
            seed=seed,
            multivariate=True,
            group=True,
            constant_liar=True,
            n_startup_trials=startup_trials(strategy, problem),
            **constraint_args(problem.constraints),
        )


def _gp(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    if importlib.util.find_spec("torch") is None:
        from tuner.backend import MissingExtraError

        raise MissingExtraError("torch", "gp", "the `gp` engine (optuna's GPSampler)")
    from tuner.strategies._gp import BelieverGPSampler

    # Running trials are believed at the GP's mean (see _gp.py for why and what it measured).
    return BelieverGPSampler(
        seed=seed,
        n_startup_trials=startup_trials(strategy, problem),
        warn_independent_sampling=False,
        **constraint_args(problem.constraints),
    )


def _nsga2(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    from optuna.samplers import NSGAIISampler

    # A generation of `population_size` trials evolves from the best of the last ones; the
    # first generation is random (`n_startup_trials` sets its size).
    return NSGAIISampler(
        seed=seed,
        population_size=strategy.n_startup_trials or 20,
        **constraint_args(problem.constraints),
    )


def _skopt(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    from tuner.strategies._skopt import SkoptSampler

    return SkoptSampler(space, seed=seed, n_startup_trials=startup_trials(strategy, problem))


def _cmaes(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    # CMA-ES evolves the numeric parameters that are always active, from the middle of the
    # space or warm-started from a warm start's trials: random start-up trials teach it
    # nothing, so by default there is one.
    startup = strategy.n_startup_trials
    tpe_startup = startup_trials(strategy, problem)
    return _cmaes_from(space, seed, startup or 1, history=problem.prior, tpe_startup=tpe_startup)


def _cmaes_from(
    space: Space, seed: int, startup: int, history: Sequence[FrozenTrial], tpe_startup: int
) -> BaseSampler:
    """CMA-ES over ``space``, warm-started from the completed trials in ``history`` that hold
    every parameter it evolves (from the middle of the space if none does)."""
    if importlib.util.find_spec("cmaes") is None:
        from tuner.backend import MissingExtraError

        raise MissingExtraError("cmaes", "cmaes", "the `cmaes` engine (optuna's CmaEsSampler)")
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import TPESampler

    from tuner.strategies._cmaes import SpaceCmaEsSampler, has_discrete, warm_start_trials

    source = warm_start_trials(space, history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # Univariate TPE proposes categoricals and conditional parameters.
        return SpaceCmaEsSampler(
            space,
            seed=seed,
            n_startup_trials=0 if source else startup,
            source_trials=source or None,
            independent_sampler=TPESampler(
                seed=seed, n_startup_trials=tpe_startup, constant_liar=True
            ),
            warn_independent_sampling=False,
            with_margin=has_discrete(space),
        )


def _qmc(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    from optuna.exceptions import ExperimentalWarning

    from tuner.strategies._qmc import SpaceQMCSampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # A space-filling design: it reads no results, so several objectives, constraints and
        # trials in flight change nothing.
        return SpaceQMCSampler(
            space, qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
        )


def _auto(strategy: BayesianStrategy, space: Space, seed: int, problem: Problem) -> BaseSampler:
    from optuna.samplers import RandomSampler

    from tuner.strategies._auto import MODEL_TRIALS, AutoSampler

    startup = startup_trials(strategy, problem)
    # auto decides when the start-up ends; its models propose from MODEL_TRIALS on.
    model = strategy.model_copy(update={"n_startup_trials": min(startup, MODEL_TRIALS)})

    def build(engine: str, history: Sequence[FrozenTrial]) -> BaseSampler:
        if engine == "random":
            return RandomSampler(seed=seed)
        if engine == "cmaes":
            return _cmaes_from(space, seed, startup, history, tpe_startup=startup)
        return ENGINES[engine](model, space, seed, problem)

    return AutoSampler(
        space,
        build,
        objectives=problem.objectives,
        constraints=problem.constraints,
        startup=startup,
    )


ENGINES: dict[str, EngineFactory] = {
    "auto": _auto,
    "tpe": _tpe,
    "gp": _gp,
    "skopt": _skopt,
    "nsga2": _nsga2,
    "cmaes": _cmaes,
    "qmc": _qmc,
}


def _random(strategy: Any, space: Space, seed: int, problem: Problem) -> tuple[str, BaseSampler]:
    from optuna.samplers import RandomSampler

    return "random", RandomSampler(seed=seed)


def _grid(
    strategy: GridStrategy, space: Space, seed: int, problem: Problem
) -> tuple[str, BaseSampler]:
    return "grid", GridSampler(space, seed=seed if strategy.shuffle else None)


def _bayesian(
    strategy: BayesianStrategy, space: Space, seed: int, problem: Problem
) -> tuple[str, BaseSampler]:
    engine = strategy.engine or default_engine(problem)
    return engine, ENGINES[engine](strategy, space, seed, problem)


STRATEGIES: dict[str, Callable[[Any, Space, int, Problem], tuple[str, BaseSampler]]] = {
    "random": _random,
    "grid": _grid,
    "bayesian": _bayesian,
}


def make_sampler(
    strategy: RandomStrategy | GridStrategy | BayesianStrategy,
    space: Space,
    seed: int,
    problem: Problem = Problem(),
) -> PendingAwareSampler:
    """The sampler for a strategy section of the spec.

    Args:
        strategy: the validated strategy section.
        space: the search space every proposal must belong to.
        seed: the seed for this run of the study (``tuner.orchestrator`` varies it on resume).
        problem: how many objectives and constraints.
    """
    engine, base = STRATEGIES[strategy.type](strategy, space, seed, problem)
    return PendingAwareSampler(base, space, seed=seed, engine=engine)


__all__ = [
    "ENGINES",
    "STRATEGIES",
    "GridSampler",
    "PendingAwareSampler",
    "Problem",
    "config_key",
    "default_engine",
    "make_sampler",
    "startup_trials",
]
