"""The optuna pruner for the spec's ``pruner`` section (early stopping)."""

from __future__ import annotations

from typing import Any

from tuner.spec import AshaPruner, HyperbandPruner, MedianPruner, NoPruner


def make_pruner(pruner: NoPruner | MedianPruner | AshaPruner | HyperbandPruner) -> Any:
    """The optuna pruner for the spec's ``pruner`` section."""
    import optuna

    if isinstance(pruner, MedianPruner):
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps
        )
    if isinstance(pruner, AshaPruner):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_resource, reduction_factor=pruner.reduction_factor
        )
    if isinstance(pruner, HyperbandPruner):
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_resource,
            max_resource=pruner.max_resource,
            reduction_factor=pruner.reduction_factor,
        )
    return optuna.pruners.NopPruner()
