"""Crash scenarios that need more than a failpoint: a tracking server that goes away, a Ray
worker or node killed under a trial, SageMaker jobs that outlive their orchestrator.

Each returns a :class:`harness.Verdict`; ``tests/crash/`` and ``benchmarks/crash.py`` run them.
Every process started here is stopped by its own process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from harness import CrashStudy, Verdict, failpoint_scenario, fresh_sqlite_uri, wait_until

from ray_nodes import RAY_ENV, Node
from servers import MlflowServer

RAY_EMBEDDED = {"type": "ray", "num_cpus": 2}


def server_down_scenario(folder: Path) -> Verdict:
    """MLflow's server stops mid-study, the orchestrator is SIGKILLed while it is away; the
    server comes back, `tuner resume` ends the study and `tuner sync` catches MLflow up."""
    started = time.monotonic()
    server = MlflowServer(folder / "server")
    server.folder.mkdir(parents=True)
    server.start()
    try:
        crash = CrashStudy(
            folder / "study",
            "outage",
            tracking_uri=server.uri,
            pause=0.15,
            # Fail fast while the server is away (MLflow retries for minutes by default).
            env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"},
        )
        args = ("run", str(crash.spec_file))
        process = crash.start(*args)
        wait_until(lambda: process.poll() is not None or crash.count("COMPLETE") >= 2, 120)
        server.stop()
        wait_until(lambda: process.poll() is not None or crash.count("COMPLETE") >= 4, 120)
        crash.kill_now(process)
        killed = crash.wait(process, args, killed_by_harness=True)
        server.start()
        crash.recover()
        crash.run("sync", crash.name)
        verdict = crash.verdict("MLflow server down at the kill", "SIGKILL, server down", started)
    finally:
        server.stop()
    if not killed.killed:
        verdict.problems.append(f"the run ended before the kill: {killed.describe()}")
    return verdict


def _worker_killed(crash: CrashStudy, victim_trial: int, started: float, scenario: str) -> Verdict:
    """Runs ``crash`` and SIGKILLs the worker process of ``victim_trial``'s first attempt while
    it runs; the trial must be retried (an infrastructure failure) and end COMPLETE."""
    victim: list[int] = []

    def victim_started() -> bool:
        victim[:] = [pid for trial, pid in crash.worker_pids() if trial == victim_trial][:1]
        return bool(victim)

    def kill_its_worker() -> None:
        time.sleep(0.2)  # inside its first pause, well before its end
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim[0], signal.SIGKILL)

    crash.run_until(victim_started, kill_its_worker)
    verdict = crash.verdict(scenario, f"SIGKILL trial {victim_trial}'s worker", started)
    if not victim:
        verdict.problems.append(f"trial {victim_trial} never started")
    else:
        attempts = crash.store().trials[victim_trial].user_attrs.get("tuner.attempts")
        if attempts != 2:
            verdict.problems.append(f"trial {victim_trial} ran {attempts} attempts, expected 2")
    return verdict


def ray_worker_scenario(folder: Path) -> Verdict:
    """A trial's Ray worker SIGKILLed mid-trial on the embedded cluster."""
    started = time.monotonic()
    crash = CrashStudy(
        folder,
        "worker",
        tracking_uri=fresh_sqlite_uri(folder),
        backend=RAY_EMBEDDED,
        trials=6,
        pause=0.4,
        env={"CRASH_PIDS": str(folder / "pids.jsonl")},
    )
    return _worker_killed(crash, 1, started, "Ray worker killed")


# --- a two-node cluster started with `ray start` -------------------------------------------


