"""Search quality and strategy cost: tuner's strategies against standalone optuna and skopt.

Quality: simple regret (best value found minus the known optimum) after 60 trials on
Branin (2-d), Hartmann6 (6-d) and Rosenbrock (10-d), and for one real model (the 3-fold
cross-validated log loss of scikit-learn's HistGradientBoosting on its bundled breast-cancer
data, 5 hyperparameters; its optimum is unknown, so its value is reported), per seed, for every tuner strategy run
sequentially and with 4 trials in flight, and for standalone optuna TPE and GP and
``skopt.gp_minimize`` run sequentially. ``python -m benchmarks.quality regret PROBLEM CONFIG SEED``
prints one JSON line.

"In flight" is simulated exactly as the study loop asks: the strategy proposes while 3 other
trials are pending (running), and the oldest pending trial is told first.

Strategy cost: milliseconds per proposal with 10, 100 and 500 completed trials in the history,
per engine (``python -m benchmarks.quality cost ENGINE [10,100,500,2000]``).
"""

from __future__ import annotations

import functools
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


@functools.cache
def _cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    return features, labels


def hgb_cancer(x: np.ndarray) -> float:
    """3-fold CV log loss of HistGradientBoosting: log10 learning rate, leaves, min samples per
    leaf, log10 L2 regularisation, feature fraction (single-threaded: OMP_NUM_THREADS=1)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    model = HistGradientBoostingClassifier(
        learning_rate=10 ** x[0],
        max_leaf_nodes=round(x[1]),
        min_samples_leaf=round(x[2]),
        l2_regularization=10 ** x[3],
        max_features=float(x[4]),
        max_iter=50,
        early_stopping=False,
        random_state=0,
    )
    features, labels = _cancer()
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(model, features, labels, cv=folds, scoring="neg_log_loss")
    return float(-scores.mean())


PROBLEMS: dict[
    str, tuple[Callable[[np.ndarray], float], list[tuple[float, float]], float | None]
] = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.32237),
    "rosenbrock10": (rosenbrock, [(-2.048, 2.048)] * 10, 0.0),
    "hgb-cancer": (
        hgb_cancer,
        [(-3.0, 0.0), (4.0, 64.0), (2.0, 64.0), (-6.0, 1.0), (0.2, 1.0)],
        None,
    ),
}
"""name -> (function, bounds, known optimum: regret is reported; None: the value is)."""
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
    return study.best_value - (optimum or 0.0)


def _peer_regret(problem: str, config: str, seed: int) -> float:
    function, bounds, optimum = PROBLEMS[problem]
    if config == "skopt-gp_minimize":
        import skopt

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = skopt.gp_minimize(
                lambda x: function(np.array(x)), bounds, n_calls=TRIALS, random_state=seed
            )
        return float(result.fun) - (optimum or 0.0)
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
    return study.best_value - (optimum or 0.0)


def regret(problem: str, config: str, seed: int) -> float:
    if config.startswith("tuner-"):
        return _tuner_regret(problem, config, seed)
    return _peer_regret(problem, config, seed)


def proposal_cost(engine: str, history: int, proposals: int = 4) -> dict[str, float]:
    """Milliseconds per proposal with ``history`` completed trials (Hartmann6's space): the
    first proposal (``cold``: a model fitted from scratch, as after a resume) and the median
    of the next ones (``warm``: as in a running study, where engines reuse their last fit)."""
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
    times = []
    for _ in range(proposals):
        started = time.perf_counter()
        trial = study.ask()
        config = space.suggest(trial)
        study.tell(trial, function(np.array([config[f"x{i}"] for i in range(len(bounds))])))
        times.append((time.perf_counter() - started) * 1000)
    return {"cold": times[0], "warm": float(np.median(times[1:]))}


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
        sizes = [int(n) for n in sys.argv[3].split(",")] if len(sys.argv) > 3 else [10, 100, 500]
        costs = {n: proposal_cost(engine, n) for n in sizes}
        print(json.dumps({"engine": engine, "ms": costs}))
    else:
        raise SystemExit(f"unknown benchmark {kind!r}")


if __name__ == "__main__":
    main()
