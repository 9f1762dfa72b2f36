"""A `tuner run` SIGKILLed at each dangerous moment, then resumed: nothing lost, nothing run
twice, and the MLflow mirror equals the store (tests/crash/harness.py checks all three).

The studies run on the in-process backend with an MLflow sqlite store, so each case is a few
seconds of real `tuner` processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import failpoint_scenario, fresh_sqlite_uri, random_scenario
from scenarios import server_down_scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "failpoints",
    [
        pytest.param("study.started", id="before-the-first-trial"),
        pytest.param("trial.submitted@3", id="mid-trial"),
        pytest.param("trial.finished@3", id="between-a-trials-end-and-its-tell"),
        pytest.param("trial.told@3", id="after-the-tell-before-mlflow-heard"),
        pytest.param("journal.append@30", id="a-torn-journal-write"),
        pytest.param("journal.append@2", id="before-the-study-is-whole-in-the-store"),
        pytest.param("mlflow.batch@2", id="the-mlflow-writer-mid-batch"),
        pytest.param("mlflow.claimed@3", id="a-run-claimed-but-its-id-not-stored"),
    ],
)
def test_a_killed_orchestrator_resumes_with_nothing_lost_run_twice_or_unmirrored(
    tmp_path: Path, failpoints: str
) -> None:
    verdict = failpoint_scenario(tmp_path, failpoints, tracking_uri=fresh_sqlite_uri(tmp_path))
    assert verdict.ok, verdict.report()


def test_a_kill_while_the_pruner_stops_a_trial_loses_no_decision(tmp_path: Path) -> None:
    verdict = failpoint_scenario(
        tmp_path,
        "trial.pruning@1",
        tracking_uri=fresh_sqlite_uri(tmp_path),
        pruner={"type": "median", "n_startup_trials": 1},
        steps=4,
    )
    assert verdict.ok, verdict.report()


def test_a_resume_killed_in_turn_still_ends_whole(tmp_path: Path) -> None:
    verdict = failpoint_scenario(
        tmp_path,
        "trial.submitted@3",
        then=["trial.finished@2"],
        tracking_uri=fresh_sqlite_uri(tmp_path),
    )
    assert verdict.ok, verdict.report()


def test_a_kill_at_a_random_moment(tmp_path: Path) -> None:
    verdict = random_scenario(tmp_path, seed=1, tracking_uri=fresh_sqlite_uri(tmp_path))
    assert verdict.ok, verdict.report()


def test_a_tracking_server_down_at_the_kill_is_caught_up_by_resume_and_sync(
    tmp_path: Path,
) -> None:
    verdict = server_down_scenario(tmp_path)
    assert verdict.ok, verdict.report()
