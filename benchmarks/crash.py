"""The long crash run: `tuner` killed at every failpoint at several passes, at random moments,
with MLflow's server down, under a killed Ray worker, on a 2-node `ray start` cluster that
loses a node, and with SageMaker jobs (moto) running; each time resumed and checked.

Usage: ``python -m benchmarks.crash [--rounds N] [--seed S] [--only TEXT]``. Not timed and not
part of ``make bench``: it prints a table (scenario, kill point, trials expected/finished, lost,
duplicated, mirror diverged) and a total line, and exits 1 if any kill point was not survived.
The machinery and the checks are tests/crash/harness.py's (the tests run a few of the same).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
for folder in (ROOT, TESTS, TESTS / "crash"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from harness import (  # noqa: E402
    Verdict,
    failpoint_scenario,
    fresh_sqlite_uri,
    random_scenario,
    table,
)
from scenarios import (  # noqa: E402
    RAY_EMBEDDED,
    cluster_orchestrator_scenario,
    node_lost_scenario,
    ray_worker_scenario,
    sagemaker_scenario,
    server_down_scenario,
)

from ray_nodes import two_node_cluster  # noqa: E402

PRUNER = {"type": "median", "n_startup_trials": 1}

FAILPOINTS = [
    "study.started",
    "trial.submitted@1",
    "trial.submitted@4",
    "trial.submitted@7",
    "trial.finished@1",
    "trial.finished@4",
    "trial.finished@7",
    "trial.told@1",
    "trial.told@4",
    "trial.told@7",
    "journal.append@5",
    "journal.append@30",
    "journal.append@70",
    "mlflow.batch@1",
    "mlflow.batch@4",
    "mlflow.claimed@1",
    "mlflow.claimed@4",
]
"""Every failpoint at several passes, on the in-process backend (8 trials, 2 at a time)."""

Scenario = Callable[[Path], Verdict]
"""A scenario in its own folder: kills, resumes, and the verdict."""


def scenarios(seed: int) -> list[tuple[str, Callable[[Path], list[Verdict]]]]:
    """Every scenario of one round, by name; ``seed`` varies the random moments."""

    def failpoint(points: str, **study: object) -> Scenario:
        return lambda folder: failpoint_scenario(
            folder, points, tracking_uri=fresh_sqlite_uri(folder), **study
        )

    found: list[tuple[str, Scenario]] = [(f"inprocess {p}", failpoint(p)) for p in FAILPOINTS]
    found += [
        (f"pruning {p}", failpoint(p, pruner=PRUNER, steps=4, scenario=f"pruning {p}"))
        for p in ("trial.pruning@1", "trial.pruning@2")
    ]
    found.append(
        (
            "killed again while resuming",
            lambda folder: failpoint_scenario(
                folder,
                "trial.submitted@3",
                then=["trial.told@2", "journal.append@10"],
                scenario="killed again while resuming",
                tracking_uri=fresh_sqlite_uri(folder),
            ),
        )
    )
    found += [
        (
            f"random seed {s}",
            lambda folder, s=s: random_scenario(folder, s, tracking_uri=fresh_sqlite_uri(folder)),
        )
        for s in range(seed, seed + 4)
    ]
    found.append(("mlflow server down", server_down_scenario))
    found.append(
        (
            "ray orchestrator killed",
            lambda folder: failpoint_scenario(
                folder,
                "trial.submitted@3",
                scenario="orchestrator killed, Ray",
                tracking_uri=fresh_sqlite_uri(folder),
                backend=RAY_EMBEDDED,
                trials=6,
            ),
        )
    )
    found.append(("ray worker killed", ray_worker_scenario))
    found.append(("sagemaker", _sagemaker_scenario))
    each = [(name, lambda folder, run=run: [run(folder)]) for name, run in found]
    return [*each, ("ray 2-node cluster", _on_cluster)]


def _sagemaker_scenario(folder: Path) -> Verdict:
    from fake_sagemaker import FakeSageMaker

    fake = FakeSageMaker().start()
    try:
        return sagemaker_scenario(folder, fake)
    finally:
        fake.stop()


def _on_cluster(folder: Path) -> list[Verdict]:
    """Two scenarios on one `ray start` cluster: the orchestrator killed, then a node lost."""
    with two_node_cluster() as (address, _, worker):
        verdicts = [cluster_orchestrator_scenario(folder / "killed", address, "trial.submitted@3")]
        verdicts.append(node_lost_scenario(folder / "node", address, worker))
    return verdicts


def _crashed(name: str, started: float) -> Verdict:
    verdict = Verdict(name, "?", 0, 0, seconds=time.monotonic() - started)
    verdict.problems.append(traceback.format_exc())
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="every scenario this many times")
    parser.add_argument("--seed", type=int, default=1, help="first seed of the random moments")
    parser.add_argument("--only", default="", help="run the scenarios whose name has this")
    parser.add_argument("--verbose", action="store_true", help="print every verdict in full")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="tuner-crash-"))
    print(f"crash run in {base}", flush=True)
    verdicts: list[Verdict] = []
    for round_ in range(args.rounds):
        seed = args.seed + 100 * round_
        for index, (name, scenario) in enumerate(scenarios(seed)):
            if args.only and args.only not in name:
                continue
            folder = base / f"r{round_}-{index:02d}"
            started = time.monotonic()
            try:
                found = scenario(folder)
            except Exception:
                found = [_crashed(name, started)]
            for verdict in found:
                verdicts.append(verdict)
                status = "ok" if verdict.ok else "FAILED"
                print(
                    f"{status:6} {verdict.scenario} [{verdict.kill_point}] {verdict.seconds:.1f}s",
                    flush=True,
                )
                if not verdict.ok or args.verbose:
                    print(verdict.report(), flush=True)
    print()
    print(table(verdicts))
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
