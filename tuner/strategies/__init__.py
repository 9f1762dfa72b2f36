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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuner.strategies._batch import PendingAwareSampler, config_key
from tuner.strategies._grid import GridSampler

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from tuner.space import Space
    from tuner.spec import BayesianStrategy, GridStrategy, RandomStrategy

EngineFactory = Callable[["BayesianStrategy", "Space", int], "BaseSampler"]


def default_engine() -> str:
    """``gp`` when torch is importable (optuna's GPSampler needs it), else ``skopt``."""
    return "gp" if importlib.util.find_spec("torch") is not None else "skopt"


def _tpe(strategy: BayesianStrategy, space: Space, seed: int) -> BaseSampler:
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
            n_startup_trials=strategy.n_startup_trials or 10,
        )


def _gp(strategy: BayesianStrategy, space: Space, seed: int) -> BaseSampler:
    if importlib.util.find_spec("torch") is None:
        from tuner.backend import MissingExtraError

        raise MissingExtraError("torch", "gp", "the `gp` engine (optuna's GPSampler)")
    from optuna.samplers import GPSampler

    # optuna's GPSampler conditions on RUNNING trials itself (qLogEI over pending points).
    return GPSampler(
        seed=seed,
        n_startup_trials=strategy.n_startup_trials or 10,
        warn_independent_sampling=False,
    )


def _skopt(strategy: BayesianStrategy, space: Space, seed: int) -> BaseSampler:
    from tuner.strategies._skopt import SkoptSampler

    return SkoptSampler(space, seed=seed, n_startup_trials=strategy.n_startup_trials or 10)


ENGINES: dict[str, EngineFactory] = {"tpe": _tpe, "gp": _gp, "skopt": _skopt}


def _random(strategy: Any, space: Space, seed: int) -> tuple[str, BaseSampler]:
    from optuna.samplers import RandomSampler

    return "random", RandomSampler(seed=seed)


def _grid(strategy: GridStrategy, space: Space, seed: int) -> tuple[str, BaseSampler]:
    return "grid", GridSampler(space, seed=seed if strategy.shuffle else None)


def _bayesian(strategy: BayesianStrategy, space: Space, seed: int) -> tuple[str, BaseSampler]:
    engine = strategy.engine or default_engine()
    return engine, ENGINES[engine](strategy, space, seed)


STRATEGIES: dict[str, Callable[[Any, Space, int], tuple[str, BaseSampler]]] = {
    "random": _random,
    "grid": _grid,
    "bayesian": _bayesian,
}


def make_sampler(
    strategy: RandomStrategy | GridStrategy | BayesianStrategy, space: Space, seed: int
) -> PendingAwareSampler:
    """The sampler for a strategy section of the spec.

    Args:
        strategy: the validated strategy section.
        space: the search space every proposal must belong to.
        seed: the seed for this run of the study (``tuner.orchestrator`` varies it on resume).
    """
    engine, base = STRATEGIES[strategy.type](strategy, space, seed)
    return PendingAwareSampler(base, space, seed=seed, engine=engine)


__all__ = [
    "ENGINES",
    "STRATEGIES",
    "GridSampler",
    "PendingAwareSampler",
    "config_key",
    "default_engine",
    "make_sampler",
]
