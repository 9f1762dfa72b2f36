"""Crashes on an embedded Ray cluster: the orchestrator killed mid-trial, and a trial's worker
killed under it (an infrastructure failure: the trial is retried, not failed or run twice)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import failpoint_scenario, fresh_sqlite_uri
from scenarios import RAY_EMBEDDED, ray_worker_scenario

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_an_orchestrator_killed_with_ray_trials_running_resumes_whole(tmp_path: Path) -> None:
    verdict = failpoint_scenario(
        tmp_path,
        "trial.submitted@3",
        tracking_uri=fresh_sqlite_uri(tmp_path),
        backend=RAY_EMBEDDED,
        trials=6,
    )
    assert verdict.ok, verdict.report()


def test_a_trials_killed_worker_is_retried_and_the_invariants_hold(tmp_path: Path) -> None:
    verdict = ray_worker_scenario(tmp_path)
    assert verdict.ok, verdict.report()
