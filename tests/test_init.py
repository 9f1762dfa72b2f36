"""`tuner init`: every starter passes `tuner validate`, the Ray ones run to their end as written,
the SageMaker one plans a dry run and runs as training jobs through AWS's toolkit; nothing is
overwritten unasked, and a combination the backend cannot run is refused with what to use."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml
from fake_sagemaker import BUCKET, FakeSageMaker, LocalTrainingJobs
from typer.testing import CliRunner

from conftest import run_tuner
from tuner.cli import app

runner = CliRunner()

STARTERS = [("ray", "function"), ("ray", "command"), ("sagemaker", "command")]


def init(*args: str) -> tuple[int, str]:
    """`tuner init ARGS` in this process, in the test's folder."""
    result = runner.invoke(app, ["init", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def written(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize(("backend", "trial"), STARTERS)
def test_every_starter_passes_validate(tmp_path: Path, backend: str, trial: str) -> None:
    code, out = init("digits", "--backend", backend, "--trial", trial)
    assert code == 0, out
    assert "wrote digits/study.yaml and digits/train.py" in out
    assert f"a {trial} trial on {backend}" in out
    for command in ("cd digits", "tuner validate study.yaml", "tuner run study.yaml"):
        assert f"\n  {command}\n" in out
    assert out.endswith("  tuner ui study.yaml\n")

    checked = run_tuner("validate", "study.yaml", cwd=tmp_path / "digits")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "study.yaml defines study digits" in checked.stdout


def test_every_section_of_the_spec_is_there_with_its_comments(tmp_path: Path) -> None:
    init("--name", "digits")
    text = (tmp_path / "study.yaml").read_text()
    sections = yaml.safe_load(text)

    assert list(sections) == [
        "name",
        "objective",
        "space",
        "strategy",
        "budget",
        "pruner",
        "trial",
        "backend",
        "tracking",
        "storage",
    ]
    for section in sections:
        above = text.split(f"\n{section}:")[0].rstrip().splitlines()[-1]
        assert above.startswith("#"), f"`{section}` has no comment above it"
    for alternative in ("{type: random}", "{type: grid}", "{type: asha", "address: auto"):
        assert alternative in text


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize(
    ("trial", "budget"), [("function", []), ("command", ["--max-trials", "6"])]
)
def test_the_ray_starters_run_to_their_end(tmp_path: Path, trial: str, budget: list[str]) -> None:
    """On the embedded Ray cluster, into MLflow's default store; the function starter with its
    own budget, the command one (a Python process per trial) with half of it."""
    code, out = init("--trial", trial, "--name", "digits")
    assert code == 0, out

    ran = run_tuner("run", "study.yaml", *budget, cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "stopped: max_trials reached" in ran.stdout
    assert (tmp_path / "mlflow.db").is_file()

    best = run_tuner("best", "study.yaml", "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stdout + best.stderr
    result = json.loads(best.stdout)
    assert result["metric"] == "val_accuracy"
    assert result["value"] > 0.5, "a network that learned nothing scores 0.1 on ten digits"
    assert {"val_accuracy", "val_loss"} <= set(result["metrics"])
    assert {"lr", "hidden", "layers", "alpha", "solver"} <= set(result["params"])


def test_the_sagemaker_starter_plans_a_dry_run(tmp_path: Path) -> None:
    code, out = init("--backend", "sagemaker", "--name", "digits")
    assert code == 0, out

    planned = run_tuner("run", "study.yaml", "--dry-run", cwd=tmp_path)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "trial: python train.py on backend sagemaker" in planned.stdout
    assert "dry run: nothing was started" in planned.stdout
    assert not (tmp_path / "tuner-studies").exists()


@pytest.mark.slow
def test_the_sagemaker_starter_runs_as_training_jobs_through_the_toolkit(
    sagemaker: FakeSageMaker, tmp_path: Path
) -> None:
    """As AWS's scikit-learn image runs it: the folder shipped as code, the parameters as
    arguments, the printed metrics read, the model saved where SageMaker uploads it."""
    init("--backend", "sagemaker", "--name", "digits")
    spec = tmp_path / "study.yaml"
    spec.write_text(
        spec.read_text()
        .replace("s3://my-bucket/", f"s3://{BUCKET}/")
        .replace("# poll_interval: 15", "poll_interval: 0.2")
    )
    LocalTrainingJobs(sagemaker, tmp_path / "jobs").install()

    ran = run_tuner("run", "study.yaml", "--max-trials", "2", cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "digits: 2 complete" in ran.stdout
    s3 = sagemaker.client("s3")
    for name in sagemaker.created:
        assert sagemaker.requests[name]["HyperParameters"]["sagemaker_program"] == "train.py"
        key = f"digits/models/{name}/output/model.tar.gz"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
            assert tar.getnames() == ["model.joblib"]


def test_sagemaker_trials_are_commands_by_default(tmp_path: Path) -> None:
    code, out = init("--backend", "sagemaker")
    assert code == 0, out
    assert "a command trial on sagemaker" in out
    trial = yaml.safe_load((tmp_path / "study.yaml").read_text())["trial"]
    assert trial["command"] == ["python", "train.py"]


def test_a_function_trial_on_sagemaker_is_refused_with_what_to_use(tmp_path: Path) -> None:
    code, out = init("--backend", "sagemaker", "--trial", "function")
    assert code == 2
    assert "the sagemaker backend runs programs" in out
    assert "use `--trial command`" in out
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_named_and_kept_unless_forced(tmp_path: Path) -> None:
    init("--name", "mine")
    (tmp_path / "train.py").write_text("# my own training code\n")
    before = written(tmp_path)

    code, out = init("--trial", "command")
    assert code == 2
    assert "study.yaml and train.py already exist" in out
    assert "--force" in out
    assert written(tmp_path) == before

    (tmp_path / "study.yaml").unlink()
    code, out = init()
    assert code == 2
    assert "train.py already exists" in " ".join(out.split())
    assert not (tmp_path / "study.yaml").exists()

    code, out = init("--trial", "command", "--force")
    assert code == 0, out
    assert "import argparse" in (tmp_path / "train.py").read_text()


def test_the_name_comes_from_the_folder_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    code, out = init("My Project (v2)")
    assert code == 0, out
    assert "\n  cd 'My Project (v2)'\n" in out
    assert yaml.safe_load((tmp_path / "My Project (v2)" / "study.yaml").read_text())["name"] == (
        "My-Project-v2"
    )

    code, out = init("other", "--name", "two words")
    assert code == 2
    assert "`--name two words` is not a study name" in out
    assert not (tmp_path / "other").exists()


def test_a_file_is_no_folder_to_write_into(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    code, out = init("notes.txt")
    assert code == 2
    assert "notes.txt is a file; give a folder" in out
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_a_name_yaml_would_read_as_a_number_stays_a_string(tmp_path: Path) -> None:
    init("--backend", "sagemaker", "--name", "1e3")
    spec = yaml.safe_load((tmp_path / "study.yaml").read_text())
    assert spec["name"] == "1e3"
    assert spec["tracking"]["mlflow"]["experiment"] == "1e3"
    assert spec["backend"]["tags"] == {"project": "1e3"}
