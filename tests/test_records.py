"""A trial's state in the study, in optuna's store and in MLflow."""

from __future__ import annotations


def test_one_trial_state_maps_to_optuna_and_back_and_to_mlflow() -> None:
    from optuna.trial import TrialState as OptunaState

    from tuner.records import MLFLOW_STATUS, TrialState, optuna_state, state_from_optuna

    for state in TrialState:
        stored = optuna_state(state)
        back = state_from_optuna(stored, cancelled=state is TrialState.CANCELLED)
        assert back is state
    assert optuna_state(TrialState.CANCELLED) is OptunaState.FAIL
    assert set(MLFLOW_STATUS) == set(TrialState) - {TrialState.WAITING}
