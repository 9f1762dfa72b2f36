"""The optuna internals tuner uses still exist and behave, in the optuna installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import ROOT
from tuner import optuna_adapter as adapter


def test_the_installed_optuna_is_in_the_range_the_package_declares() -> None:
    declared = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("optuna")
    )
    assert declared == f"optuna{adapter.SUPPORTED}"
    assert Version(optuna.__version__) in SpecifierSet(adapter.SUPPORTED)


def test_a_trial_left_running_can_be_reported_to_and_told(tmp_path: Path) -> None:
    backend = JournalFileBackend(str(tmp_path / "journal.log"))
    study = optuna.create_study(storage=JournalStorage(backend))
    left = study.ask()
    left.suggest_float("x", 0, 1)
    frozen = study.trials[0]
    assert isinstance(adapter.trial_id(frozen), int)
    assert adapter.trial_id(left) == adapter.trial_id(frozen)
    assert adapter.storage_of(study) is study._storage

    again = adapter.reload(study)
    trial = adapter.live_trial(again, frozen)
    trial.report(0.5, step=1)
    again.tell(trial, 0.25)
    assert again.trials[0].state is TrialState.COMPLETE
    assert again.trials[0].intermediate_values == {1: 0.5}


def test_trials_are_read_by_state_without_copies(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study.ask()
    assert len(adapter.trials_in(study, (TrialState.COMPLETE,))) == 2
    assert len(adapter.trials_in(study, (TrialState.RUNNING,), cached=False)) == 1
    assert len(adapter.trials_in(study)) == 3


def test_the_journal_lock_and_path_are_reachable(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    backend = JournalFileBackend(str(path))
    assert adapter.journal_path(backend) == str(path)
    with adapter.journal_file_lock(backend):
        pass
    assert issubclass(type(backend._lock), adapter.BaseJournalFileLock)
