"""Search quality and strategy cost: tuner's engines against standalone optuna and skopt.

Quality: the best value found after each trial (simple regret where the optimum is known, the
value itself for real models), per seed, on problems of every class a default engine must
handle (:data:`PROBLEMS`): smooth low-dimensional (Branin, Hartmann6), high-dimensional
(Rosenbrock-10, Ackley-10, multimodal; Hartmann6 in 12-d, where 6 parameters do nothing),
noisy (Hartmann6 with noise: what counts is the true value of the trial the observations rank
best), real models with float, integer and log
parameters (scikit-learn's HistGradientBoosting, 3-fold CV on its breast-cancer data) and a
conditional real model (which classifier, then its own hyperparameters). Every tuner engine
runs sequentially, the default also with 4 and 16 trials in flight, beside standalone optuna
TPE and GP and ``skopt.gp_minimize``. ``python -m benchmarks.quality curve PROBLEM CONFIG SEED
[TRIALS]`` prints one JSON line.

"In flight" is simulated exactly as the study loop asks: the strategy proposes while the
other trials are pending (running), and the oldest pending trial is told first.

Strategy cost: milliseconds per proposal with 10 to 2,000 completed trials in the history,
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tuner.space import Space

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


def ackley(x: np.ndarray) -> float:
    d = len(x)
    return float(
        -20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d))
        - math.exp(np.sum(np.cos(2 * math.pi * x)) / d)
        + 20
        + math.e
    )


def _cv_error(model: Any) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    features, labels = _cancer()
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    return float(1 - cross_val_score(model, features, labels, cv=folds).mean())


def hgb_error(config: dict[str, Any]) -> float:
    """3-fold CV error of HistGradientBoosting: learning rate and L2 penalty on a log scale,
    leaves and minimum leaf size integers (issue #13's real model)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        learning_rate=config["learning_rate"],
        max_leaf_nodes=config["max_leaf_nodes"],
        min_samples_leaf=config["min_samples_leaf"],
        l2_regularization=config["l2_regularization"],
        max_iter=50,
        early_stopping=False,
        random_state=0,
    )
    return _cv_error(model)