def node_lost_scenario(folder: Path, address: str, worker: Node) -> Verdict:
    """The worker node of a two-node cluster SIGKILLed while a trial runs on each node: its
    trial is retried on the other node, nothing lost or run twice."""
    started = time.monotonic()
    crash = CrashStudy(
        folder,
        "node-lost",
        tracking_uri=fresh_sqlite_uri(folder),
        backend={"type": "ray", "address": address},
        trials=6,
        steps=3,
        pause=1.0,
        env=RAY_ENV,
    )

    def two_running() -> bool:
        return crash.count("RUNNING") >= 2

    def lose_the_node() -> None:
        time.sleep(1.0)  # both trials are inside their 3 s, one on each node
        worker.stop(signal.SIGKILL)

    crash.run_until(two_running, lose_the_node)
    verdict = crash.verdict("Ray node lost (2-node cluster)", "SIGKILL the worker node", started)
    retried = [t.number for t in crash.store().trials if t.user_attrs.get("tuner.attempts", 1) > 1]
    if not retried:
        verdict.problems.append("no trial was retried: the lost node ran none")
    return verdict


def cluster_orchestrator_scenario(folder: Path, address: str, failpoints: str) -> Verdict:
    """The orchestrator of a study on a `ray start` cluster dies at ``failpoints``."""
    return failpoint_scenario(
        folder,
        failpoints,
        scenario="orchestrator killed, 2-node Ray",
        name="on-cluster",
        tracking_uri=fresh_sqlite_uri(folder),
        backend={"type": "ray", "address": address},
        trials=6,
        env=RAY_ENV,
    )


# --- SageMaker on moto ---------------------------------------------------------------------


def sagemaker_scenario(folder: Path, fake: Any) -> Verdict:
    """The orchestrator SIGKILLed with two SageMaker training jobs running (on moto, patched
    into real job lifecycles by tests/fake_sagemaker.py); `tuner resume` follows them.

    ``fake`` is a started ``FakeSageMaker``. A job that reached ``Completed`` is an execution
    that reached its end (invariant 3)."""
    from fake_sagemaker import BUCKET, ROLE, Outcome

    started = time.monotonic()
    fake.reset()

    def script(name: str, hyperparameters: dict[str, str]) -> Any:
        x = float(hyperparameters["x"])
        losses = [x**2 + 1.0 / (step + 1) for step in range(3)]
        return Outcome(lines=[f"loss={loss!r}" for loss in losses], seconds=2.5)

    fake.script = script
    crash = CrashStudy(
        folder,
        "sm-crash",
        tracking_uri=fresh_sqlite_uri(folder),
        backend={
            "type": "sagemaker",
            "role_arn": ROLE,
            "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1",
            "output_path": f"s3://{BUCKET}/models",
            "poll_interval": 0.2,
            "limit_backoff": 0.2,
        },
        trials=6,
        env=fake.environment(),
        trial={
            "command": ["python", "train.py"],
            "metric_definitions": [{"name": "loss", "regex": r"loss=([0-9.eE+-]+)"}],
        },
    )

    def two_jobs_running() -> bool:
        return len(fake.created) >= 3 and len(fake.running()) >= 2

    args = ("run", str(crash.spec_file))
    process = crash.start(*args)
    wait_until(lambda: process.poll() is not None or two_jobs_running(), 120)
    crash.kill_now(process)  # the orchestrator dies; its jobs do not
    killed = crash.wait(process, args, killed_by_harness=True)
    crash.recover()
    _completed_jobs_as_executions(fake, crash.executions_file)
    verdict = crash.verdict("SageMaker jobs outlive the kill", "SIGKILL, 2 jobs running", started)
    if not killed.killed:
        verdict.problems.append(f"the run ended before the kill: {killed.describe()}")
    created = list(fake.created)
    if len(created) != len(set(created)):
        verdict.duplicated.append(f"a job was created twice: {sorted(created)}")
    return verdict


def _completed_jobs_as_executions(fake: Any, path: Path) -> None:
    """One execution line per Completed job (hyperparameters back to their JSON values)."""

    def value(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return text

    with path.open("w", encoding="utf-8") as out:
        for name, job in fake.jobs.items():
            if job.training_job_status != "Completed":
                continue
            params = {k: value(v) for k, v in (job.hyper_parameters or {}).items()}
            trial = int(fake.tags(name)["tuner:trial"])
            out.write(json.dumps({"trial": trial, "params": params, "pid": name}) + "\n")
