"""Warm starts: regret after the first trials of a new study, cold against warm-started.

For each problem (Branin, Hartmann6 from ``benchmarks.quality``), engine (the default, ``auto``,
and TPE) and seed, a new study runs ``TRIALS`` trials of its own, started:

- **cold**: nothing known before (the engines' 10 start-up trials are random);
- **study (30)**: ``warm_start: {study: earlier}``, an earlier study of 30 trials (TPE) of the
  same problem;
- **study (30), shifted**: the earlier study was of the problem shifted by 5% of each range (a
  related task, e.g. last month's data), so what it knows is close but not exact;
- **study (5)**: an earlier study of 5 random trials (a few known configurations);
- **mlflow (5 hand-made runs)**: ``warm_start: {mlflow_experiment: ...}``, five runs a
  researcher logged by hand with MLflow's client (parameters and a metric, no tuner tags).

The earlier studies are tuner studies in journal stores and the runs live in an MLflow sqlite
store; the new study reads them through ``tuner.warm_start.prepare`` and gets its strategy
from ``tuner.orchestrator.prepare_strategy`` exactly as ``tuner run`` does. Proposals come
through optuna's ask/tell, as the study loop asks them (no backend: the function is evaluated
in place). Regret is the best of the new study's *own* trials minus the known optimum: the
warm trials never count.

``python -m benchmarks.warm_start [--seeds 10] [--problems branin,hartmann6]``
(about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import PROBLEMS

TRIALS = 10
EARLIER_TRIALS = 30
FEW = 5
"""Earlier results in the small warm starts (a study's, or hand-made MLflow runs)."""
SHIFT = 0.05
"""The shifted problem's offset, as a fraction of each parameter's range."""
STARTS = ["cold", "study (30)", "study (30), shifted", "study (5)", "mlflow (5 hand-made runs)"]

Function = Callable[[dict[str, Any]], float]


def trial_function(problem: str) -> Function:
    """The problem as a trial function of its parameters (what a study of it would run)."""
    spec = PROBLEMS[problem]
    rng = np.random.default_rng(0)  # the problems here are noiseless: it draws nothing
    return lambda params: spec.evaluate(params, rng)


def _spec(name: str, problem: str, strategy: dict[str, Any], folder: Path, **sections: Any) -> Any:
    from tuner.spec import StudySpec

    return StudySpec.model_validate(
        {
            "name": name,
            "objective": {"metric": "value"},
            "space": dict(PROBLEMS[problem].space()),
            "strategy": strategy,
            "budget": {"max_trials": TRIALS},
            "trial": {"function": trial_function(problem)},
            "tracking": {"mlflow": None},
            "storage": {"dir": str(folder)},
            **sections,
        }
    )


def _run(spec: Any, function: Function, trials: int) -> list[float]:
    """Opens ``spec``'s study as ``tuner run`` does (warm start included), runs ``trials``
    trials of its own and returns their values in order."""
    from tuner.orchestrator import prepare_strategy
    from tuner.store import open_storage, open_study

    space = spec.search_space
    storage = open_storage(spec)
    _, sampler = prepare_strategy(spec, open_study(spec, None, storage), spec.strategy.seed)
    study = open_study(spec, sampler, storage)
    values = []
    for _ in range(trials):
        trial = study.ask()
        value = function(space.suggest(trial))
        study.tell(trial, value)
        values.append(value)
    return values


def _bounds(problem: str) -> dict[str, tuple[float, float]]:
    """Each parameter's range (the problems here are boxes of floats)."""
    from tuner.space import Float

    space = PROBLEMS[problem].space()
    return {n: (p.low, p.high) for n, p in space.items() if isinstance(p, Float)}


def _shifted(problem: str) -> Function:
    bounds = _bounds(problem)
    function = trial_function(problem)

    def shifted(params: dict[str, Any]) -> float:
        moved = {}
        for name, value in params.items():
            low, high = bounds[name]
            moved[name] = min(max(value + SHIFT * (high - low), low), high)
        return function(moved)

    return shifted


def _hand_made_runs(problem: str, seed: int, tracking_uri: str) -> str:
    """Logs ``FEW`` runs of random configurations with MLflow's client, as a researcher's
    manual runs would be; returns their experiment's name."""
    from mlflow import MlflowClient

    bounds = _bounds(problem)
    function = trial_function(problem)
    client = MlflowClient(tracking_uri)
    name = f"manual-{problem}-{seed}"
    experiment = client.create_experiment(name)
    rng = np.random.default_rng([seed, 7])
    for _ in range(FEW):
        params = {n: float(rng.uniform(low, high)) for n, (low, high) in bounds.items()}
        run = client.create_run(experiment)
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        client.log_metric(run.info.run_id, "value", function(params))
        client.set_terminated(run.info.run_id)
    return name


def measure(
    problem: str,
    engine: str,
    seed: int,
    folder: Path,
    tracking_uri: str,
    startup: int | None = None,
) -> dict[str, float]:
    """Regrets of one seed: after 1 and after ``TRIALS`` own trials, per start (``startup``:
    the new studies' ``n_startup_trials``, the engines' own rule if ``None``)."""
    optimum = PROBLEMS[problem].optimum
    assert optimum is not None
    function = trial_function(problem)
    earlier = {
        "study (30)": (f"earlier-{problem}-{seed}", function, "tpe", EARLIER_TRIALS),
        "study (30), shifted": (
            f"earlier-shifted-{problem}-{seed}",
            _shifted(problem),
            "tpe",
            EARLIER_TRIALS,
        ),
        "study (5)": (f"few-{problem}-{seed}", function, "random", FEW),
    }
    sources: dict[str, dict[str, Any]] = {"cold": {}}
    for start, (name, earlier_function, kind, trials) in earlier.items():
        if not (folder / name).exists():  # shared by both engines: one earlier study a seed
            strategy = (
                {"type": "random", "seed": 1000 + seed}
                if kind == "random"
                else {"type": "bayesian", "engine": kind, "seed": 1000 + seed}
            )
            _run(_spec(name, problem, strategy, folder), earlier_function, trials)
        sources[start] = {"warm_start": {"study": name}}
    experiment = f"manual-{problem}-{seed}"
    from mlflow import MlflowClient

    if MlflowClient(tracking_uri).get_experiment_by_name(experiment) is None:
        _hand_made_runs(problem, seed, tracking_uri)
    sources["mlflow (5 hand-made runs)"] = {
        "warm_start": {"mlflow_experiment": experiment, "tracking_uri": tracking_uri}
    }
    found: dict[str, float] = {}
    strategy = {"type": "bayesian", "engine": engine, "seed": seed}
    if startup is not None:
        strategy["n_startup_trials"] = startup
    for start, sections in sources.items():
        name = f"{start.replace(' ', '-').replace(',', '')}-{problem}-{engine}-{seed}"
        name = "".join(c for c in name if c.isalnum() or c == "-")
        values = _run(_spec(name, problem, strategy, folder, **sections), function, TRIALS)
        found[f"{start} @1"] = values[0] - optimum
        found[f"{start} @{TRIALS}"] = min(values) - optimum
    return found


def _quartiles(values: list[float]) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.3g} [{q1:.3g} - {q3:.3g}]"


def main() -> None:
    import optuna

    from tuner.strategies import default_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", default="branin,hartmann6")
    parser.add_argument(
        "--n-startup-trials",
        type=int,
        default=None,
        help="the new studies' n_startup_trials (counting the warm trials, as optuna does)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engines = [default_engine(), "tpe"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        for problem in args.problems.split(","):
            results: dict[str, dict[str, list[float]]] = {}
            for engine in engines:
                for seed in range(args.seeds):
                    regrets = measure(
                        problem, engine, seed, Path(tmp), tracking_uri, args.n_startup_trials
                    )
                    for key, value in regrets.items():
                        results.setdefault(engine, {}).setdefault(key, []).append(value)
            print(
                f"\n**{problem}** ({args.seeds} seeds; regret, median [25th - 75th percentile])\n"
            )
            print(f"| engine | start | after 1 trial | after {TRIALS} trials |")
            print("|---|---|---|---|")
            for engine, found in results.items():
                for start in STARTS:
                    first = _quartiles(found[f"{start} @1"])
                    last = _quartiles(found[f"{start} @{TRIALS}"])
                    print(f"| {engine} | {start} | {first} | {last} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
