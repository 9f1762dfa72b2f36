"""Orchestration overhead and parallel efficiency: tuner against Ray Tune and optuna.

One measurement per process (``python -m benchmarks.overhead TOOL SCENARIO``), so every tool
starts from a clean interpreter and its own Ray cluster; Ray's start-up is outside the timed
part, as it is paid once per study. Prints one JSON line: the tool, the scenario, and seconds.

Scenarios:
    zero: 500 zero-cost trials, 2 at a time (trials per second).
    sleep-0.5: 32 trials of 0.5 s, 2 at a time (makespan; ideal 8.0 s).
    sleep-2: 16 trials of 2 s, 2 at a time (makespan; ideal 16.0 s).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS: dict[str, tuple[int, float]] = {
    "zero": (500, 0.0),
    "sleep-0.5": (32, 0.5),
    "sleep-0.5x64": (64, 0.5),
    "sleep-2": (16, 2.0),
}
WORKERS = 2
TOOLS = (
    "tuner",
    "tuner+mlflow",
    "raytune",
    "raytune-reuse",
    "raytune-optuna",
    "optuna",
)


def trial_seconds() -> float:
    return float(os.environ.get("BENCH_TRIAL_SECONDS", "0"))


def objective(params: dict[str, Any]) -> float:
    """The trial: sleeps the scenario's seconds (none for zero-cost trials)."""
    seconds = trial_seconds()
    if seconds:
        time.sleep(seconds)
    return float(params["x"])


def _init_ray() -> None:
    """Starts the cluster and waits until its workers are up, for every tool alike."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level=logging.ERROR)

    @ray.remote(num_cpus=1)
    def warm_up() -> int:
        time.sleep(0.2)
        return os.getpid()

    ray.get([warm_up.remote() for _ in range(WORKERS)])


def run_tuner(trials: int, workdir: Path, tracking: bool) -> float:
    import optuna

    import tuner
    from tuner.orchestrator import Orchestrator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _init_ray()
    mlflow = {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"} if tracking else None
    spec = tuner.StudySpec(
        name="bench",
        objective={"metric": "loss"},
        space={"x": tuner.Float(0.0, 1.0)},
        strategy={"type": "random", "seed": 0},
        budget={"max_trials": trials, "max_concurrent": WORKERS, "max_failures": trials},
        trial={"function": "benchmarks.overhead:objective"},
        tracking={"mlflow": mlflow},
        storage={"dir": str(workdir / "studies")},
    )
    if tracking:  # the tracking store's first-use schema migration is not per-trial cost
        from mlflow.tracking import MlflowClient

        MlflowClient(mlflow["tracking_uri"]).search_experiments()  # type: ignore[index]
    started = time.perf_counter()
    summary = Orchestrator(spec).run()
    elapsed = time.perf_counter() - started
    assert summary.finished == trials, summary
    return elapsed


def run_raytune(trials: int, workdir: Path, variant: str) -> float:
    from ray import tune

    _init_ray()
    search_alg = None
    if variant == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric="loss", mode="min", seed=0)

    def trainable(config: dict[str, Any]) -> dict[str, float]:
        return {"loss": objective(config)}

    tuner_ = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            num_samples=trials,
            max_concurrent_trials=WORKERS,
            reuse_actors=variant == "reuse",
            search_alg=search_alg,
            metric="loss" if search_alg else None,
            mode="min" if search_alg else None,
        ),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray_results"), verbose=0),
    )
    started = time.perf_counter()
    results = tuner_.fit()
    elapsed = time.perf_counter() - started
    assert len(results) == trials
    return elapsed


def run_optuna(trials: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    study.optimize(
        lambda t: objective({"x": t.suggest_float("x", 0.0, 1.0)}),
        n_trials=trials,
        n_jobs=WORKERS,
    )
    return time.perf_counter() - started


SLOW_ZERO_TRIALS = {"raytune": 60, "raytune-optuna": 60}
"""Ray Tune without actor reuse runs about one zero-cost trial a second: its rate is measured on
fewer trials (and reported per second like the others)."""


def trial_count(tool: str, scenario: str) -> int:
    if scenario == "zero":
        return SLOW_ZERO_TRIALS.get(tool, SCENARIOS[scenario][0])
    return SCENARIOS[scenario][0]


def measure(tool: str, scenario: str) -> float:
    _, seconds = SCENARIOS[scenario]
    trials = trial_count(tool, scenario)
    os.environ["BENCH_TRIAL_SECONDS"] = str(seconds)
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        if tool in ("tuner", "tuner+mlflow"):
            return run_tuner(trials, workdir, tracking=tool == "tuner+mlflow")
        if tool.startswith("raytune"):
            variant = tool.partition("-")[2] or "default"
            return run_raytune(trials, workdir, variant)
        if tool == "optuna":
            return run_optuna(trials)
    raise SystemExit(f"unknown tool {tool!r}; one of {', '.join(TOOLS)}")


def main() -> None:
    tool, scenario = sys.argv[1], sys.argv[2]
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    seconds = measure(tool, scenario)
    trials = trial_count(tool, scenario)
    print(json.dumps({"tool": tool, "scenario": scenario, "trials": trials, "seconds": seconds}))


if __name__ == "__main__":
    main()
