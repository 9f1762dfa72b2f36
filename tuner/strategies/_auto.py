"""The default engine: each proposal comes from the engine that suits the study at that point.

No single engine is right everywhere (``benchmarks/RESULTS.md``): optuna's GP is the most
sample-efficient on smooth spaces of floats but costs a kernel fit over the whole history per
proposal (0.75 s at 500 trials) and models the plateaus of integer parameters poorly; TPE
handles integer, categorical and conditional parameters and stays cheap; CMA-ES is the tool
for long continuous runs. So ``auto`` chooses per proposal:

1. **A model for the space**: the GP when every parameter is a float without a step and the
   study has one objective; TPE (multivariate, grouped, constant liar) when there is an
   integer, a stepped float, a categorical or a conditional parameter, or several objectives.
   Either comes after ``startup`` random trials (a Sobol start was measured and made the GP
   worse on Hartmann6). With trials in flight the random ones are counted as they start, not
   as they complete: once ``startup`` trials have started and three have completed, the model
   proposes, conditioning on the running ones, instead of drawing blindly until ``startup``
   trials have completed (26 random trials of 60 with 16 in flight).
2. **A bounded long run**: once ``gp_trials`` trials have completed the GP hands over to
   CMA-ES, warm-started from the history (its mean and covariance estimated from the best
   trials, as optuna's WS-CMA-ES does), whose cost per proposal does not grow with it. A
   one-parameter space, where CMA-ES does not apply, hands over to TPE, as do a constrained
   study (CMA-ES ignores constraints) and a machine without the ``cmaes`` package.

Each proposal's engine is kept per trial (:meth:`AutoSampler.engine_for`), so the CLI and
MLflow can say which engine proposed which trial.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from tuner.optuna_adapter import EvolvedHistory
from tuner.space import Float

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

    from tuner.space import Space

STARTUP_TRIALS = 10
"""Random trials before a model proposes."""
MODEL_TRIALS = 3
"""Completed trials a model needs, with trials in flight, to propose before ``startup`` have
completed (the engines are built to propose from this many)."""
GP_TRIALS = 200
"""Completed trials after which a numeric space's GP hands over to CMA-ES: the GP's cost per
proposal grows with the history (about 0.2 s at 200 trials on 2 cores, 0.75 s at 500)."""


def is_continuous(space: Space) -> bool:
    """Whether every parameter is an unconditional float without a step (the GP's ground)."""
    return all(isinstance(p, Float) and p.step is None and not p.when for p in space.values())


def _started(study: Study) -> tuple[int, int]:
    """Completed and running trials."""
    states = (TrialState.COMPLETE, TrialState.RUNNING)
    trials = study._get_trials(deepcopy=False, states=states, use_cache=True)  # noqa: SLF001
    complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
    return complete, len(trials) - complete


class AutoSampler(BaseSampler):
    """Chooses an engine for each proposal; see the module docstring.

    Args:
        space: the search space.
        build: makes an engine by name (``random``, ``tpe``, ``gp``, ``cmaes``) with the
            completed trials so far (``cmaes`` warm-starts from them); ``tpe`` and ``gp`` must
            propose from :data:`MODEL_TRIALS` completed trials on.
        objectives: how many objectives the study has.
        constraints: how many constraints (CMA-ES ignores them: a constrained long run stays
            with TPE).
        startup: random trials before a model proposes.
        gp_trials: completed trials after which the GP hands over (numeric spaces).
    """

    def __init__(
        self,
        space: Space,
        build: Callable[[str, Sequence[FrozenTrial]], BaseSampler],
        *,
        objectives: int = 1,
        constraints: int = 0,
        startup: int = STARTUP_TRIALS,
        gp_trials: int = GP_TRIALS,
    ):
        self._space = space
        self._build = build
        self._startup = startup
        self._gp_trials = gp_trials
        continuous = objectives == 1 and is_continuous(space)
        self._modelled = _numeric_model() if continuous else "tpe"
        cmaes = importlib.util.find_spec("cmaes") is not None
        evolves = cmaes and len(space) > 1 and constraints == 0
        self._long = "cmaes" if evolves and self._modelled == "gp" else "tpe"
        self._history = EvolvedHistory(space)
        self._engines: dict[str, BaseSampler] = {}
        self._chosen: dict[int, str] = {}

    def choose(self, study: Study, *, asking: bool = True) -> str:
        """The engine for the next proposal (``asking``: the trial being proposed is already
        running), from the trials completed and running so far."""
        complete, running = _started(study)
        started = complete + running - (1 if asking else 0)
        ready = min(self._startup, MODEL_TRIALS)
        if complete < self._startup and (complete < ready or started < self._startup):
            return "random"
        if self._modelled == "gp" and complete >= self._gp_trials:
            return self._long
        return self._modelled

    def engine_for(self, number: int) -> str | None:
        """The engine that proposed trial ``number`` in this process, if it did."""
        return self._chosen.get(number)

    def _engine(self, name: str, study: Study) -> BaseSampler:
        engine = self._engines.get(name)
        if engine is None:
            view = self._history.view(study)  # a resumed study's trials as the space is now
            history = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # noqa: SLF001
            engine = self._engines[name] = self._build(name, history)
        return engine

    def _for(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        name = self._chosen.get(trial.number)
        if name is None:
            name = self._chosen[trial.number] = self.choose(study)
        return self._engine(name, study)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        engine = self._for(study, trial)
        return engine.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # The engine that proposed the trial learns its outcome; one from an earlier process
        # (a resumed study) tells the engine in use now.
        name = self._chosen.pop(trial.number, None) or self.choose(study, asking=False)
        self._engine(name, study).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for engine in self._engines.values():
            engine.reseed_rng()


def _numeric_model() -> str:
    """The GP where torch is installed (optuna's GPSampler needs it), else TPE."""
    return "gp" if importlib.util.find_spec("torch") is not None else "tpe"
