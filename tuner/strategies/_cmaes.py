"""The CMA-ES engine: optuna's ``CmaEsSampler`` over the numeric parameters always active.

optuna's sampler evolves the parameters that every completed trial has, a set that depends on
the trials. A run that began while every trial had a ``when:`` parameter ends for good when a
trial without it completes (its dimensions changed), and so does a run resumed with a range
changed; the study then goes on at random. A parameter added on resume is never evolved. Here
the set is fixed by the space, the numeric parameters active in every configuration, and a
CMA-ES run belongs to one space: a study resumed with another starts a new run from the middle
of the new space. Categoricals and conditional parameters are proposed one at a time by
univariate TPE, which learns which choices do well.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from optuna.samplers import CmaEsSampler
from optuna.trial import FrozenTrial, TrialState

from tuner.optuna_adapter import storage_of, trial_id
from tuner.space import Categorical, Float, Int, Space

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

_X_FOR_TELL = "x_for_tell"
"""Where optuna's CMA-ES with margin keeps the point it asked for (the one it learns from)."""


def cmaes_parameters(space: Space) -> list[str]:
    """The parameters CMA-ES evolves: numeric ones active in every configuration.

    A parameter with a ``when`` is always active only if every value of an always-active
    parent switches it on.

    Example:
        >>> from tuner.space import Float, Int, Categorical
        >>> cmaes_parameters(Space({
        ...     "lr": Float(1e-4, 1e-1, log=True),
        ...     "opt": Categorical(["sgd", "adam"]),
        ...     "momentum": Float(0.0, 0.99, when={"opt": "sgd"}),
        ...     "layers": Int(1, 4, when={"opt": ["sgd", "adam"]}),
        ... }))
        ['lr', 'layers']
    """
    always: set[str] = set()
    for name in space:
        if _always_active(space, name, always):
            always.add(name)
    return [name for name in space if name in always and not isinstance(space[name], Categorical)]


def _always_active(space: Space, name: str, always: set[str]) -> bool:
    when = space[name].when
    if not all(parent in always for parent in when):
        return False
    # Each other condition held by a value it names, each parent tried with every choice.
    held = {parent: values[0] for parent, values in when.items()}
    return all(
        space.is_active(name, {**held, parent: choice})
        for parent in when
        for choice in _choices(space, parent)
    )


def _choices(space: Space, name: str) -> tuple[Any, ...]:
    param = space[name]
    return param.choices if isinstance(param, Categorical) else ()


WARM_START_TRIALS = 10
"""Fewest compatible trials a CMA-ES run is warm-started from: the `cmaes` package estimates
the start from the best tenth of them."""


def warm_start_trials(space: Space, history: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials of ``history`` a CMA-ES run can be warm-started from: those with
    exactly the parameters it evolves, with the space's distributions (optuna's own check);
    none if there are fewer than :data:`WARM_START_TRIALS`."""
    distributions = space.distributions()
    names = {name for name in cmaes_parameters(space) if not distributions[name].single()}
    compatible = [
        t
        for t in history
        if t.state == TrialState.COMPLETE
        and names
        and set(t.distributions) == names
        and all(t.distributions[name] == distributions[name] for name in names)
    ]
    return compatible if len(compatible) >= WARM_START_TRIALS else []


def has_discrete(space: Space) -> bool:
    """Whether CMA-ES evolves an integer or a stepped float on a linear scale: CMA-ES with
    margin keeps such a parameter from collapsing onto one value."""
    params = [space[name] for name in cmaes_parameters(space)]
    return any(
        isinstance(p, Int | Float) and not p.log and (isinstance(p, Int) or p.step is not None)
        for p in params
    )


class SpaceCmaEsSampler(CmaEsSampler):
    """optuna's CMA-ES over :func:`cmaes_parameters`, the rest to its independent sampler.

    Args:
        space: the search space.
        **kwargs: :class:`optuna.samplers.CmaEsSampler`'s arguments.
    """

    def __init__(self, space: Space, **kwargs: Any):
        super().__init__(**kwargs)
        distributions = space.distributions()
        self._modelled = {
            name: distributions[name]
            for name in cmaes_parameters(space)
            if not distributions[name].single()  # CMA-ES cannot evolve a constant
        }
        self._asked: dict[int, dict[str, Any]] = {}
        # optuna keys a run's state (the optimizer, each trial's generation) by this prefix.
        self._attr_prefix = f"{self._attr_prefix}{_digest(self._modelled)}:"

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._modelled)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        proposal = super().sample_relative(study, trial, search_space)
        if proposal:
            self._asked[trial.number] = proposal
        return proposal

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        asked = self._asked.pop(trial.number, None)
        ran = {name: trial.params.get(name) for name in self._modelled}
        if asked is not None and ran != asked and None not in ran.values():
            self._tell_what_ran(study, trial, ran)
        with warnings.catch_warnings():
            # Constraints are tuner's to enforce (an infeasible trial is never best); CMA-ES
            # evolving without them is documented, not worth a warning per trial.
            warnings.filterwarnings("ignore", "Constraints have been set", UserWarning)
            super().after_trial(study, trial, state, values)

    def _tell_what_ran(self, study: Study, trial: FrozenTrial, ran: dict[str, Any]) -> None:
        # The pending-aware wrapper ran another configuration (the one asked for was pending).
        # Plain CMA-ES learns from the trial's parameters; CMA-ES with margin learns from the
        # point it stored at ask time, which must then become the point that ran.
        if _X_FOR_TELL not in trial.system_attrs:
            return
        from optuna._transform import _SearchSpaceTransform

        transform = _SearchSpaceTransform(self._modelled, transform_step=False, transform_0_1=True)
        point = transform.transform(ran).tolist()
        storage_of(study).set_trial_system_attr(trial_id(trial), _X_FOR_TELL, point)


def _digest(distributions: dict[str, BaseDistribution]) -> str:
    """A short name for a set of parameter distributions."""
    text = repr(sorted((name, repr(d)) for name, d in distributions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]
