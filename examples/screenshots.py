"""Runs an example study against a real MLflow server and screenshots what MLflow shows of it.

The pictures in the examples' READMEs come from here, so they show what a researcher sees
after ``tuner run``: the trials' runs sorted by the objective, the study's optimization
history (a plot tuner attaches to the study's run), and (for studies that report as they
train) the best trial's learning curve.
From the repository root::

    python examples/screenshots.py command record-linkage quickstart sagemaker-text-classifier

Each example's pictures land in its folder as ``mlflow-*.png``. Needs Chromium (Debian's
``chromium`` package; ``make test`` installs it) and playwright (the ``ui-test`` extra).
Everything else happens in a temporary folder: the study's state, the MLflow store, the server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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
"""Chromium as root in a container without a sandbox, with nothing that reaches the network."""


@dataclass(frozen=True)
class Example:
    """What to run and what to show of one example.

    Attributes:
        spec: the spec file, relative to the repository root.
        metrics: metric columns of the runs table (the objective first).
        params: parameter columns of the runs table.
        changes: keyword changes to the spec (``tuner.Study.from_yaml``), e.g. a smaller budget.
        curve: the metric whose curve by step the best trial's page shows, if it reports one.
        wide: parameter columns widened to show their long values.
    """

    spec: str
    metrics: tuple[str, ...]
    params: tuple[str, ...]
    changes: dict[str, Any] = field(default_factory=dict)
    curve: str | None = None
    wide: tuple[str, ...] = ()


EXAMPLES = {
    "record-linkage": Example(
        spec="examples/record-linkage/study.yaml",
        metrics=("f1", "precision", "recall", "blocking_recall"),
        params=("blocking", "classifier", "ids_method"),
        wide=("blocking",),
    ),
    "quickstart": Example(
        spec="examples/quickstart/study.yaml",
        metrics=("val_accuracy", "val_accuracy_std"),
        params=("kernel", "C", "gamma", "degree"),
        curve="val_accuracy",
    ),
    "command": Example(
        spec="examples/command/study.yaml",
        metrics=("val_loss",),
        params=("lr", "width", "optimizer"),
        curve="val_loss",
    ),
    "sagemaker-text-classifier": Example(
        spec="examples/sagemaker-text-classifier/local.yaml",
        metrics=("val_loss", "val_accuracy"),
        params=("lr", "embed_dim", "hidden", "dropout", "ngrams"),
        changes={"max_trials": 10},
        curve="val_loss",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples", nargs="+", choices=sorted(EXAMPLES))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("Chromium is not installed: `apt-get install chromium` (or `make test`)")
    os.chdir(ROOT)  # the quickstart's trial is `examples.quickstart.train:train_svm`
    for name in args.examples:
        example = EXAMPLES[name]
        with (
            tempfile.TemporaryDirectory(prefix=f"tuner-screenshots-{name}-") as folder,
            mlflow_server(Path(folder)) as uri,
        ):
            result = run_study(example, uri, Path(folder))
            shots = screenshot(example, uri, result, chromium, (args.width, args.height))
        for shot in shots:
            print(shot.relative_to(ROOT))


def run_study(example: Example, uri: str, folder: Path) -> Any:
    """Runs the example's study, tracked on ``uri``; returns its ``tuner.StudyResult``."""
    import tuner

    study = tuner.Study.from_yaml(ROOT / example.spec, **example.changes)
    mlflow = study.spec.tracking.mlflow
    experiment = (mlflow.experiment if mlflow else None) or study.name
    study = tuner.Study(
        study.spec,
        tracking={"mlflow": {"experiment": experiment, "tracking_uri": uri}},
        storage={"dir": str(folder / "studies")},
    )
    result = study.run(progress=False)
    print(result)
    return result


def screenshot(
    example: Example, uri: str, result: Any, chromium: str, size: tuple[int, int]
) -> list[Path]:
    """Screenshots of the study in the MLflow UI, saved next to the example's spec."""
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    mlflow = result.spec.tracking.mlflow
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(mlflow.experiment or result.name)
    if experiment is None or result.best is None or result.best.run_id is None:
        raise RuntimeError(f"study {result.name} has no best trial with an MLflow run")
    best = client.get_run(result.best.run_id)
    parent_id = best.data.tags["mlflow.parentRunId"]
    ascending = result.spec.objective.direction.value == "minimize"
    folder = (ROOT / example.spec).parent
    width, height = size
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            base = f"{uri}/#/experiments/{experiment.experiment_id}"
            page.goto(f"{base}/runs")
            _model_training_view(page)
            _runs_table(page, example, result.name, ascending=ascending)
            shots.append(_save(page, folder / "mlflow-runs.png"))

            page.goto(f"{base}/runs/{parent_id}/artifacts")
            page.get_by_text("plots", exact=True).click()
            page.get_by_text("optimization_history.png", exact=True).click()
            page.locator("img[src^='blob:']").first.wait_for(timeout=30_000)
            shots.append(_save(page, folder / "mlflow-history.png"))

            if example.curve is not None:
                page.goto(f"{base}/runs/{best.info.run_id}/model-metrics")
                page.get_by_text(example.curve, exact=True).first.wait_for(timeout=30_000)
                shots.append(_save(page, folder / "mlflow-best-trial.png"))
        finally:
            browser.close()
    return shots


def _model_training_view(page: Any) -> None:
    """MLflow 3 opens on its GenAI view; tuner's runs are model training."""
    page.get_by_text("Model training", exact=True).click()
    close = page.get_by_role("button", name="Close")  # the assistant's side panel
    if close.count():
        close.first.click()
    page.get_by_role("button", name="Toggle sidebar").click()


def _runs_table(page: Any, example: Example, study_name: str, *, ascending: bool) -> None:
    """The trials' runs with the example's columns, sorted by the objective."""
    study = page.locator("[role=row]", has=page.locator("a", has_text=study_name))
    study.first.wait_for(timeout=60_000)
    study.first.locator("button").first.click()  # unfold it: the columns list the trials' keys
    page.get_by_text("trial-0000", exact=True).wait_for(timeout=30_000)
    page.get_by_role("button", name="Columns", exact=True).click()
    menu = page.get_by_role("dialog")
    for name in ("Dataset", "Source", "Models", *example.metrics, *example.params):
        menu.get_by_text(name, exact=True).first.click()
    page.keyboard.press("Escape")
    objective = example.metrics[0]
    page.get_by_role("button", name="Sort: Created").click()
    page.get_by_test_id(f"sort-select-{objective}").click()  # closes the menu; descending
    if ascending:
        page.get_by_role("button", name=f"Sort: {objective}").click()
        page.get_by_test_id("sort-select-asc").click()
        page.keyboard.press("Escape")
    for name in example.wide:
        handle = page.locator(f".ag-header-cell[col-id='params.`{name}`'] .ag-header-cell-resize")
        box = handle.last.bounding_box()
        if box is not None:
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + 2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + 200, y, steps=10)
            page.mouse.up()


def _save(page: Any, path: Path) -> Path:
    page.wait_for_timeout(1500)  # let charts and images finish drawing
    page.screenshot(path=str(path))
    return path


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite store) in its own process group; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    uri = f"http://127.0.0.1:{port}"
    log = (folder / "mlflow-server.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start:\n{(folder / 'mlflow-server.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield uri
    finally:
        # The server's job consumers outlive a SIGTERM for a long while; its store is
        # throwaway, so the whole process group goes at once.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


if __name__ == "__main__":
    main()
