"""Trial functions the tests run on real workers (importable from the tests folder)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any


def write_pid_and_wait(params: dict[str, Any]) -> float:
    """Writes the worker's pid to ``params["pid_file"]`` (first attempt only), then waits."""
    pid_file = Path(params["pid_file"])
    if not pid_file.exists():
        pid_file.write_text(str(os.getpid()))
        time.sleep(600)
    return float(params.get("x", 1.0))


def where_am_i(params: dict[str, Any]) -> dict[str, float]:
    """Sleeps a little and reports; the node is recorded by the backend."""
    time.sleep(float(params.get("seconds", 0.5)))
    return {"loss": float(params["x"]) ** 2, "pid": float(os.getpid())}


def host(params: dict[str, Any]) -> float:
    return float(len(socket.gethostname()))


def logs_into_its_own_run(params: dict[str, Any]) -> dict[str, float]:
    """Logs with MLflow's fluent API: MLFLOW_RUN_ID from tuner points it at this trial's run."""
    import mlflow

    import tuner

    with mlflow.start_run():
        mlflow.log_metric("from_inside", float(params["x"]))
    print(f"training with {params}")
    for step in range(3):
        tuner.report(step=step, loss=float(params["x"]) ** 2 + 1.0 / (step + 1))
    return {"loss": float(params["x"]) ** 2}
