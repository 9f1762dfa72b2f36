"""The examples run as their READMEs say: every spec loads; the quickstart and the command
trial run with `tuner run` into MLflow; the text classifier tunes both on the embedded Ray
cluster and, as SageMaker would run it, in its image's layout; the record linkage study finds
FEBRL's duplicates; and the notebooks run end to end in a real kernel."""

from __future__ import annotations

import csv
import importlib
import io
import math
import shutil
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fake_sagemaker import BUCKET, FakeSageMaker, LocalTrainingJobs
from notebooks import execute_notebook, outputs

from conftest import ROOT
from tuner.orchestrator import Orchestrator
from tuner.records import TrialState
from tuner.spec import load_spec
from tuner.store import load_study, records

TEXT = ROOT / "examples" / "sagemaker-text-classifier"
LINKAGE = ROOT / "examples" / "record-linkage"
QUICKSTART = ROOT / "examples" / "quickstart"
COMMAND = ROOT / "examples" / "command"


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("examples/*/*.yaml")), ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_example_spec_loads(path: Path) -> None:
    assert load_spec(path).name


# --- tuner run, as the READMEs say ---------------------------------------------------------


@pytest.mark.ray
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("spec_file", "params"),
    [
        (QUICKSTART / "study.yaml", {"C", "gamma", "kernel"}),
        (COMMAND / "study.yaml", {"lr", "width", "optimizer"}),
    ],
    ids=["quickstart", "command"],
)
def test_an_example_study_runs_with_tuner_run_into_mlflow(
    ray_cluster: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec_file: Path,
    params: set[str],
) -> None:
    """`tuner run examples/NAME/study.yaml` with three trials: the study's state and its MLflow
    runs land in the folder it was started in, every trial finished with a finite objective,
    and each trial's run holds its parameters and objective."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    import tuner
    from tuner.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the spec's default store
    spec = load_spec(spec_file)
    objective = spec.objectives[0].metric
    assert spec.tracking.mlflow is not None

    outcome = CliRunner().invoke(app, ["run", str(spec_file), "--max-trials", "3"])

    assert outcome.exit_code == 0, outcome.output
    result = tuner.load(spec.name, dir=str(tmp_path / "tuner-studies"))
    assert [trial.state for trial in result.records] == [TrialState.COMPLETE] * 3
    for trial in result.records:
        assert trial.value is not None
        assert math.isfinite(trial.value), trial
        assert params <= set(trial.params)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec.tracking.mlflow.experiment or spec.name)
    assert experiment is not None
    runs = {
        int(run.data.tags["tuner.trial"]): run
        for run in client.search_runs([experiment.experiment_id])
        if "tuner.trial" in run.data.tags
    }
    assert sorted(runs) == [trial.number for trial in result.records]
    for trial in result.records:
        assert runs[trial.number].data.metrics[objective] == pytest.approx(trial.value)
        assert params <= set(runs[trial.number].data.params)


def _small(spec: Any, tmp_path: Path, **backend: Any) -> Any:
    """The example's spec, two trials, state and MLflow in the test's folder."""
    data = spec.model_dump(mode="json", exclude_none=True)
    data["budget"] = {**data["budget"], "max_trials": 2, "max_concurrent": 2}
    data["storage"] = {"dir": str(tmp_path / "studies")}
    data["tracking"] = {"mlflow": None}
    data["strategy"] = {"type": "random", "seed": 1}
    data["trial"]["command"] = ["python", "train.py", "--epochs", "2"]
    if backend:
        data["backend"] = {**data["backend"], **backend}
    return type(spec).model_validate(data, context={"spec_dir": str(TEXT)})


@pytest.mark.ray
@pytest.mark.slow
def test_the_text_classifier_tunes_on_the_local_ray_cluster(
    ray_cluster: Any, tmp_path: Path
) -> None:
    spec = _small(load_spec(TEXT / "local.yaml"), tmp_path)
    summary = Orchestrator(spec).run()

    assert summary.counts[TrialState.COMPLETE] == 2
    for trial in records(load_study(spec)):
        assert set(trial.metrics) == {"val_loss", "val_accuracy"}
        assert 0.0 < trial.metrics["val_accuracy"] <= 1.0


@pytest.mark.slow
def test_the_text_classifier_runs_as_a_sagemaker_job_in_its_image(
    sagemaker: FakeSageMaker, tmp_path: Path
) -> None:
    """The custom-image path: train.py where the Dockerfile puts it, run by the toolkit with
    the data from the `train` channel; its model lands in S3."""
    s3 = sagemaker.client("s3")
    for name in ("train.csv", "val.csv"):
        s3.upload_file(str(TEXT / "data" / name), BUCKET, f"text/data/{name}")
    spec = load_spec(TEXT / "study.yaml")
    LocalTrainingJobs(
        sagemaker, tmp_path / "jobs", images={spec.backend.image_uri: TEXT / "train.py"}
    ).install()
    spec = _small(
        spec,
        tmp_path,
        inputs={"train": f"s3://{BUCKET}/text/data"},
        output_path=f"s3://{BUCKET}/text/models",
        spot={"enabled": True, "max_wait": "2h", "checkpoint_path": f"s3://{BUCKET}/text/ckpt"},
        poll_interval=0.2,
    )
    summary = Orchestrator(spec).run()

    assert summary.counts[TrialState.COMPLETE] == 2
    for trial in records(load_study(spec)):
        assert set(trial.metrics) == {"val_loss", "val_accuracy"}
        job = trial.details["sagemaker.job_name"]
        body = s3.get_object(Bucket=BUCKET, Key=f"text/models/{job}/output/model.tar.gz")["Body"]
        with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
            assert sorted(tar.getnames()) == ["model.pt", "vocabulary.json"]
    assert summary.cost is not None


# --- record linkage ------------------------------------------------------------------------

CLASSIFIER_PARAMS = {
    "logistic": {"logistic_C"},
    "naive_bayes": {"nb_alpha"},
    "svm": {"svm_C"},
    "kmeans": set(),
    "ecm": {"ecm_init", "ecm_max_iter"},
}


@pytest.fixture
def linkage(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The record-linkage example's trial module, imported as its spec imports it."""
    monkeypatch.syspath_prepend(str(LINKAGE))
    return importlib.import_module("linkage")


