"""Running one trial: function results, command arguments, metric lines, logs, stopping."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tuner.backend import CommandEntry, FunctionEntry, MetricDefinition, TrialStatus
from tuner.trial_runner import (
    MetricParser,
    OutputLog,
    command_arguments,
    run_command,
    run_function,
)

SCRIPTS = Path(__file__).parent / "scripts"
LOSS = (MetricDefinition("loss", r"loss=([0-9.eE+-]+)"),)


def command(
    script: str, *args: str, definitions: tuple[MetricDefinition, ...] = LOSS
) -> CommandEntry:
    return CommandEntry(("python", str(SCRIPTS / script), *args), definitions, str(SCRIPTS))


class Reports:
    def __init__(self) -> None:
        self.items: list[tuple[int, dict[str, float]]] = []

    def __call__(self, step: int, metrics: Any) -> None:
        self.items.append((step, dict(metrics)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def test_parameters_reach_the_script_as_literal_arguments_and_a_json_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = tmp_path / "echo.json"
    monkeypatch.setenv("ECHO_TO", str(echo))
    params = {"lr": 0.01, "name": "; rm -rf / #", "flag": True, "n": 3, "quote": "$(whoami) `id`"}
    reports = Reports()
    result = run_command(command("echo_args.py"), params, reports)
    assert result.status is TrialStatus.COMPLETED
    seen = json.loads(echo.read_text())
    assert seen["argv"] == [
        "--lr",
        "0.01",
        "--name",
        "; rm -rf / #",
        "--flag",
        "true",
        "-n",
        "3",
        "--quote",
        "$(whoami) `id`",
    ]
    assert seen["params"] == params
    assert seen["cwd"] == str(SCRIPTS)
    # stdout and stderr are one log, in order; the last value of a metric is its final value.
    assert reports.items == [(0, {"loss": 0.5}), (1, {"loss": 0.25})]
    assert result.metrics == {"loss": 0.25}
    assert "loss=0.5" in (result.log or "")


def test_command_arguments_are_strings_and_json_as_sagemaker_passes_them() -> None:
    params = {"name": "x y", "lr": 1.5, "nesterov": False, "d": None, "x": 2}
    assert command_arguments(params) == [
        "--name",
        "x y",
        "--lr",
        "1.5",
        "--nesterov",
        "false",
        "-d",  # one-letter names get one dash, as in SageMaker's training toolkit
        "null",
        "-x",
        "2",
    ]


def test_a_non_zero_exit_is_a_failed_trial_with_the_output_tail() -> None:
    result = run_command(command("fail.py"), {}, Reports())
    assert result.status is TrialStatus.FAILED
    assert result.error == "command exited with code 3"
    assert "RuntimeError: the data loader broke" in (result.traceback or "")
    assert result.metrics == {"loss": 2.0}


def test_a_missing_program_is_a_failed_trial() -> None:
    entry = CommandEntry(("no-such-program-for-tuner",), LOSS)
    result = run_command(entry, {}, Reports())
    assert result.status is TrialStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("cannot run 'no-such-program-for-tuner'")


def test_metric_lines_are_read_incrementally_with_steps() -> None:
    reports = Reports()
    result = run_command(command("chatty.py", "--lines", "300"), {}, reports)
    assert [step for step, _ in reports.items] == list(range(300))
    assert result.metrics["loss"] == pytest.approx(1 / 300, rel=1e-3)


def test_metric_parser_reads_several_metrics_per_line() -> None:
    parser = MetricParser(
        (MetricDefinition("loss", r"loss=([\d.]+)"), MetricDefinition("acc", r"acc=([\d.]+)"))
    )
    assert parser.feed("epoch 1 loss=0.5 acc=0.8") == [("loss", 0, 0.5), ("acc", 0, 0.8)]
    assert parser.feed("nothing here") == []
    assert parser.feed("loss=0.25") == [("loss", 1, 0.25)]
    assert parser.last == {"loss": 0.25, "acc": 0.8}


def test_a_huge_log_keeps_its_head_and_tail() -> None:
    log = OutputLog(head=100, tail=1000)
    for i in range(10_000):
        log.write(f"line {i}\n")
    text = log.text()
    assert text.startswith("line 0\n")
    assert text.endswith("line 9999\n")
    assert "characters cut" in text
    assert len(text) < 1200


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here, as in a Ray worker (tuner's Ray backend sets it),
    whatever disposition whoever started the tests left (`cmd &` in a script ignores it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("sigint_raises")
@pytest.mark.parametrize("ignore_term", [False, True])
def test_an_interrupted_command_leaves_no_process_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore_term: bool
) -> None:
    """Ray cancels a task with KeyboardInterrupt; the command's whole group must go."""
    pids_file = tmp_path / "pids"
    monkeypatch.setenv("PIDS_TO", str(pids_file))
    if ignore_term:
        monkeypatch.setenv("IGNORE_TERM", "1")
    main = threading.main_thread().ident

    def interrupt_when_started() -> None:
        while not pids_file.exists():
            time.sleep(0.05)
        time.sleep(0.3)
        signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_command(command("spawn_and_wait.py"), {}, Reports(), grace=1.0)
    pids = [int(p) for p in pids_file.read_text().split()]
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_function_output_is_captured_when_asked() -> None:
    def noisy(params: dict[str, Any]) -> float:
        print("hello from the trial")
        print("warning!", file=sys.stderr)
        return 1.0

    result = run_function(FunctionEntry("t:noisy", (), noisy), {}, "loss", Reports(), capture=True)
    assert result.log == "hello from the trial\nwarning!\n"


def test_function_env_is_set_during_the_trial_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_TEST_VAR", raising=False)
    seen = []
    entry = FunctionEntry("t:f", (), lambda p: seen.append(os.environ.get("TUNER_TEST_VAR")) or 1.0)
    run_function(entry, {}, "loss", Reports(), env={"TUNER_TEST_VAR": "yes"})
    assert seen == ["yes"]
    assert "TUNER_TEST_VAR" not in os.environ
