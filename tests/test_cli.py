"""The `tuner` command, in process (CliRunner) and as a real process for signals."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from conftest import run_tuner, start_tuner
from tuner.cli import app

runner = CliRunner()

SPEC = textwrap.dedent(
    """\
    name: cli-study
    objective: {metric: loss, direction: minimize}
    space:
      x: {type: float, low: -2.0, high: 2.0}
      y: {type: float, low: -1.0, high: 1.0}
    strategy: {type: bayesian, engine: tpe, seed: 1}
    budget: {max_trials: 6, max_concurrent: 2}
    trial: {function: examples.functions:quadratic}
    backend: {type: inprocess}
    tracking: {mlflow: null}
    """
)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(SPEC)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_validate_accepts_a_good_spec(spec_file: Path) -> None:
    code, out = invoke("validate", str(spec_file))
    assert code == 0
    assert "cli-study" in out


def test_validate_points_at_each_problem_and_exits_2(spec_file: Path) -> None:
    spec_file.write_text(
        SPEC.replace("low: -2.0, high: 2.0", "low: 2.0, high: -2.0").replace(
            "max_trials: 6", "max_trails: 6"
        )
    )
    code, out = invoke("validate", str(spec_file))
    assert code == 2
    assert f"{spec_file}:4:" in out
    assert "space.x: `low < high` must hold" in out
    assert f"{spec_file}:7:" in out
    assert "unknown key `max_trails`; did you mean `max_trials`?" in out


def test_dry_run_shows_the_plan_and_runs_nothing(spec_file: Path, tmp_path: Path) -> None:
    code, out = invoke("run", str(spec_file), "--dry-run")
    assert code == 0
    assert "engine: tpe" in out
    assert "First configurations" in out
    assert not (tmp_path / "tuner-studies").exists()


def test_dry_run_shows_the_seed_trials_first_and_says_the_warm_start_is_read_later(
    spec_file: Path, tmp_path: Path
) -> None:
    spec_file.write_text(
        SPEC + "seed_trials: [{x: 1.25, y: -0.5}]\nwarm_start: {study: last-week}\n"
    )
    code, out = invoke("run", str(spec_file), "--dry-run")
    assert code == 0, out
    first = next(line for line in out.splitlines() if "│" in line)  # the table's first row
    assert first.split() == ["│", "1.25", "│", "-0.5", "│"]  # the seed trial runs first
    assert "warm start: from last-week, read when the study starts" in out
    assert not (tmp_path / "tuner-studies").exists()


def test_run_then_status_best_and_resume_by_any_name(spec_file: Path, tmp_path: Path) -> None:
    code, out = invoke("run", str(spec_file))
    assert code == 0, out
    assert "engine tpe" in out
    assert "6 complete" in out
    assert "· tpe" in out  # each trial line ends with the engine that proposed it
    assert "engine" in out.split("Best trials")[1]
    assert "stopped: max_trials reached" in out

    for ref in ("cli-study", str(spec_file), str(tmp_path / "tuner-studies" / "cli-study")):
        code, out = invoke("status", ref)
        assert code == 0, out
        assert "6 complete" in out

    code, out = invoke("best", "cli-study", "--json")
    assert code == 0
    best = json.loads(out)
    study = optuna.load_study(
        study_name="cli-study",
        storage=optuna.storages.journal.JournalStorage(
            optuna.storages.journal.JournalFileBackend(
                str(tmp_path / "tuner-studies/cli-study/journal.log")
            )
        ),
    )
    assert best["value"] == study.best_value
    assert best["params"] == study.best_params

    code, out = invoke("run", str(spec_file))
    assert code == 2
    assert "tuner resume cli-study" in out

    code, out = invoke("resume", "cli-study", "--max-trials", "3")  # three more
    assert code == 0, out
    assert "9 complete" in out

    code, out = invoke("run", str(spec_file), "--overwrite", "--max-trials", "2")
    assert code == 0, out
    assert "2 complete" in out


TWO_OBJECTIVES = textwrap.dedent(
    """\
    name: tradeoff
    objective: [{metric: error}, {metric: latency_ms}]
    space:
      width: {type: int, low: 1, high: 64}
      depth: {type: int, low: 1, high: 8}
      lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
    strategy: {type: random, seed: 5}
    budget: {max_trials: 12, max_concurrent: 2}
    trial: {function: examples.functions:accuracy_vs_latency}
    backend: {type: inprocess}
    tracking: {mlflow: null}
    """
)


def test_best_of_two_objectives_prints_the_pareto_front_as_a_table(tmp_path: Path) -> None:
    spec_file = tmp_path / "tradeoff.yaml"
    spec_file.write_text(TWO_OBJECTIVES)
    code, out = invoke("run", str(spec_file))
    assert code == 0, out
    study = optuna.load_study(
        study_name="tradeoff",
        storage=optuna.storages.journal.JournalStorage(
            optuna.storages.journal.JournalFileBackend(
                str(tmp_path / "tuner-studies/tradeoff/journal.log")
            )
        ),
    )
    values = {t.number: tuple(t.values) for t in study.trials}

    def dominated(mine: tuple[float, ...]) -> bool:
        return any(
            all(o <= m for o, m in zip(other, mine, strict=True)) and other != mine
            for other in values.values()
        )

    front = sorted(n for n, v in values.items() if not dominated(v))
    assert 0 < len(front) < len(values), "the test needs trials on and off the front"

    code, out = invoke("best", "tradeoff")
    assert code == 0, out
    assert (
        f"Pareto front of tradeoff ({len(front)} trials: minimize error, minimize latency_ms)"
        in (" ".join(out.split()))
    )
    rows = {
        int(cells[0]): cells[1:3]
        for line in out.splitlines()
        if (cells := [c.strip() for c in line.strip("│┃ ").split("│")])[0].isdigit()
    }
    assert sorted(rows) == front  # every front trial, and no dominated one
    for number in front:
        assert rows[number] == [f"{v:.6g}" for v in values[number]]


def test_status_shows_the_trial_environment_with_secrets_masked(spec_file: Path) -> None:
    spec_file.write_text(
        SPEC.replace("max_trials: 6", "max_trials: 1").replace(
            "trial: {function: examples.functions:quadratic}",
            "trial: {function: examples.functions:quadratic, "
            "env: {WANDB_API_KEY: w-secret-7, MODE: fast}}",
        )
    )
    code, out = invoke("run", str(spec_file))
    assert code == 0, out
    assert "w-secret-7" not in out
    code, out = invoke("status", "cli-study")
    assert code == 0, out
    assert "trial environment: WANDB_API_KEY=****, MODE=fast" in out
    assert "w-secret-7" not in out


def test_a_bad_option_is_one_error_line_with_exit_code_2(spec_file: Path, tmp_path: Path) -> None:
    code, out = invoke("run", str(spec_file), "--max-trials", "lots")
    assert code == 2
    assert out.startswith("error: tuner run: Invalid value for '--max-trials'")
    assert len(out.strip().splitlines()) == 1
    assert not (tmp_path / "tuner-studies").exists()


def test_markup_in_a_spec_is_printed_as_written(spec_file: Path) -> None:
    spec_file.write_text(SPEC.replace("max_trials: 6", "'[bold]max_trials[/]': 6"))
    code, out = invoke("validate", str(spec_file))
    assert code == 2
    assert "unknown key `[bold]max_trials[/]`" in out


def test_a_study_that_keeps_failing_exits_1(spec_file: Path) -> None:
    spec_file.write_text(
        SPEC.replace("examples.functions:quadratic", "examples.functions:flaky")
        .replace("low: -2.0, high: 2.0", "low: -2.0, high: -1.0")
        .replace("max_concurrent: 2}", "max_concurrent: 2, max_failures: 2}")
    )
    code, out = invoke("run", str(spec_file))
    assert code == 1
    assert "ValueError: x=" in out
    assert "max_failures = 2" in out


def test_unknown_studies_are_a_clear_error() -> None:
    code, out = invoke("status", "no-such-study")
    assert code == 2
    assert "no study 'no-such-study'" in out


def test_schema_is_json_schema() -> None:
    code, out = invoke("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "StudySpec"
    assert "space" in schema["properties"]


def running(journal: Path) -> int:
    """Trials the study in ``journal`` has running (0 before the journal exists)."""
    if not journal.exists():
        return 0
    storage = optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    try:
        study = optuna.load_study(study_name="cli-study", storage=storage)
    except KeyError:
        return 0
    return sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)


@pytest.mark.parametrize("ignored", [False, True], ids=["sigint", "sigint-ignored-by-parent"])
def test_ctrl_c_exits_130_and_resume_finishes_without_rerunning(
    tmp_path: Path, ignored: bool
) -> None:
    gate = tmp_path / "gate"
    spec = tmp_path / "study.yaml"
    spec.write_text(
        SPEC.replace("examples.functions:quadratic", "examples.functions:gated")
        .replace(
            "y: {type: float, low: -1.0, high: 1.0}",
            f"gate: {{type: categorical, choices: ['{gate}']}}",
        )
        .replace("max_trials: 6", "max_trials: 4")
    )
    process = start_tuner("run", str(spec), cwd=tmp_path, ignore_sigint=ignored)
    journal = tmp_path / "tuner-studies" / "cli-study" / "journal.log"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None and running(journal) < 2:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, out
    assert "tuner resume cli-study" in out

    storage = optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    interrupted = optuna.load_study(study_name="cli-study", storage=storage)
    states = [t.state for t in interrupted.trials]
    assert states.count(optuna.trial.TrialState.WAITING) == 2
    assert all(s != optuna.trial.TrialState.RUNNING for s in states)

    gate.touch()
    resumed = run_tuner("resume", "cli-study", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = optuna.load_study(study_name="cli-study", storage=storage)
    complete = [t for t in final.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    cancelled_params = [t.params for t in final.trials if t.user_attrs.get("tuner.cancelled")]
    assert len(cancelled_params) == 2
    assert all(p in [t.params for t in complete] for p in cancelled_params)


def test_ui_serves_the_studys_tracking_store(tmp_path: Path) -> None:
    from servers import free_port

    spec = tmp_path / "study.yaml"
    spec.write_text(
        SPEC.replace(
            "tracking: {mlflow: null}",
            f"tracking: {{mlflow: {{tracking_uri: 'sqlite:///{tmp_path}/ui.db'}}}}",
        ).replace("max_trials: 6", "max_trials: 2")
    )
    code, out = invoke("run", str(spec))
    assert code == 0, out
    port = free_port()
    process = start_tuner("ui", "cli-study", "--port", str(port), cwd=tmp_path)
    try:
        import urllib.request

        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and process.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                    healthy = answer.status == 200
            except OSError:
                time.sleep(0.5)
        assert healthy
        from mlflow.tracking import MlflowClient

        experiment = MlflowClient(f"http://127.0.0.1:{port}").get_experiment_by_name("cli-study")
        assert experiment is not None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in out


@pytest.mark.parametrize(
    ("function", "ref"),
    [
        ('lambda params: {"loss": params["x"] ** 2}', "__main__:<lambda>"),
        ("main", "__main__:main"),  # the CLI's own __main__ has a `main` too
    ],
)
def test_resume_says_once_that_a_notebook_function_cannot_be_imported(
    tmp_path: Path, function: str, ref: str
) -> None:
    import subprocess
    import sys

    from conftest import subprocess_env

    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import tuner

            def main(params):
                return {{"loss": params["x"] ** 2}}

            tuner.Study(
                name="from-a-script",
                space={{"x": tuner.Float(-1.0, 1.0)}},
                objective={{"metric": "loss"}},
                trial={function},
                backend={{"type": "inprocess"}},
                tracking=None,
                budget={{"max_trials": 2}},
            ).run(progress=False)
            """
        )
    )
    made = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(), capture_output=True
    )
    assert made.returncode == 0, made.stderr

    shown = run_tuner("status", "from-a-script", cwd=tmp_path)  # reading it never imports it
    assert shown.returncode == 0, shown.stdout + shown.stderr
    resumed = run_tuner("resume", "from-a-script", "--max-trials", "2", cwd=tmp_path)
    assert resumed.returncode == 2
    assert f"cannot resume: its trial function `{ref}` was defined in a notebook" in (
        resumed.stderr
    )
    assert "run(resume=True)" in resumed.stderr
    study = optuna.load_study(
        study_name="from-a-script",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(
                str(tmp_path / "tuner-studies" / "from-a-script" / "journal.log")
            )
        ),
    )
    assert len(study.trials) == 2  # no trial was started to fail


def test_the_live_display_draws_in_a_real_terminal(tmp_path: Path) -> None:
    """`tuner run` in a terminal (a pseudo-terminal here) draws rich's live bar, redrawn in
    place, and ends with the results as plain lines."""
    import pty
    import subprocess
    import sys

    from conftest import subprocess_env

    spec = tmp_path / "study.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "in-a-terminal",
                "objective": {"metric": "loss"},
                "space": {"x": {"type": "float", "low": -2.0, "high": 2.0}},
                "strategy": {"type": "random", "seed": 1},
                "budget": {"max_trials": 4, "max_concurrent": 2},
                "trial": {"function": "examples.functions:quadratic"},
                "backend": {"type": "inprocess"},
                "tracking": {"mlflow": None},
            }
        )
    )
    leader, follower = pty.openpty()
    env = {**subprocess_env(), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "run", str(spec)],
        cwd=tmp_path,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0, shown.decode(errors="replace")
    text = shown.decode()
    assert "\x1b[" in text  # drawn with the terminal's control sequences
    assert "\x1b[?25l" in text  # the live bar hides the cursor while it redraws itself
    assert "━" in text  # the bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "in-a-terminal: 4 complete — stopped: max_trials reached" in plain
