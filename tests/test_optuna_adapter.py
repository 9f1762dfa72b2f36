"""The optuna internals tuner uses still exist and behave, in the optuna installed."""

from __future__ import annotations

import logging
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import ExperimentalWarning
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


@pytest.fixture
def optuna_at_info() -> Iterator[None]:
    """optuna's level as a new process has it (another test may have raised it)."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_quiet_silences_optunas_info_lines_and_experimental_warnings_for_its_block(
    optuna_at_info: None,
) -> None:
    shown = _Lines()
    logging.getLogger("optuna").addHandler(shown)  # beside optuna's own handler
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with adapter.quiet():
                study = optuna.create_study(study_name="hushed")
                study.set_metric_names(["loss"])
            assert (shown.lines, caught) == ([], [])
            assert optuna.logging.get_verbosity() == optuna.logging.INFO

            study = optuna.create_study(study_name="heard")
            study.set_metric_names(["loss"])
    finally:
        logging.getLogger("optuna").removeHandler(shown)
    assert shown.lines == ["A new study created in memory with name: heard"]
    assert [w.category for w in caught] == [ExperimentalWarning]


def test_overlapping_quiet_blocks_put_optunas_level_back_once_the_last_ends(
    optuna_at_info: None,
) -> None:
    first, second = adapter.quiet(), adapter.quiet()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # another thread's block ends first
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
    second.__exit__(None, None, None)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


def test_quiet_keeps_a_level_the_user_set_above_warning(optuna_at_info: None) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with adapter.quiet():
        assert optuna.logging.get_verbosity() == optuna.logging.ERROR
    assert optuna.logging.get_verbosity() == optuna.logging.ERROR
