"""The MLflow UI on a study's runs: the page's address, a local server for a tracking store, and
a browser when there is one (``tuner ui``).

MLflow 3 (3.17 at least) shows an experiment in one of two views, chosen by a switch in its
sidebar ("GenAI" or "Model training") that the browser remembers and that starts on GenAI,
where a study's parent run shows as an "evaluation". The page's address sets the switch
(``workflowType``), so the address given here opens model training's runs table, with the
trials nested under the study's run. Earlier MLflow 3 releases chose the view by the
experiment's ``mlflow.experimentKind`` tag instead (and asked for a kind when it was missing):
the MLflow mirror sets it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import webbrowser
from collections.abc import Iterator

MODEL_TRAINING_VIEW = "machine_learning"
"""MLflow's ``workflowType`` of the model-training view (the other is ``genai``)."""
START_TIMEOUT = 120.0
"""Seconds ``mlflow server`` may take to answer (it builds its database on a first start)."""


def runs_view_url(server: str, experiment_id: str | None) -> str:
    """The MLflow UI's page of an experiment's runs, in the model-training view (the list of
    experiments when there is no experiment yet).

    Example:
        >>> runs_view_url("http://127.0.0.1:5000/", "3")
        'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning'
    """
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"{server.rstrip('/')}/#/{page}?workflowType={MODEL_TRAINING_VIEW}"


def experiment_id(server: str, name: str) -> str | None:
    """The id of experiment ``name`` on a tracking server, or ``None`` if it has none or does
    not answer."""
    from tuner.tracking import quiet_client

    try:
        found = quiet_client(server).get_experiment_by_name(name)
    except Exception:  # the address is still worth showing
        return None
    return None if found is None else str(found.experiment_id)


def start_server(tracking_uri: str, host: str, port: int) -> subprocess.Popen[bytes]:
    """``mlflow server`` on a tracking store, in a process group of its own.

    MLflow 3's server runs a dozen processes (web workers, job runners) that outlive a signal
    to the first alone; :func:`stop_server` stops the whole group.
    """
    env = dict(os.environ)
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        env.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri]
    return subprocess.Popen(
        [*command, "--host", host, "--port", str(port)], env=env, start_new_session=True
    )


def stop_server(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stops the server :func:`start_server` started, every process of it."""
    if not hasattr(os, "killpg"):  # Windows: no process groups to signal
        if process.poll() is None:
            process.terminate()
        process.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # whatever did not stop in time
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def interrupted_on_termination() -> Iterator[None]:
    """``SIGTERM`` and ``SIGHUP`` (a closed terminal) raise ``KeyboardInterrupt`` in the block,
    so the server is stopped as on Ctrl-C: it runs in its own process group, which neither
    signal reaches."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    saved = {n: signal.signal(getattr(signal, n), interrupt) for n in names}
    try:
        yield
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)


def local_address(host: str, port: int) -> str:
    """The address a browser on this machine reaches a server listening on ``host`` at."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def wait_until_up(
    server: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> bool:
    """Whether ``server`` answers before ``process`` exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{server}/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def browser_available() -> bool:
    """Whether a graphical browser can open here: a desktop session, macOS, Windows, or a
    ``BROWSER`` the user chose; not a server over SSH (where Python would start a text
    browser such as lynx in the terminal)."""
    if os.environ.get("BROWSER") or sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_in_browser(url: str) -> bool:
    """Opens ``url`` in a browser if one is available; whether one opened."""
    if not browser_available():
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
