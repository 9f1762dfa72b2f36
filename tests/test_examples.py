"""The examples run as their READMEs say: every spec loads, and the text classifier tunes both
on the embedded Ray cluster and, as SageMaker would run it, in its image's layout."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fake_sagemaker import BUCKET, FakeSageMaker, LocalTrainingJobs

from conftest import ROOT
from tuner.records import TrialState
from tuner.spec import load_spec
from tuner.store import load_study, records
from tuner.orchestrator import Orchestrator

TEXT = ROOT / "examples" / "sagemaker-text-classifier"


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("examples/*/*.yaml")), ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_example_spec_loads(path: Path) -> None:
    assert load_spec(path).name


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
