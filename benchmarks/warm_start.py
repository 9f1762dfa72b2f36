"""Warm starts: regret after the first trials of a new study, cold against warm-started.

For each problem (Branin, Hartmann6 from ``benchmarks.quality``), engine (the default bayesian
engine and TPE) and seed, a new study runs ``TRIALS`` trials of its own:

- **cold**: nothing known before (with the engines' 10 startup trials, these 10 are random);
- **warm**: ``warm_start: {study: earlier}``, an earlier study of 30 trials of the same problem;
- **warm, shifted**: the earlier study was of the problem shifted by 5% of each range (a
  related task, e.g. last month's data), so what it knows is close but not exact.

The earlier studies are tuner studies in journal stores (30 trials of TPE with seed
``1000 + seed``), and the new study reads them through ``tuner.warm_start.prepare`` exactly as
``tuner run`` does; proposals come from ``tuner.strategies.make_sampler`` through optuna's
ask/tell, as the study loop asks them (no backend: the function is evaluated in place). Regret
is the best value of the new study's *own* trials minus the known optimum: the warm trials are
never counted. The earlier study's own best is printed as context.

``python -m benchmarks.warm_start [--seeds 10] [--problems branin,hartmann6]``
(about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import PROBLEMS

TRIALS = 10
EARLIER_TRIALS = 30
SHIFT = 0.05
"""The shifted problem's offset, as a fraction of each parameter's range."""


def trial_function(problem: str) -> Callable[[dict[str, Any]], float]:
    """The problem as a trial function of ``x0, x1, ...`` (what a study of it would run; the
    benchmark evaluates the same function in place, without a backend)."""
    function, bounds, _ = PROBLEMS[problem]

    def evaluate(params: dict[str, Any]) -> float:
        return float(function(np.array([params[f"x{i}"] for i in range(len(bounds))])))

    return evaluate


def _spec(name: str, problem: str, engine: str, seed: int, folder: Path, **sections: Any) -> Any:
    from tuner.spec import StudySpec

    _, bounds, _ = PROBLEMS[problem]
    return StudySpec.model_validate(
        {
            "name": name,
            "objective": {"metric": "value"},
            "space": {
                f"x{i}": {"type": "float", "low": lo, "high": hi}
                for i, (lo, hi) in enumerate(bounds)
            },
            "strategy": {"type": "bayesian", "engine": engine, "seed": seed},
            "budget": {"max_trials": TRIALS},
            "trial": {"function": trial_function(problem)},
            "tracking": {"mlflow": None},
            "storage": {"dir": str(folder)},
            **sections,
        }
    )


def _run(spec: Any, function: Callable[[np.ndarray], float], trials: int) -> list[float]:
    """Opens ``spec``'s study as ``tuner run`` does (warm start included), runs ``trials``
    trials of its own and returns their values in order."""
    from tuner.store import open_storage, open_study
    from tuner.strategies import make_sampler
    from tuner.warm_start import prepare

    space = spec.search_space
    sampler = make_sampler(spec.strategy, space, spec.strategy.seed)
    study = open_study(spec, sampler, open_storage(spec))
    prepare(study, spec)
    values = []
    for _ in range(trials):
        trial = study.ask()
        config = space.suggest(trial)
        value = function(np.array([config[f"x{i}"] for i in range(len(space))]))
        study.tell(trial, value)
        values.append(value)
    return values


def _shifted(problem: str) -> Callable[[np.ndarray], float]:
    function, bounds, _ = PROBLEMS[problem]
    offset = np.array([SHIFT * (hi - lo) for lo, hi in bounds])
    low = np.array([lo for lo, _ in bounds])
    high = np.array([hi for _, hi in bounds])
    return lambda x: function(np.clip(x + offset, low, high))


def measure(problem: str, engine: str, seed: int, folder: Path) -> dict[str, float]:
    """Regrets of one seed: after 1 and after ``TRIALS`` own trials, per start."""
    function, _, optimum = PROBLEMS[problem]
    assert optimum is not None
    found: dict[str, float] = {}
    for earlier, earlier_function in (
        ("earlier", function),
        ("earlier-shifted", _shifted(problem)),
    ):
        name = f"{earlier}-{problem}-{seed}"
        if not (folder / name).exists():  # shared by both engines: one earlier study a seed
            values = _run(
                _spec(name, problem, "tpe", 1000 + seed, folder), earlier_function, EARLIER_TRIALS
            )
            found[f"{earlier} best"] = min(values) - optimum
    starts: dict[str, dict[str, Any]] = {
        "cold": {},
        "warm": {"warm_start": {"study": f"earlier-{problem}-{seed}"}},
        "warm, shifted": {"warm_start": {"study": f"earlier-shifted-{problem}-{seed}"}},
    }
    for start, sections in starts.items():
        name = f"{start.replace(', ', '-')}-{problem}-{engine}-{seed}"
        values = _run(_spec(name, problem, engine, seed, folder, **sections), function, TRIALS)
        found[f"{start} @1"] = values[0] - optimum
        found[f"{start} @{TRIALS}"] = min(values) - optimum
    return found


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(median), float(q1), float(q3)


def main() -> None:
    import optuna

    from tuner.strategies import default_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", default="branin,hartmann6")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engines = [default_engine(), "tpe"]
    started = time.perf_counter()
    for problem in args.problems.split(","):
        results: dict[str, dict[str, list[float]]] = {}
        earlier: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for engine in engines:
                for seed in range(args.seeds):
                    for key, value in measure(problem, engine, seed, Path(tmp)).items():
                        if key.endswith(" best"):
                            earlier.setdefault(key, []).append(value)
                        else:
                            results.setdefault(engine, {}).setdefault(key, []).append(value)
        print(f"\n**{problem}** ({args.seeds} seeds; regret, median [25th - 75th percentile])\n")
        print(f"| engine | start | after 1 trial | after {TRIALS} trials |")
        print("|---|---|---|---|")
        for engine, found in results.items():
            for start in ("cold", "warm", "warm, shifted"):
                first = _quartiles(found[f"{start} @1"])
                last = _quartiles(found[f"{start} @{TRIALS}"])
                print(
                    f"| {engine} | {start} | {first[0]:.3g} [{first[1]:.3g} - {first[2]:.3g}] "
                    f"| {last[0]:.3g} [{last[1]:.3g} - {last[2]:.3g}] |"
                )
        for key, values in earlier.items():
            print(
                f"\n{key.removesuffix(' best')} study's own best after {EARLIER_TRIALS} trials "
                f"(TPE): median regret {statistics.median(values):.3g}"
            )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
