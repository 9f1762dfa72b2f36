"""Grid search that tries every configuration once and says when it is done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from tuner.optuna_adapter import trials_in
from tuner.records import Attr
from tuner.strategies._batch import config_key, trial_config

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

    from tuner.space import Space


class GridSampler(BaseSampler):
    """Every configuration of a discrete space once, conditions respected.

    Unlike optuna's ``GridSampler`` it neither raises nor repeats at the end:
    :meth:`is_exhausted` says when every configuration has been handed out, and the study
    loop stops asking. A configuration whose trial was cancelled (and queued again) is not
    counted twice.

    Args:
        space: a space whose float parameters all have a ``step``.
        seed: with a seed, the grid is visited in a random order; without, in order.
    """

    def __init__(self, space: Space, seed: int | None = None):
        self._space = space
        grid = space.grid()
        if seed is not None:
            order = np.random.default_rng(seed).permutation(len(grid))
            grid = [grid[i] for i in order]
        self._grid = grid
        self._keys = [config_key(config) for config in grid]
        self._fallback = RandomSampler(seed=seed)

    def __len__(self) -> int:
        return len(self._grid)

    def _used(self, study: Study, exclude: int | None = None) -> set[Any]:
        trials = trials_in(study, cached=False)
        return {
            config_key(trial_config(t))
            for t in trials
            if t.number != exclude and not t.user_attrs.get(Attr.CANCELLED)
        }

    def _next(self, study: Study, exclude: int | None = None) -> dict[str, Any] | None:
        used = self._used(study, exclude)
        for key, config in zip(self._keys, self._grid, strict=True):
            if key not in used:
                return dict(config)
        return None

    def is_exhausted(self, study: Study) -> bool:
        """Whether every configuration has been handed out."""
        return self._next(study) is None

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        config = self._next(study, exclude=trial.number)
        # Exhausted: the loop checks before asking, so this only happens to a user who asks
        # anyway; the wrapper then redraws the repeat at random rather than failing.
        return config if config is not None else dict(self._grid[0])

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None
