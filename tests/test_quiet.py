"""Quiet and named: a study run from Python prints tuner's lines only, and its store names the
objective's metric (optuna-dashboard's axis labels)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, subprocess_env
from servers import MlflowServer
from tuner.orchestrator import Orchestrator
from tuner.store import load_study, open_study
from tuner.tracking import quiet_client

# A new script or notebook: logging as Python leaves it, MLflow's and optuna's as they set it.
SCRIPT = """
import json, sys
from tuner.orchestrator import Orchestrator
from tuner.spec import StudySpec

spec = StudySpec.model_validate(json.loads(sys.argv[1]), context={"spec_dir": sys.argv[2]})
summary = Orchestrator(spec).run()
print(f"tuner: {summary.finished} trials finished")
"""


# The same study through the Python API, as a notebook or script writes it.
STUDY_SCRIPT = """
import sys
import tuner

study = tuner.Study(
    name="quiet-study",
    trial="examples.functions:curve",
    space={"x": tuner.Float(-2.0, 2.0)},
    objective="loss",
    strategy="bayesian",
    seed=7,
    pruner="median",
    max_trials=3,
    max_concurrent=1,
    backend="inprocess",
    tracking=sys.argv[1],
)
result = study.run()
print(f"tuner: best trial {result.best.number}")
"""

FOREIGN = (
    "A new study created",  # optuna's INFO lines: "[I 2024-...] A new study created in ..."
    "Using an existing study",
    "[I ",
    "Trial 0 finished",
    "View run",  # MLflow's "🏃 View run trial-0000 at: http://..." on a tracking server
    "View experiment",
    "🏃",
    "Creating initial MLflow database tables",
    "INFO",
)
"""What optuna and MLflow print when left to themselves, and tuner must keep quiet."""


def assert_only_tuners_lines(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    for stream in (done.stdout, done.stderr):
        leaked = [line for line in stream.splitlines() if any(f in line for f in FOREIGN)]
        assert leaked == [], stream


def fresh_env() -> dict[str, str]:
    """A new terminal's environment: no MLFLOW_* settings from the tests' own process."""
    return {k: v for k, v in subprocess_env().items() if not k.startswith("MLFLOW_")}


@pytest.fixture(params=["sqlite", "server"])
def tracking_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An MLflow store of each kind: a database file, and a tracking server (where MLflow
    prints a "View run" line for every run a client ends)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlflow.db'}"
        return
    folder = tmp_path / "server"
    folder.mkdir()
    server = MlflowServer(folder).start()
    try:
        yield server.uri
    finally:
        server.stop()


def run_fresh(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``args`` in a fresh process (nothing configured yet) and returns what it printed."""
    return subprocess.run(
        args, cwd=cwd, env=fresh_env(), capture_output=True, text=True, timeout=300
    )


def quiet_spec(name: str, tracking_uri: str, **sections: Any) -> dict[str, Any]:
    """A small study with early stopping and MLflow on a server: every voice that leaked."""
    return {
        "name": name,
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {"x": {"type": "float", "low": -2.0, "high": 2.0}},
        "strategy": {"type": "bayesian", "seed": 7},
        "pruner": {"type": "median"},
        "budget": {"max_trials": 3, "max_concurrent": 1},
        "trial": {"function": "examples.functions:curve"},
        "backend": {"type": "inprocess"},
        "tracking": {"mlflow": {"tracking_uri": tracking_uri}},
        **sections,
    }


def test_a_study_run_from_python_prints_nothing_but_its_own_lines(
    tmp_path: Path, tracking_uri: str
) -> None:
    spec = quiet_spec("quiet-study", tracking_uri, storage={"dir": str(tmp_path / "studies")})
    done = run_fresh([sys.executable, "-c", SCRIPT, json.dumps(spec), str(ROOT)], tmp_path)
    assert done.returncode == 0, done.stderr
    # Each of these leaked before: optuna's "[I ...] A new study created in Journal with name"
    # and "Using an existing study", MLflow's "INFO mlflow.store.db.utils: Creating initial
    # MLflow database tables", and a "🏃 View run trial-0000 at: ..." per run on a server.
    assert done.stdout.splitlines() == ["tuner: 3 trials finished"], done.stdout
    assert done.stderr == ""


def test_a_finished_study_names_its_objective_metric(make_spec: Callable[..., Any]) -> None:
    spec = make_spec(objective={"metric": "val_loss", "direction": "minimize"})
    Orchestrator(spec).run()
    study = load_study(spec)
    assert study.metric_names == ["val_loss"]
    assert "value_val_loss" in study.trials_dataframe().columns  # optuna's own tables use it


def test_a_study_whose_objective_changed_is_named_for_the_new_one(
    make_spec: Callable[..., Any],
) -> None:
    open_study(make_spec(objective={"metric": "loss", "direction": "minimize"}))
    renamed = make_spec(objective={"metric": "error", "direction": "minimize"})
    assert open_study(renamed).metric_names == ["error"]


def test_opening_a_study_leaves_optunas_logging_as_it_was(make_spec: Callable[..., Any]) -> None:
    import optuna

    before = optuna.logging.get_verbosity()
    open_study(make_spec())
    load_study(make_spec())
    assert optuna.logging.get_verbosity() == before


def test_the_trackers_client_leaves_mlflows_logging_as_it_was(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow  # noqa: F401  (configures its logger: INFO, as in a notebook)

    logger = logging.getLogger("mlflow")
    monkeypatch.setattr(logger, "level", logging.INFO)
    quiet_client(mlflow_uri)
    assert logger.level == logging.INFO
    assert "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT" not in os.environ


def test_a_study_run_through_the_python_api_prints_only_tuners_lines(
    tmp_path: Path, tracking_uri: str
) -> None:
    done = run_fresh([sys.executable, "-c", STUDY_SCRIPT, tracking_uri], tmp_path)
    assert_only_tuners_lines(done)
    assert "quiet-study" in done.stdout  # the progress display: tuner's own lines
    assert done.stdout.splitlines()[-1].startswith("tuner: best trial ")


def test_tuner_run_prints_only_tuners_lines(tmp_path: Path, tracking_uri: str) -> None:
    spec = quiet_spec("quiet-cli", tracking_uri)
    (tmp_path / "study.yaml").write_text(json.dumps(spec))  # JSON is YAML
    done = run_fresh([sys.executable, "-m", "tuner.cli", "run", "study.yaml"], tmp_path)
    assert_only_tuners_lines(done)
    assert "quiet-cli" in done.stdout + done.stderr
