"""The MLflow UI, in a real headless Chromium: `tuner ui` opens the study's experiment on MLflow's
model-training view, with the trials nested under the study's run, their metric charts and the
study's plots. The screenshots it takes illustrate the docs."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_tuner, start_tuner
from servers import MlflowServer, free_port
from tuner import mlflow_ui
from tuner.orchestrator import Orchestrator
from tuner.paths import location

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIDENCE = ROOT / "test-artifacts"
DOCS_IMAGES = ROOT / "docs" / "images"
"""Screenshots for the docs: written when missing, or all again with TUNER_UPDATE_DOCS_IMAGES=1
(each run differs in run colours and times, so they are not rewritten on every test run)."""
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
VIEWPORT = {"width": 1280, "height": 760}


def _printed_url(process: subprocess.Popen[str], timeout: float = 180) -> str:
    """The runs page `tuner ui` prints once its MLflow server answers."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, "".join(seen)
            continue
        seen.append(line)
        found = re.search(r"http://\S+#/experiments/\S+", line)
        if found:
            return found.group(0)
    raise AssertionError(f"`tuner ui` printed no runs page:\n{''.join(seen)}")


def _save(page: Any, name: str) -> None:
    EVIDENCE.mkdir(exist_ok=True)
    page.screenshot(path=str(EVIDENCE / name))
    if os.environ.get("TUNER_UPDATE_DOCS_IMAGES") == "1" or not (DOCS_IMAGES / name).exists():
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EVIDENCE / name, DOCS_IMAGES / name)


def _toggle_columns(page: Any, names: list[str]) -> None:
    """Ticks or unticks columns of the runs table in its "Columns" menu (a checkable tree that
    shows only the nodes in view, hence the search)."""
    page.get_by_role("button", name="Columns").click()
    menu = page.get_by_role("dialog")
    search = menu.get_by_placeholder("Search columns")
    for name in names:
        search.fill(name)
        exactly = re.compile(f"^{re.escape(name)}$")
        node = menu.locator("[class*=tree-treenode]").filter(has_text=exactly)
        node.locator("[class*=tree-checkbox]").first.click()
    search.fill("")
    page.keyboard.press("Escape")


def test_tuner_ui_opens_the_study_on_the_model_training_runs_view(
    tmp_path: Path, make_spec: Callable[..., Any]
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    spec = make_spec(
        name="ui-study",
        space={
            "x": {"type": "float", "low": -2.0, "high": 2.0},
            "steps": {"type": "int", "low": 5, "high": 20},
        },
        trial={"function": "examples.functions:curve"},
        budget={"max_trials": 4, "max_concurrent": 2},
        tracking={"mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}},
    )
    Orchestrator(spec).run()
    port = free_port()
    ui = start_tuner(
        "ui", str(location(spec).root), "--port", str(port), "--no-browser", cwd=tmp_path
    )
    try:
        url = _printed_url(ui)
        server = f"http://127.0.0.1:{port}"
        client = MlflowClient(server)
        experiment = client.get_experiment_by_name("ui-study")
        assert experiment is not None
        assert url == mlflow_ui.runs_view_url(server, experiment.experiment_id)
        experiment_page = f"{server}/#/experiments/{experiment.experiment_id}"
        found = client.search_runs([experiment.experiment_id])
        runs = {r.info.run_name: r.info.run_id for r in found}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport=VIEWPORT)  # a first visit: MLflow's defaults
                page.goto(url)
                parent = page.locator("[role=gridcell]", has=page.locator("a", has_text="ui-study"))
                parent.first.wait_for(timeout=60_000)
                # Model training's side bar; GenAI's has "Evaluation runs" (the study's run as
                # an evaluation) and no model registry.
                assert page.get_by_role("link", name="Model registry").is_visible()
                assert page.get_by_text("Evaluation runs").count() == 0
                assert "/runs" in page.url
                page.get_by_role("button", name="Close").first.click()  # MLflow's assistant
                _toggle_columns(page, ["loss", "x", "steps", "Dataset", "Source", "Models"])
                assert page.get_by_text("trial-0000").count() == 0  # nested: folded at first
                parent.first.locator("button").first.click()  # unfold the study's run
                for number in range(4):
                    page.get_by_text(f"trial-{number:04d}").wait_for(timeout=30_000)
                _save(page, "mlflow-runs.png")

                trial = f"{experiment_page}/runs/{runs['trial-0000']}"
                page.goto(f"{trial}/model-metrics?workflowType=machine_learning")
                page.get_by_text("trial-0000 (loss)").wait_for(timeout=30_000)  # its curve
                page.locator("svg.main-svg").first.wait_for(timeout=30_000)
                _save(page, "mlflow-trial-metrics.png")

                study_run = runs["ui-study"]
                plot = "plots/optimization_history.png"
                page.goto(
                    f"{experiment_page}/runs/{study_run}/artifacts/{plot}"
                    "?workflowType=machine_learning"
                )
                page.get_by_text("param_importances.png").wait_for(timeout=30_000)
                page.get_by_alt_text(plot).wait_for(timeout=30_000)  # the plot, shown
                _save(page, "mlflow-study-plots.png")
            finally:
                browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
    with pytest.raises(urllib.error.URLError):  # stopped with `tuner ui`, all of it
        urllib.request.urlopen(f"{server}/health", timeout=5)
    for name in ("mlflow-runs.png", "mlflow-trial-metrics.png", "mlflow-study-plots.png"):
        assert 10_000 < (DOCS_IMAGES / name).stat().st_size < 400_000


def test_tuner_ui_gives_the_runs_page_of_a_study_on_a_tracking_server(
    tmp_path: Path, make_spec: Callable[..., Any]
) -> None:
    folder = tmp_path / "server"
    folder.mkdir()
    server = MlflowServer(folder).start()
    try:
        spec = make_spec(
            name="served-study",
            budget={"max_trials": 1, "max_concurrent": 1},
            tracking={"mlflow": {"tracking_uri": server.uri}},
        )
        Orchestrator(spec).run()
        shown = run_tuner("ui", str(location(spec).root), "--no-browser", cwd=tmp_path)
        experiment = MlflowClient(server.uri).get_experiment_by_name("served-study")
    finally:
        server.stop()
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert mlflow_ui.runs_view_url(server.uri, experiment.experiment_id) in shown.stdout


def test_a_browser_opens_only_where_there_is_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr("sys.platform", "linux")
    for name in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert not mlflow_ui.open_in_browser("http://127.0.0.1:5000/#/experiments/1/runs")
    assert opened == []  # over SSH: no text browser taking over the terminal

    monkeypatch.setenv("DISPLAY", ":0")
    assert mlflow_ui.open_in_browser("http://127.0.0.1:5000/#/experiments/1/runs")
    assert opened == ["http://127.0.0.1:5000/#/experiments/1/runs"]


def test_the_runs_page_opens_model_trainings_view() -> None:
    assert (
        mlflow_ui.runs_view_url("http://mlflow.example:5000/", "7")
        == "http://mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert mlflow_ui.runs_view_url("http://mlflow.example:5000", None).endswith(
        "/#/experiments?workflowType=machine_learning"
    )
