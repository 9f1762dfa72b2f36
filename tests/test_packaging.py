"""The wheel installs cleanly: `tuner` only (the backends inside it), and it runs."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("hpo_tuner-*.whl")
    return found


def test_the_wheel_holds_tuner_only_with_every_package_of_the_source(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"tuner"}
    source = {
        str(init.parent.relative_to(ROOT)).replace("backends", "tuner/backends", 1)
        if init.parts[len(ROOT.parts)] == "backends"
        else str(init.parent.relative_to(ROOT))
        for folder in ("tuner", "backends")
        for init in (ROOT / folder).rglob("__init__.py")
    }
    packaged = {str(Path(n).parent) for n in names if n.endswith("__init__.py")}
    assert source == packaged
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "ray = tuner.backends.ray:RayBackend" in text
    assert "sagemaker = tuner.backends.sagemaker:SageMakerBackend" in text


@pytest.mark.ray
def test_tuner_from_the_wheel_runs_a_study_and_knows_both_backends(
    wheel: Path, tmp_path: Path
) -> None:
    # A fresh virtual environment with the wheel in it, and, through a .pth line, this
    # environment's site-packages for the dependencies (whose own .pth files, the editable
    # install of this checkout among them, a plain path line does not run).
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert not (site / "backends").exists()
    assert (site / "tuner" / "backends" / "ray.py").exists()

    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: from-wheel\n"
        "objective: {metric: loss}\n"
        "space: {x: {type: float, low: -1.0, high: 1.0}}\n"
        "strategy: {type: random, seed: 1}\n"
        "budget: {max_trials: 2}\n"
        "trial: {function: 'quadratic:loss'}\n"
        "backend: {type: ray, num_cpus: 1}\n"
        "tracking: {mlflow: null}\n"
    )
    (tmp_path / "quadratic.py").write_text("def loss(params):\n    return params['x'] ** 2\n")
    sagemaker = tmp_path / "sagemaker.yaml"
    sagemaker.write_text(
        spec.read_text()
        .replace("name: from-wheel", "name: from-wheel-sm")
        .replace(
            "trial: {function: 'quadratic:loss'}",
            "trial: {command: [python, train.py], metric_definitions: "
            "[{name: loss, regex: 'loss=([0-9.]+)'}]}",
        )
        .replace(
            "backend: {type: ray, num_cpus: 1}",
            "backend: {type: sagemaker, role_arn: 'arn:aws:iam::123456789012:role/x', "
            "image_uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1, "
            "region: us-east-1, output_path: 's3://bucket/out'}",
        )
    )
    env = {"PATH": f"{fresh / 'bin'}:/usr/bin:/bin", "RAY_USAGE_STATS_ENABLED": "0"}
    env["HOME"] = str(tmp_path)

    def tuner(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "tuner.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import tuner, tuner.backends.ray as r; print(tuner.__file__, r.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.count(str(site)) == 2, where
    checked = tuner("validate", str(sagemaker))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = tuner("run", str(spec))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 complete" in ran.stdout