def best_random_f1(linkage: ModuleType, params: dict[str, Any]) -> float:
    """The best F1 a model that labels the candidate pairs of ``params``' blocking at random
    can expect: labelling a share q of them gets precision b (the share of true pairs among
    the candidates) and recall q * (blocking recall), so F1 peaks at q = 1, every candidate
    called a match."""
    _, validation = linkage.halves()
    pairs = linkage.candidate_pairs(validation.records, params)
    found = len(pairs.intersection(validation.links))
    precision, recall = found / len(pairs), found / len(validation.links)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.ray
@pytest.mark.slow
def test_the_record_linkage_study_finds_duplicates_better_than_chance(
    ray_cluster: Any, tmp_path: Path, mlflow_uri: str, linkage: ModuleType
) -> None:
    from mlflow.tracking import MlflowClient

    spec = load_spec(LINKAGE / "study.yaml")
    data = spec.model_dump(mode="json", exclude_none=True)
    data["budget"] = {**data["budget"], "max_trials": 4, "max_concurrent": 2}
    data["storage"] = {"dir": str(tmp_path / "studies")}
    data["tracking"] = {"mlflow": {"experiment": "febrl-dedup", "tracking_uri": mlflow_uri}}
    spec = type(spec).model_validate(data, context={"spec_dir": str(LINKAGE)})

    summary = Orchestrator(spec).run()

    assert summary.counts[TrialState.COMPLETE] == 4
    trials = records(load_study(spec))
    for trial in trials:
        params, metrics = trial.params, trial.metrics
        # Conditional parameters exist exactly where their condition holds.
        sorted_blocking = params["blocking"] == "sorted_neighbourhood"
        assert ("window" in params) == ("sort_key" in params) == sorted_blocking, params
        chosen = set(params) & set().union(*CLASSIFIER_PARAMS.values())
        assert chosen == CLASSIFIER_PARAMS[params["classifier"]], params
        # F1 is scored against every true pair, those that blocking lost included.
        assert 0.0 <= metrics["recall"] <= metrics["blocking_recall"] <= 1.0
        precision, recall = metrics["precision"], metrics["recall"]
        if precision + recall > 0:
            assert metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    best = max(trials, key=lambda t: t.metrics["f1"])
    assert best.metrics["f1"] > best_random_f1(linkage, dict(best.params)), best.params

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("febrl-dedup")
    assert experiment is not None
    runs = {
        int(run.data.tags["tuner.trial"]): run
        for run in client.search_runs([experiment.experiment_id])
        if "tuner.trial" in run.data.tags
    }
    assert sorted(runs) == [t.number for t in trials]
    for trial in trials:
        run = runs[trial.number]
        assert run.data.params == {k: str(v) for k, v in trial.params.items()}
        for name in ("f1", "precision", "recall", "blocking_recall", "candidate_pairs"):
            assert run.data.metrics[name] == pytest.approx(trial.metrics[name])


