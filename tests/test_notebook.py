"""A real notebook on a real kernel: a trial function defined in a cell runs on Ray workers,
the progress renders as HTML, interrupting the kernel stops the study cleanly, and running
the cell again continues or starts over, all without restarting the kernel."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import tuner
from conftest import subprocess_env

SETUP = """
import time
import tuner

data = [0.1 * i for i in range(20)]  # what an earlier cell would have loaded

def fit(params):
    time.sleep(params["seconds"])
    return {"loss": sum((x - params["x"]) ** 2 for x in data) / len(data)}

study = tuner.Study(
    name="notebook",
    trial=fit,
    space={"x": tuner.Float(-1.0, 3.0), "seconds": tuner.Categorical([1.0])},
    objective="loss",
    strategy="random",
    seed=0,
    max_trials=10,
    max_concurrent=2,
    backend="ray",
    tracking="sqlite:///mlflow.db",
)
"""

RUN = "result = study.run()\nresult"
AFTER_INTERRUPT = """
import psutil, ray
kernel = psutil.Process()
deadline = time.time() + 30
while time.time() < deadline and any(
    "ray" in " ".join(p.cmdline()) for p in kernel.children(recursive=True) if p.is_running()
):
    time.sleep(0.5)
print("ray initialised:", ray.is_initialized())
print("ray processes left:", sum(
    "ray" in " ".join(p.cmdline()) for p in kernel.children(recursive=True) if p.is_running()
))
"""
RESUME = "result = study.run(resume=True)\nresult"
START_OVER = (
    "fresh = tuner.Study(study.spec, max_trials=3).run(overwrite=True)\n"
    "print('fresh trials:', len(fresh.trials))"
)


def _notebook() -> nbformat.NotebookNode:
    cells = [SETUP, RUN, AFTER_INTERRUPT, RESUME, START_OVER]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])


def _text(outputs: list[Any]) -> str:
    """Everything a cell showed, as text (escape codes included, if any)."""
    parts = []
    for output in outputs:
        parts.append(output.get("text", ""))
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/"):
                parts.append(value)
        parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def _interrupt_when(client: NotebookClient, done: Any, finished: threading.Event) -> None:
    """Interrupts the kernel as Jupyter's stop button does: SIGINT to its process group (the
    kernel and whatever it started, Ray's processes included)."""
    while not finished.is_set():
        if done():
            os.killpg(client.km.provisioner.pgid, signal.SIGINT)
            return
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_a_notebook_runs_interrupts_and_continues_a_study(tmp_path: Path) -> None:
    notebook = _notebook()
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    studies = str(tmp_path / "tuner-studies")

    def three_completed() -> bool:
        try:
            return tuner.load("notebook", dir=studies).counts[tuner.TrialState.COMPLETE] >= 3
        except tuner.StudyNotFoundError:
            return False

    with client.setup_kernel(env=subprocess_env()):
        client.execute_cell(notebook.cells[0], 0)

        finished = threading.Event()
        interrupter = threading.Thread(
            target=_interrupt_when, args=(client, three_completed, finished), daemon=True
        )
        interrupter.start()
        with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
            client.execute_cell(notebook.cells[1], 1)
        finished.set()
        interrupted = notebook.cells[1].outputs
        before = tuner.load("notebook", dir=studies)

        client.execute_cell(notebook.cells[2], 2)
        client.execute_cell(notebook.cells[3], 3)
        after = tuner.load("notebook", dir=studies)
        client.execute_cell(notebook.cells[4], 4)

    # the interruption: said plainly, finished trials kept, running ones cancelled, Ray gone
    assert "run(resume=True)" in _text(interrupted)
    completed_before = {
        t.number: t.params for t in before.records if t.state is tuner.TrialState.COMPLETE
    }
    assert len(completed_before) >= 3
    assert before.counts[tuner.TrialState.COMPLETE] < 10
    states = [t.state for t in before.records]
    assert tuner.TrialState.CANCELLED in states, states  # those running when it stopped
    assert tuner.TrialState.RUNNING not in states, states
    cleanup = _text(notebook.cells[2].outputs)
    assert "ray initialised: False" in cleanup
    assert "ray processes left: 0" in cleanup

    # running on: every trial finished once, none completed before runs again
    resumed = notebook.cells[3].outputs
    shown = _text(resumed)
    assert "stopped: max_trials reached" in shown
    assert "best: trial" in shown  # the result displays itself
    completed = [t for t in after.records if t.state is tuner.TrialState.COMPLETE]
    assert len(completed) == 10, [(t.number, t.state, t.error) for t in after.records]
    for number, params in completed_before.items():
        assert after.records[number].params == params
    assert len({tuple(t.params.items()) for t in completed}) == 10

    # the progress renders as HTML that updates in place, never as terminal escape codes
    html = [o for o in resumed if "text/html" in o.get("data", {})]
    assert any("<progress" in o["data"]["text/html"] for o in html)
    for cell in notebook.cells:
        assert "\x1b[" not in _text([o for o in cell.get("outputs", []) if "traceback" not in o])

    # tuner's lines only: none of optuna's INFO lines ("[I 2024-...] A new study created")
    for cell in notebook.cells:
        shown = _text(cell.get("outputs", []))
        for foreign in ("A new study created", "Using an existing study", "[I "):
            assert foreign not in shown, shown

    # starting over, in the same kernel
    assert "fresh trials: 3" in _text(notebook.cells[4].outputs)
