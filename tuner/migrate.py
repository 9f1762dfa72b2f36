"""Rewriting a study's trials for a changed space, crash-safe.

optuna's storages fix a parameter's kind of distribution once a trial used it: a categorical
keeps its choices, a number its log scale. A study resumed with a new choice (or a range now
log-scaled) is therefore rewritten: every trial is copied, with the new distributions, into a
study of the same name. The copy goes first into a side study, marked complete only once whole;
then the study is replaced by it. A crash at any point leaves either the original study intact
(an incomplete side study is dropped) or a complete side study, from which :func:`recover`
finishes the replacement. Trials keep their numbers, states, values, attributes and
intermediate values, so everything keyed by trial number (MLflow runs, backend handles) holds.

Example:
    >>> migrate(storage, "digits", spec.search_space.distributions())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tuner.optuna_adapter import quiet
from tuner.space import Space, value_problem

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

SIDE = ".tuner-migrating"
"""The side study's name is the study's with this suffix."""
COMPLETE = "tuner.migration_complete"
"""Side study system attribute: the copy is whole."""


def needs_migration(storage: BaseStorage, name: str, space: Space) -> bool:
    """Whether a trial of the study has a distribution the storage would refuse to mix with
    the space's (another kind, other choices, another log scale)."""
    from optuna.distributions import check_distribution_compatibility

    current = space.distributions()
    study_id = storage.get_study_id_from_name(name)
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        for param, distribution in trial.distributions.items():
            if param not in current:
                continue
            try:
                check_distribution_compatibility(distribution, current[param])
            except ValueError:
                return True
    return False


def migrate(storage: BaseStorage, name: str, space: Space) -> int:
    """Rewrites study ``name`` with the distributions of ``space`` (where its trials' values
    fit them); returns how many trials were copied.

    The caller holds the study's lock.
    """
    with quiet():
        recover(storage, name)
        side = name + SIDE
        copied = _copy(storage, storage.get_study_id_from_name(name), side, space.distributions())
        storage.set_study_system_attr(storage.get_study_id_from_name(side), COMPLETE, True)
        _replace(storage, name, side)
    return copied


def recover(storage: BaseStorage, name: str) -> None:
    """Finishes or undoes a migration of study ``name`` that a crash interrupted."""
    side = name + SIDE
    try:
        side_id = storage.get_study_id_from_name(side)
    except KeyError:
        return
    if not storage.get_study_system_attrs(side_id).get(COMPLETE):
        storage.delete_study(side_id)  # the copy was not whole: the study itself is intact
        return
    with quiet():
        _replace(storage, name, side)


def _replace(storage: BaseStorage, name: str, side: str) -> None:
    """Makes study ``name`` a copy of the complete side study, then drops the side study."""
    with contextlib.suppress(KeyError):  # deleted before a crash
        storage.delete_study(storage.get_study_id_from_name(name))
    side_id = storage.get_study_id_from_name(side)
    _copy(storage, side_id, name, None)
    storage.delete_study(side_id)


def _copy(
    storage: BaseStorage,
    source_id: int,
    target: str,
    distributions: Mapping[str, BaseDistribution] | None,
) -> int:
    target_id = storage.create_new_study(storage.get_study_directions(source_id), target)
    for key, value in storage.get_study_user_attrs(source_id).items():
        storage.set_study_user_attr(target_id, key, value)
    for key, value in storage.get_study_system_attrs(source_id).items():
        if key != COMPLETE:
            storage.set_study_system_attr(target_id, key, value)
    trials = storage.get_all_trials(source_id, deepcopy=False)
    for trial in sorted(trials, key=lambda t: t.number):
        template = trial if distributions is None else _as_now(trial, distributions)
        storage.create_new_trial(target_id, template_trial=template)
    return len(trials)


def _as_now(trial: FrozenTrial, current: Mapping[str, BaseDistribution]) -> FrozenTrial:
    from tuner.space import from_optuna

    distributions = dict(trial.distributions)
    for param, value in trial.params.items():
        if param in current and value_problem(from_optuna(current[param]), value) is None:
            distributions[param] = current[param]
    rewritten = copy.copy(trial)
    rewritten.distributions = distributions
    return rewritten
