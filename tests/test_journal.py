"""The journal survives a write torn by a crash."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalStorage

from tuner.journal import DurableJournalFile


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    storage = JournalStorage(DurableJournalFile(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code":5,"worker_id":"x","trial_id":0,"st')  # killed mid-write

    again = JournalStorage(DurableJournalFile(str(path)))
    study = optuna.load_study(study_name="s", storage=again)
    assert len(study.trials) == 3  # the torn line is not read
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # appends after the cut

    reloaded = optuna.load_study(
        study_name="s", storage=JournalStorage(DurableJournalFile(str(path)))
    )
    assert [t.state for t in reloaded.trials] == [optuna.trial.TrialState.COMPLETE] * 5
    assert path.read_bytes().startswith(whole)


def test_a_journal_of_only_a_torn_line_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    path.write_bytes(b'{"op_code":0,"worker_')
    storage = JournalStorage(DurableJournalFile(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 1
