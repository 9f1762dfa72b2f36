"""Early-stopping savings: training steps spent and the best loss found, with and without
pruning, for tuner, optuna and Ray Tune side by side.

The problem is a synthetic learning curve over two hyperparameters whose curves cross (a high
learning rate drops fast and ends worse), so stopping early can be wrong. A trial trains
``STEPS`` steps of ``STEP_SECONDS`` each and reports its loss after every step; the final loss
is the last. Every tool proposes with TPE (seeded) and runs 2 trials at a time:

- tuner: a study on its embedded Ray cluster with ``pruner: none | median | asha``;
- optuna: ``study.optimize(n_jobs=2)`` with the same optuna pruners and settings;
- Ray Tune: ``OptunaSearch`` (TPE) with ``MedianStoppingRule`` / ``ASHAScheduler``.

``python -m benchmarks.pruning TOOL PRUNER SEEDS`` prints one JSON line with, per seed, the
steps trained, the best final loss and the makespan.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRIALS = 30
STEPS = 20
STEP_SECONDS = 0.05
WORKERS = 2
MEDIAN = {"n_startup_trials": 5, "n_warmup_steps": 2}
ASHA = {"min_resource": 1, "reduction_factor": 3}


def loss_at(lr_log10: float, width: float, step: int) -> float:
    """The loss after ``step + 1`` steps: fast learning rates drop fast, to a worse floor."""
    final = 0.25 * (lr_log10 + 2.0) ** 2 + (width - 0.7) ** 2
    rate = 0.08 * 10 ** ((lr_log10 + 4.0) / 2.0)
    return final + 2.0 * math.exp(-rate * (step + 1))


def curve_trial(params: dict[str, Any]) -> float:
    """tuner's trial function: trains, reporting the loss after every step."""
    import tuner

    loss = math.inf
    for step in range(STEPS):
        time.sleep(STEP_SECONDS)
        loss = loss_at(params["lr_log10"], params["width"], step)
        tuner.report(step=step, loss=loss)
    return loss


def _init_ray() -> None:
    import logging

    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level=logging.ERROR)


def run_tuner(pruner: str, seed: int, workdir: Path) -> dict[str, float]:
    import optuna

    import tuner
    from tuner.orchestrator import Orchestrator
    from tuner.store import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _init_ray()
    settings = {"none": {}, "median": MEDIAN, "asha": ASHA}[pruner]
    spec = tuner.StudySpec(
        name=f"pruning-{pruner}-{seed}",
        objective={"metric": "loss"},
        space={"lr_log10": tuner.Float(-4.0, 0.0), "width": tuner.Float(0.0, 1.0)},
        strategy={"type": "bayesian", "engine": "tpe", "seed": seed},
        budget={"max_trials": TRIALS, "max_concurrent": WORKERS},
        pruner={"type": pruner, **settings},
        trial={"function": "benchmarks.pruning:curve_trial"},
        tracking={"mlflow": None},
        storage={"dir": str(workdir / "studies")},
    )
    started = time.perf_counter()
    Orchestrator(spec).run()
    seconds = time.perf_counter() - started
    trials = load_study(spec).get_trials(deepcopy=False)
    complete = [t.value for t in trials if t.value is not None and t.state.name == "COMPLETE"]
    return {
        "steps": sum(len(t.intermediate_values) for t in trials),
        "best": min(complete),
        "seconds": seconds,
    }


def run_optuna(pruner: str, seed: int) -> dict[str, float]:
    import optuna

    from tuner.spec import AshaPruner, MedianPruner, NoPruner
    from tuner.strategies.pruners import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = {"none": NoPruner(), "median": MedianPruner(**MEDIAN), "asha": AshaPruner(**ASHA)}
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
        pruner=make_pruner(config[pruner]),
    )
    steps = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal steps
        lr, width = trial.suggest_float("lr_log10", -4.0, 0.0), trial.suggest_float("width", 0, 1)
        loss = math.inf
        for step in range(STEPS):
            time.sleep(STEP_SECONDS)
            loss = loss_at(lr, width, step)
            steps += 1
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return loss

    started = time.perf_counter()
    study.optimize(objective, n_trials=TRIALS, n_jobs=WORKERS)
    return {"steps": steps, "best": study.best_value, "seconds": time.perf_counter() - started}


def run_raytune(pruner: str, seed: int, workdir: Path) -> dict[str, float]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    _init_ray()
    scheduler: Any = {
        "none": FIFOScheduler(),
        "median": MedianStoppingRule(
            grace_period=MEDIAN["n_warmup_steps"] + 1,
            min_samples_required=MEDIAN["n_startup_trials"],
        ),
        "asha": ASHAScheduler(
            max_t=STEPS,
            grace_period=ASHA["min_resource"],
            reduction_factor=ASHA["reduction_factor"],
        ),
    }[pruner]

    def trainable(config: dict[str, Any]) -> None:
        for step in range(STEPS):
            time.sleep(STEP_SECONDS)
            tune.report({"loss": loss_at(config["lr_log10"], config["width"], step)})

    runner = tune.Tuner(
        trainable,
        param_space={"lr_log10": tune.uniform(-4.0, 0.0), "width": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            num_samples=TRIALS,
            max_concurrent_trials=WORKERS,
            search_alg=OptunaSearch(seed=seed),
            scheduler=scheduler,
            metric="loss",
            mode="min",
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray_results"), verbose=0),
    )
    started = time.perf_counter()
    results = runner.fit()
    seconds = time.perf_counter() - started
    frames = [r.metrics_dataframe for r in results if r.metrics_dataframe is not None]
    finals = [
        float(frame["loss"].iloc[-1]) for frame in frames if len(frame) == STEPS
    ]  # trials trained to the end, as the other tools' COMPLETE trials
    return {
        "steps": sum(len(frame) for frame in frames),
        "best": min(finals),
        "seconds": seconds,
    }


def main() -> None:
    tool, pruner, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(seeds):
            workdir = Path(folder, str(seed))
            workdir.mkdir()
            if tool == "tuner":
                runs.append(run_tuner(pruner, seed, workdir))
            elif tool == "optuna":
                runs.append(run_optuna(pruner, seed))
            elif tool == "raytune":
                runs.append(run_raytune(pruner, seed, workdir))
            else:
                raise SystemExit(f"unknown tool {tool!r}")
    print(json.dumps({"tool": tool, "pruner": pruner, "runs": runs}))


if __name__ == "__main__":
    main()
