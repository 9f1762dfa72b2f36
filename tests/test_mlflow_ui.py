"""The MLflow UI, in a real headless Chromium: the parent run with its nested trial runs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from servers import MlflowServer
from tuner.orchestrator import Orchestrator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIDENCE = Path(__file__).resolve().parent.parent / "test-artifacts" / "mlflow-ui.png"
# Chromium as root in a sandbox-less container, with nothing that reaches for the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def test_the_experiment_page_shows_the_study_with_its_trials_nested(
    tmp_path: Path, make_spec: Callable[..., Any]
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "server"
    folder.mkdir()
    server = MlflowServer(folder).start()
    try:
        spec = make_spec(
            name="ui-study",
            trial={"function": "examples.functions:curve"},
            budget={"max_trials": 3, "max_concurrent": 1},
            tracking={"mlflow": {"tracking_uri": server.uri}},
        )
        Orchestrator(spec).run()
        experiment = MlflowClient(server.uri).get_experiment_by_name("ui-study")
        assert experiment is not None
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{server.uri}/#/experiments/{experiment.experiment_id}/runs")
                page.get_by_text("Model training", exact=True).click()
                parent = page.locator("[role=gridcell]", has=page.locator("a", has_text="ui-study"))
                parent.first.wait_for(timeout=60_000)
                assert page.get_by_text("trial-0000").count() == 0  # nested: folded at first
                parent.first.locator("button").first.click()  # unfold the parent run
                for number in range(3):
                    page.get_by_text(f"trial-{number:04d}").wait_for(timeout=30_000)
                EVIDENCE.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(EVIDENCE))
            finally:
                browser.close()
    finally:
        server.stop()
    assert EVIDENCE.stat().st_size > 10_000
