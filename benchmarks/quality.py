"""Search quality and strategy cost: tuner's strategies against standalone optuna and skopt.

Quality: simple regret (best value found minus the known optimum) after 60 trials on
Branin (2-d), Hartmann6 (6-d) and Rosenbrock (10-d), per seed, for every tuner strategy run
sequentially and with 4 trials in flight, and for standalone optuna TPE and GP and
``skopt.gp_minimize`` run sequentially. ``python -m benchmarks.quality regret PROBLEM CONFIG SEED``
prints one JSON line.

"In flight" is simulated exactly as the study loop asks: the strategy proposes while 3 other
trials are pending (running), and the oldest pending trial is told first.

Strategy cost: milliseconds per proposal with 10, 100 and 500 completed trials in the history,
per engine (``python -m benchmarks.quality cost ENGINE``).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

TRIALS = 60

# --- problems ---------------------------------------------------------------------------------

_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def branin(x: np.ndarray) -> float:
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return float((x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10)


def hartmann6(x: np.ndarray) -> float:
    inner = np.sum(_H_A * (x - _H_P) ** 2, axis=1)
    return float(-np.sum(_H_ALPHA * np.exp(-inner)))


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


PROBLEMS: dict[str, tuple[Callable[[np.ndarray], float], list[tuple[float, float]], float]] = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.32237),
    "rosenbrock10": (rosenbrock, [(-2.048, 2.048)] * 10, 0.0),
}
GRID_STEPS = {"branin": (2.5, 2.5)}  # 7 x 7 = 49 points, within 60 trials

CONFIGS = [
    "tuner-random",
    "tuner-grid",
    "tuner-tpe",
    "tuner-gp",
    "tuner-skopt",
    "tuner-tpe-x4",
    "tuner-gp-x4",
    "tuner-skopt-x4",
    "tuner-random-x4",
    "optuna-tpe",
    "optuna-gp",
    "skopt-gp_minimize",
]


def _tuner_regret(problem: str, config: str, seed: int) -> float:
    import optuna

    from tuner.space import Float, Space
    from tuner.spec import BayesianStrategy, GridStrategy, RandomStrategy
    from tuner.strategies import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    function, bounds, optimum = PROBLEMS[problem]
    name = config.removeprefix("tuner-")
    in_flight = 4 if name.endswith("-x4") else 1
    name = name.removesuffix("-x4")
    steps = GRID_STEPS.get(problem, (None,) * len(bounds)) if name == "grid" else None
    space = Space(
        {
            f"x{i}": Float(lo, hi, step=steps[i] if steps else None)
            for i, (lo, hi) in enumerate(bounds)
        }
    )
    strategy: Any
    if name == "random":
        strategy = RandomStrategy(seed=seed)
    elif name == "grid":
        strategy = GridStrategy(shuffle=True, seed=seed)
    else:
        strategy = BayesianStrategy(engine=name, seed=seed)
    sampler = make_sampler(strategy, space, seed)
    study = optuna.create_study(sampler=sampler)
    pending: deque[tuple[Any, dict[str, float]]] = deque()
    told = 0
    while told < TRIALS:
        while len(pending) < in_flight and told + len(pending) < TRIALS:
            if sampler.is_exhausted(study):
                break
            trial = study.ask()
            pending.append((trial, space.suggest(trial)))
        if not pending:
            break
        trial, config_ = pending.popleft()
        study.tell(trial, function(np.array([config_[f"x{i}"] for i in range(len(bounds))])))
        told += 1
    return study.best_value - optimum


def _peer_regret(problem: str, config: str, seed: int) -> float:
    function, bounds, optimum = PROBLEMS[problem]
    if config == "skopt-gp_minimize":
        import skopt

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = skopt.gp_minimize(
                lambda x: function(np.array(x)), bounds, n_calls=TRIALS, random_state=seed
            )
        return float(result.fun) - optimum
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if config == "optuna-tpe"
        else optuna.samplers.GPSampler(seed=seed)
    )
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x = [trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(bounds)]
        return function(np.array(x))

    study.optimize(objective, n_trials=TRIALS)
    return study.best_value - optimum


def regret(problem: str, config: str, seed: int) -> float:
    if config.startswith("tuner-"):
        return _tuner_regret(problem, config, seed)
    return _peer_regret(problem, config, seed)


def proposal_cost(engine: str, history: int, proposals: int = 3) -> float:
    """Milliseconds per proposal with ``history`` completed trials (Hartmann6's space)."""
    import optuna

    from tuner.space import Float, Space
    from tuner.spec import BayesianStrategy, RandomStrategy
    from tuner.strategies import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    function, bounds, _ = PROBLEMS["hartmann6"]
    space = Space({f"x{i}": Float(lo, hi) for i, (lo, hi) in enumerate(bounds)})
    strategy = (
        RandomStrategy(seed=0) if engine == "random" else BayesianStrategy(engine=engine, seed=0)
    )
    study = optuna.create_study(sampler=make_sampler(strategy, space, 0))
    rng = np.random.default_rng(0)
    distributions = space.distributions()
    for _ in range(history):
        x = rng.uniform(0, 1, size=len(bounds))
        study.add_trial(
            optuna.trial.create_trial(
                params={f"x{i}": float(v) for i, v in enumerate(x)},
                distributions=distributions,
                value=function(x),
            )
        )
    started = time.perf_counter()
    for _ in range(proposals):
        trial = study.ask()
        config = space.suggest(trial)
        study.tell(trial, function(np.array([config[f"x{i}"] for i in range(len(bounds))])))
    return (time.perf_counter() - started) / proposals * 1000


def main() -> None:
    kind = sys.argv[1]
    if kind == "regret":
        problem, config, seed = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(
            json.dumps(
                {
                    "problem": problem,
                    "config": config,
                    "seed": seed,
                    "regret": regret(problem, config, seed),
                }
            )
        )
    elif kind == "cost":
        engine = sys.argv[2]
        costs = {n: proposal_cost(engine, n) for n in (10, 100, 500)}
        print(json.dumps({"engine": engine, "ms": costs}))
    else:
        raise SystemExit(f"unknown benchmark {kind!r}")


if __name__ == "__main__":
    main()