def test_a_classifier_that_cannot_learn_from_one_class_keeps_the_blocking_rule(
    linkage: ModuleType,
) -> None:
    """Blocking on the social security number makes every training pair a true pair: a
    supervised classifier has nothing to learn, and the model calls every candidate a match."""
    params = {
        "blocking": "soc_sec_id",
        **{f"{field}_method": "jarowinkler" for field in linkage.STRING_FIELDS},
        **{f"{field}_threshold": 0.85 for field in linkage.STRING_FIELDS},
        "ids_method": "exact",
        "classifier": "logistic",
        "logistic_C": 1.0,
    }
    metrics = linkage.deduplicate(params)

    assert metrics["recall"] == pytest.approx(metrics["blocking_recall"])
    assert metrics["f1"] == pytest.approx(best_random_f1(linkage, params))


# --- notebooks -----------------------------------------------------------------------------


def _no_escape_codes(notebook: Any) -> None:
    texts = outputs(notebook, "stream") + outputs(notebook, "text/plain")
    assert not [text for text in texts if "\x1b[" in text]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_quickstart_notebook_tunes_the_svm_defined_in_a_cell(tmp_path: Path) -> None:
    import numpy as np
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_digits

    import tuner

    notebook = execute_notebook(QUICKSTART / "quickstart.ipynb", cwd=tmp_path, timeout=300)

    result = tuner.load("digits-svm-notebook", dir=str(tmp_path / "tuner-studies"))
    assert result.counts[TrialState.COMPLETE] == 12
    _, labels = load_digits(return_X_y=True)
    chance = np.bincount(labels).max() / len(labels)  # always guessing the commonest digit
    assert result.best is not None
    assert result.best.value > chance
    assert len(outputs(notebook, "application/vnd.plotly.v1+json")) == 2
    _no_escape_codes(notebook)
    # The MLflow view the README describes: the best trial's run holds its accuracy.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.best.run_id is not None
    run = client.get_run(result.best.run_id)
    assert run.data.metrics["val_accuracy"] == pytest.approx(result.best.value)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_text_classifier_notebook_runs_the_local_spec_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook loads local.yaml next to it; it runs in a copy of the example's folder."""
    import tuner

    folder = tmp_path / "text-classifier"
    folder.mkdir()
    for name in ("local.yaml", "train.py", "data"):
        copy = shutil.copytree if (TEXT / name).is_dir() else shutil.copy
        copy(TEXT / name, folder / name)

    notebook = execute_notebook(TEXT / "local.ipynb", cwd=folder, timeout=300)

    monkeypatch.chdir(folder)  # where the notebook ran: its spec's folders are relative to it
    result = tuner.load("text-classifier-local")
    finished = result.counts.get(TrialState.COMPLETE, 0) + result.counts.get(TrialState.PRUNED, 0)
    assert finished == 6  # the notebook's change: max_trials=6 instead of the spec's 16
    with (TEXT / "data" / "train.csv").open(newline="") as handle:
        classes = {row["label"] for row in csv.DictReader(handle)}
    uniform_loss = math.log(len(classes))  # cross-entropy of a model that learned nothing
    assert result.best is not None
    assert result.best.value < uniform_loss
    assert len(outputs(notebook, "application/vnd.plotly.v1+json")) == 2
    _no_escape_codes(notebook)
