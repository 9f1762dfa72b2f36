"""The QMC engine: a scrambled Sobol sequence over the whole space, from the first trial on.

optuna's ``QMCSampler`` takes its dimensions from the study's first trial, which it draws at
random (nothing is known yet): the design starts one point late, and in a space with ``when:``
parameters its dimensions are whichever branch that first trial took. Here they are every
parameter of the space, so each trial is the next Sobol point; a conditional parameter's
coordinate is used only in the trials where it is active (the wrapper leaves it out elsewhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.samplers import QMCSampler

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from tuner.space import Space


class SpaceQMCSampler(QMCSampler):
    """optuna's QMC sampler with every parameter of ``space`` as a dimension.

    Args:
        space: the search space.
        **kwargs: :class:`optuna.samplers.QMCSampler`'s arguments.
    """

    def __init__(self, space: Space, **kwargs: Any):
        super().__init__(**kwargs)
        self._distributions = space.distributions()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._distributions)