def classifier_error(config: dict[str, Any]) -> float:
    """3-fold CV error of the classifier ``config`` picks, with its own hyperparameters."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    kind = config["model"]
    model: Any
    if kind == "svc":
        model = SVC(C=config["svc_c"], gamma=config["svc_gamma"])
    elif kind == "logreg":
        model = LogisticRegression(C=config["logreg_c"], max_iter=500)
    elif kind == "knn":
        model = KNeighborsClassifier(config["knn_k"], weights=config["knn_weights"])
    else:
        model = DecisionTreeClassifier(
            max_depth=config["tree_depth"], min_samples_leaf=config["tree_leaf"], random_state=0
        )
    return _cv_error(make_pipeline(StandardScaler(), model))


@dataclass(frozen=True)
class Problem:
    """A benchmark problem.

    Attributes:
        kind: the class of problem it stands for.
        space: builds its tuner search space.
        evaluate: the observed value of a configuration (``rng`` draws its noise, if any).
        optimum: the known optimum (regret is reported), or ``None`` (the value is).
        truth: the noiseless value, for noisy problems.
    """

    kind: str
    space: Callable[[], Space]
    evaluate: Callable[[dict[str, Any], np.random.Generator], float]
    optimum: float | None
    truth: Callable[[dict[str, Any]], float] | None = None


def _box(bounds: list[tuple[float, float]]) -> Callable[[], Space]:
    def space() -> Space:
        from tuner.space import Float, Space

        return Space({f"x{i}": Float(lo, hi) for i, (lo, hi) in enumerate(bounds)})

    return space


def _vector(function: Callable[[np.ndarray], float]) -> Callable[[dict[str, Any]], float]:
    return lambda config: function(np.array([config[f"x{i}"] for i in range(len(config))]))


def _exact(
    function: Callable[[dict[str, Any]], float],
) -> Callable[[dict[str, Any], np.random.Generator], float]:
    return lambda config, rng: function(config)


def _noisy(
    function: Callable[[dict[str, Any]], float], sd: float
) -> Callable[[dict[str, Any], np.random.Generator], float]:
    return lambda config, rng: function(config) + float(rng.normal(0.0, sd))


def _hgb_cancer_space() -> Space:
    from tuner.space import Float, Space

    return Space(
        {
            "x0": Float(-3.0, 0.0),
            "x1": Float(4.0, 64.0),
            "x2": Float(2.0, 64.0),
            "x3": Float(-6.0, 1.0),
            "x4": Float(0.2, 1.0),
        }
    )


def _hgb_error_space() -> Space:
    from tuner.space import Float, Int, Space

    return Space(
        {
            "learning_rate": Float(1e-3, 1.0, log=True),
            "max_leaf_nodes": Int(4, 64),
            "min_samples_leaf": Int(2, 64, log=True),
            "l2_regularization": Float(1e-6, 10.0, log=True),
        }
    )


def _classifier_space() -> Space:
    from tuner.space import Categorical, Float, Int, Space

    return Space(
        {
            "model": Categorical(["svc", "logreg", "knn", "tree"]),
            "svc_c": Float(1e-3, 1e3, log=True, when={"model": "svc"}),
            "svc_gamma": Float(1e-5, 10.0, log=True, when={"model": "svc"}),
            "logreg_c": Float(1e-4, 1e4, log=True, when={"model": "logreg"}),
            "knn_k": Int(1, 50, when={"model": "knn"}),
            "knn_weights": Categorical(["uniform", "distance"], when={"model": "knn"}),
            "tree_depth": Int(1, 20, when={"model": "tree"}),
            "tree_leaf": Int(1, 50, log=True, when={"model": "tree"}),
        }
    )


_HARTMANN = _vector(hartmann6)
_RELEVANT = (3, 9, 0, 7, 5, 11)
"""The parameters of ``hartmann6-in-12`` that Hartmann6 reads (the other six do nothing, as
most of a real model's hyperparameters matter little)."""

PROBLEMS: dict[str, Problem] = {
    "branin": Problem(
        "smooth, 2-d", _box([(-5.0, 10.0), (0.0, 15.0)]), _exact(_vector(branin)), 0.397887
    ),
    "hartmann6": Problem("smooth, 6-d", _box([(0.0, 1.0)] * 6), _exact(_HARTMANN), -3.32237),
    "rosenbrock10": Problem(
        "high-dimensional, 10-d", _box([(-2.048, 2.048)] * 10), _exact(_vector(rosenbrock)), 0.0
    ),
    "ackley10": Problem(
        "high-dimensional multimodal, 10-d",
        _box([(-32.768, 32.768)] * 10),
        _exact(_vector(ackley)),
        0.0,
    ),
    "hartmann6-in-12": Problem(
        "high-dimensional, 6 of 12 parameters matter",
        _box([(0.0, 1.0)] * 12),
        _exact(lambda c: hartmann6(np.array([c[f"x{i}"] for i in _RELEVANT]))),
        -3.32237,
    ),
    "hartmann6-noisy": Problem(
        "noisy (sd 0.2), 6-d",
        _box([(0.0, 1.0)] * 6),
        _noisy(_HARTMANN, 0.2),
        -3.32237,
        truth=_HARTMANN,
    ),
    "hgb-cancer": Problem(
        "real model, 5 floats (CV log loss)",
        _hgb_cancer_space,
        _exact(lambda c: hgb_cancer(np.array([c[f"x{i}"] for i in range(5)]))),
        None,
    ),
    "hgb-error": Problem(
        "real model, integer and log parameters (CV error)",
        _hgb_error_space,
        _exact(hgb_error),
        None,
    ),
    "classifier": Problem(
        "real model, conditional: 4 classifiers (CV error)",
        _classifier_space,
        _exact(classifier_error),
        None,
    ),
}
"""Every problem of the suite, by name."""

DEFAULT = "tuner-auto"
"""The default strategy: ``strategy: {type: bayesian}`` with no engine."""
ENGINE_CONFIGS = ["tuner-gp", "tuner-tpe", "tuner-cmaes", "tuner-qmc", "tuner-random"]
PEERS = ["optuna-tpe", "optuna-gp", "skopt-gp_minimize"]
CONFIGS = [DEFAULT, f"{DEFAULT}-x4", f"{DEFAULT}-x16", *ENGINE_CONFIGS, *PEERS]


def curve(problem: str, config: str, seed: int, trials: int = TRIALS) -> list[float]:
    """The best value found after each trial (regret where the optimum is known)."""
    spec = PROBLEMS[problem]
    space = spec.space()
    rng = np.random.default_rng([seed, 13])
    values: list[float] = []
    best: tuple[float, float] | None = None  # (observed, true) of the incumbent

    def evaluate(config_: dict[str, Any]) -> float:
        nonlocal best
        observed = spec.evaluate(config_, rng)
        true = spec.truth(config_) if spec.truth is not None else observed
        if best is None or observed < best[0]:
            best = (observed, true)
        values.append(best[1] - (spec.optimum or 0.0))
        return observed

    if config.startswith("tuner-"):
        _run_tuner(space, config.removeprefix("tuner-"), seed, trials, evaluate)
    elif config == "skopt-gp_minimize":
        _run_skopt(space, seed, trials, evaluate)
    else:
        _run_optuna(space, config, seed, trials, evaluate)
    return values


def _run_tuner(
    space: Space, name: str, seed: int, trials: int, evaluate: Callable[[dict[str, Any]], float]
) -> None:
    import optuna

    from tuner.spec import BayesianStrategy, RandomStrategy
    from tuner.strategies import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    in_flight = 1
    if "-x" in name:
        name, count = name.rsplit("-x", 1)
        in_flight = int(count)
    strategy: Any
    if name == "random":
        strategy = RandomStrategy(seed=seed)
    else:
        strategy = BayesianStrategy(engine=name, seed=seed)
    sampler = make_sampler(strategy, space, seed)
    study = optuna.create_study(sampler=sampler)
    pending: deque[tuple[Any, dict[str, Any]]] = deque()
    told = 0
    while told < trials:
        while len(pending) < in_flight and told + len(pending) < trials:
            trial = study.ask()
            pending.append((trial, space.suggest(trial)))
        trial, config = pending.popleft()
        study.tell(trial, evaluate(config))
        told += 1


def _run_optuna(
    space: Space, config: str, seed: int, trials: int, evaluate: Callable[[dict[str, Any]], float]
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if config == "optuna-tpe"
        else optuna.samplers.GPSampler(seed=seed)
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: evaluate(space.suggest(trial)), n_trials=trials)


def _run_skopt(
    space: Space, seed: int, trials: int, evaluate: Callable[[dict[str, Any]], float]
) -> None:
    """``skopt.gp_minimize`` over every parameter (it has no conditions: the objective sees
    only the active ones)."""
    import skopt
    from skopt.space import Categorical as SkCategorical
    from skopt.space import Integer, Real

    from tuner.space import Categorical, Int

    dimensions: list[Any] = []
    for param in space.values():
        if isinstance(param, Categorical):
            dimensions.append(SkCategorical(list(param.choices)))
        else:
            prior = "log-uniform" if param.log else "uniform"
            kind = Integer if isinstance(param, Int) else Real
            dimensions.append(kind(param.low, param.high, prior=prior))
    names = list(space)

    def objective(point: list[Any]) -> float:
        config: dict[str, Any] = {}
        for name, value in zip(names, point, strict=True):
            if space.is_active(name, config):
                config[name] = value.item() if hasattr(value, "item") else value
        return evaluate(config)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skopt.gp_minimize(objective, dimensions, n_calls=trials, random_state=seed)


def proposal_cost(engine: str, history: int, proposals: int = 4) -> dict[str, float]:
    """Milliseconds per proposal with ``history`` completed trials (Hartmann6's space): the
    first proposal (``cold``: a model fitted from scratch, as after a resume) and the median
    of the next ones (``warm``: as in a running study, where engines reuse their last fit)."""
    import optuna

    from tuner.spec import BayesianStrategy, RandomStrategy
    from tuner.strategies import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = PROBLEMS["hartmann6"].space()
    strategy = (
        RandomStrategy(seed=0) if engine == "random" else BayesianStrategy(engine=engine, seed=0)
    )
    study = optuna.create_study(sampler=make_sampler(strategy, space, 0))
    rng = np.random.default_rng(0)
    distributions = space.distributions()
    for _ in range(history):
        x = rng.uniform(0, 1, size=len(space))
        study.add_trial(
            optuna.trial.create_trial(
                params={f"x{i}": float(v) for i, v in enumerate(x)},
                distributions=distributions,
                value=hartmann6(x),
            )
        )
    times = []
    for _ in range(proposals):
        started = time.perf_counter()
        trial = study.ask()
        study.tell(trial, _HARTMANN(space.suggest(trial)))
        times.append((time.perf_counter() - started) * 1000)
    return {"cold": times[0], "warm": float(np.median(times[1:]))}


def main() -> None:
    kind = sys.argv[1]
    if kind == "curve":
        problem, config, seed = sys.argv[2], sys.argv[3], int(sys.argv[4])
        trials = int(sys.argv[5]) if len(sys.argv) > 5 else TRIALS
        values = curve(problem, config, seed, trials)
        print(json.dumps({"problem": problem, "config": config, "seed": seed, "curve": values}))
    elif kind == "cost":
        engine = sys.argv[2]
        sizes = [int(n) for n in sys.argv[3].split(",")] if len(sys.argv) > 3 else [10, 100, 500]
        costs = {n: proposal_cost(engine, n) for n in sizes}
        print(json.dumps({"engine": engine, "ms": costs}))
    else:
        raise SystemExit(f"unknown benchmark {kind!r}")


if __name__ == "__main__":
    main()
