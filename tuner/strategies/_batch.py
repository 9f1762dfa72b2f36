"""Whole-configuration proposals that never repeat a pending configuration."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from tuner.optuna_adapter import EvolvedHistory, trials_in
from tuner.space import Categorical, Float, Int, Space

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

_MAX_REDRAWS = 64


def config_key(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable identity of a configuration (types matter: ``1`` is not ``True``)."""
    return tuple(sorted((name, f"{type(v).__name__}:{v!r}") for name, v in config.items()))


def trial_config(trial: FrozenTrial) -> dict[str, Any]:
    """The configuration a trial holds, or will hold once a queued trial starts."""
    if trial.state == TrialState.WAITING:
        return dict(trial.system_attrs.get("fixed_params", trial.params))
    return dict(trial.params)


def pending_keys(study: Study, exclude: int | None = None) -> set[tuple[tuple[str, str], ...]]:
    """Keys of configurations that are running or queued, except trial number ``exclude``."""
    trials = trials_in(study, (TrialState.RUNNING, TrialState.WAITING), cached=False)
    return {config_key(trial_config(t)) for t in trials if t.number != exclude}


def random_config(space: Space, rng: np.random.Generator) -> dict[str, Any]:
    """A configuration drawn uniformly (log-uniformly where asked) from ``space``."""
    config: dict[str, Any] = {}
    for name, param in space.items():
        if space.is_active(name, config):
            config[name] = _random_value(param, rng)
    return config


def _random_value(param: Float | Int | Categorical, rng: np.random.Generator) -> Any:
    if isinstance(param, Categorical):
        return param.choices[int(rng.integers(len(param.choices)))]
    if param.step is not None:
        count = round((param.high - param.low) / param.step)
        value = param.low + int(rng.integers(count + 1)) * param.step
        return int(value) if isinstance(param, Int) else min(float(value), param.high)
    if param.log:
        value = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
    else:
        value = rng.uniform(param.low, param.high)
    if isinstance(param, Int):
        return int(min(param.high, max(param.low, round(value))))
    return float(min(param.high, max(param.low, value)))


class PendingAwareSampler(BaseSampler):
    """Wraps an engine so that each trial gets a whole configuration, never a pending one.

    The engine proposes what it can jointly (``sample_relative``) and the rest one parameter at
    a time (``sample_independent``), conditions respected; all of it is returned as the trial's
    relative parameters. A configuration already running or queued is drawn again at random,
    up to a bound: only a discrete space smaller than the number of trials in flight repeats.

    Args:
        base: the engine's sampler.
        space: the search space.
        seed: seeds the redraws.
        engine: a short name for displays and tracking (``tpe``, ``gp``, ``grid``...).
    """

    def __init__(self, base: BaseSampler, space: Space, *, seed: int | None, engine: str):
        self.base = base
        self.space = space
        self.engine = engine
        self._rng = np.random.default_rng(seed)
        self._distributions = space.distributions()
        self._history = EvolvedHistory(space)
        self._redrawn: set[int] = set()
        self.pending: Callable[[], Iterable[Mapping[str, Any]]] | None = None
        """Where pending configurations come from: the study loop, which knows them, sets it;
        otherwise they are read from the storage."""

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        config = self._propose(study, trial)
        if self.pending is not None:
            pending = {config_key(c) for c in self.pending()}
        else:
            pending = pending_keys(study, exclude=trial.number)
        for _ in range(_MAX_REDRAWS):
            if config_key(config) not in pending:
                break
            config = random_config(self.space, self._rng)
            self._redrawn.add(trial.number)
        return config

    def engine_for(self, number: int) -> str:
        """The engine that proposed trial ``number`` (``random`` where a pending configuration
        was drawn again); ask it before the trial is told."""
        if number in self._redrawn:
            return "random"
        chosen = getattr(self.base, "engine_for", None)
        return (chosen(number) if chosen is not None else None) or self.engine

    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        study = self._history.view(study)  # a resumed study's trials, as the space is now
        base_space = self.base.infer_relative_search_space(study, trial)
        relative = self.base.sample_relative(study, trial, base_space) if base_space else {}
        config: dict[str, Any] = {}
        for name in self.space:
            if not self.space.is_active(name, config):
                continue
            if name in relative:
                config[name] = relative[name]
            else:
                config[name] = self.base.sample_independent(
                    study, trial, name, self._distributions[name]
                )
        return config

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        # Only reached for parameters outside the space (a user calling suggest by hand).
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._redrawn.discard(trial.number)
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng = np.random.default_rng()

    def is_exhausted(self, study: Study) -> bool:
        """Whether the engine has nothing left to propose (only a grid ever is)."""
        exhausted = getattr(self.base, "is_exhausted", None)
        return bool(exhausted(study)) if exhausted is not None else False
