"""Trial functions the tests run on real workers (importable from the tests folder)."""

from __future__ import annotations

import contextlib
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


def deaf_to_cancel(params: dict[str, Any]) -> float:
    """Writes the worker's pid to ``params["pid_file"]``, then waits, shrugging off the
    KeyboardInterrupt of a cancel (as code stuck in C does): only killing its worker stops it."""
    Path(params["pid_file"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(0.1)
    return 0.0


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


def logs_every_way(params: dict[str, Any]) -> dict[str, float]:
    """Uses MLflow the ways researchers do, several times over, from threads too.

    Fluent calls with no run, `with mlflow.start_run()` twice, sklearn autologging (each `fit`
    opens and ends a run of its own), a nested run and a thread: everything must land in this
    trial's run (the nested run under it), whatever ran in this worker before.
    """
    import threading

    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    leaked = "LEAKED_BY_TRIAL" in os.environ or mlflow.active_run() is not None
    x = float(params["x"])
    mlflow.log_metric("inner", x)
    mlflow.set_tag("who", os.environ["TUNER_TRIAL"])
    with mlflow.start_run():
        mlflow.log_metric("first_block", x)
    with mlflow.start_run():
        mlflow.log_metric("second_block", x)
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    features = np.arange(20.0).reshape(10, 2)
    labels = np.array([0, 1] * 5)
    LogisticRegression(C=abs(x) + 0.1).fit(features, labels)
    mlflow.sklearn.autolog(disable=True)
    with mlflow.start_run(nested=True, run_name="inner-step"):
        mlflow.log_metric("nested", x)
    thread = threading.Thread(target=lambda: mlflow.log_metric("from_thread", x))
    thread.start()
    thread.join()
    # Process-global state a careless trial leaves behind for the next one in this worker.
    os.environ["LEAKED_BY_TRIAL"] = os.environ["TUNER_TRIAL"]
    mlflow.set_experiment("somewhere-else")
    return {"loss": x**2, "saw_a_leak": float(leaked), "pid": float(os.getpid())}


def crash_trial(params: dict[str, Any]) -> dict[str, float]:
    """A deterministic trial for the crash tests (tests/crash/): a short learning curve.

    Reports ``steps`` losses (``bad: true`` makes every one of them 10 worse, for the pruner),
    appends one JSON line per execution that reached its end to the file in
    ``CRASH_EXECUTIONS`` (trial number, params, pid) and, when ``CRASH_PIDS`` is set, one line
    per attempt with its pid as it starts (so a harness can kill the worker mid-trial).
    """
    import json
    import re
    import threading

    import tuner

    # The in-process backend runs trials in threads named `trial-N` and passes no environment.
    named = re.fullmatch(r"trial-(\d+)", threading.current_thread().name)
    number = int(named.group(1)) if named else int(os.environ["TUNER_TRIAL"])
    pids = os.environ.get("CRASH_PIDS")
    if pids:
        with open(pids, "a", encoding="utf-8") as out:
            out.write(json.dumps({"trial": number, "pid": os.getpid()}) + "\n")
    x = float(params["x"])
    penalty = 10.0 if params.get("bad") else 0.0
    loss = 0.0
    for step in range(int(params.get("steps", 3))):
        loss = x**2 + penalty + 1.0 / (step + 1)
        tuner.report(step=step, loss=loss)
        time.sleep(float(params.get("pause", 0.1)))
    record = {"trial": number, "params": params, "pid": os.getpid()}
    with open(os.environ["CRASH_EXECUTIONS"], "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
    return {"loss": loss, "abs_x": abs(x)}


def leaves_a_mess(params: dict[str, Any]) -> dict[str, float]:
    """Changes what a careless trial changes in its process, and reports what it found there:
    whatever an earlier trial in the same worker left behind must be gone."""
    import logging
    import random
    import sys
    import tempfile
    import warnings

    import numpy as np

    found = {
        "cwd_left": float(os.getcwd().startswith(tempfile.gettempdir() + "/mess-")),
        "path_left": float(any(p.endswith("/left-by-a-trial") for p in sys.path)),
        "handler_left": float(
            any(getattr(h, "name", "") == "left-by-a-trial" for h in logging.getLogger().handlers)
        ),
        "filter_left": float(any("left-by-a-trial" in str(f[1]) for f in warnings.filters)),
        "random": random.random(),
        "numpy": float(np.random.random()),
        "pid": float(os.getpid()),
        "loss": float(params["x"]) ** 2,
    }
    os.chdir(tempfile.mkdtemp(prefix="mess-"))
    sys.path.insert(0, "/nowhere/left-by-a-trial")
    handler = logging.StreamHandler()
    handler.name = "left-by-a-trial"
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    warnings.filterwarnings("ignore", message="left-by-a-trial")
    random.seed(0)
    np.random.seed(0)
    return found


def latency_grows_error_flat(params: dict[str, Any]) -> dict[str, float]:
    """Two objectives reported at every step: an error every trial shares (nothing to stop on)
    and a latency that grows with the network's size (the bigger half is worth stopping)."""
    import tuner

    size = params["width"] * params["depth"]
    latency = 2.0 + 0.05 * size
    for step in range(3):
        tuner.report(step=step, error=0.5, latency_ms=latency)
    return {"error": 0.5, "latency_ms": latency}
