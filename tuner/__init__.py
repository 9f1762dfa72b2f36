"""tuner: hyperparameter tuning with optuna strategies, Ray and SageMaker backends, MLflow runs.

Example:
    >>> import tuner
    >>> spec = tuner.StudySpec(
    ...     name="quadratic",
    ...     objective={"metric": "loss"},
    ...     space={"x": tuner.Float(-5, 5)},
    ...     strategy={"type": "random", "seed": 0},
    ...     budget={"max_trials": 20, "max_concurrent": 2},
    ...     trial={"function": "examples.functions:quadratic"},
    ... )
    >>> summary = tuner.run(spec)  # doctest: +SKIP

Heavy modules load on first use, so ``import tuner`` inside a trial (for ``tuner.report``)
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tuner.report import report

if TYPE_CHECKING:
    from tuner.errors import ConflictError, InputError, SetupError, TunerError
    from tuner.locks import StudyBusyError
    from tuner.records import StudySummary, TrialRecord, TrialState
    from tuner.space import Categorical, Float, Int, Space
    from tuner.spec import SpecError, StudySpec, load_spec
    from tuner.store import StudyExistsError, StudyNotFoundError
    from tuner.study import Study

__version__ = "0.1.0"

_LAZY = {
    "Study": "tuner.study",
    "StudySpec": "tuner.spec",
    "SpecError": "tuner.spec",
    "load_spec": "tuner.spec",
    "Float": "tuner.space",
    "Int": "tuner.space",
    "Categorical": "tuner.space",
    "Space": "tuner.space",
    "StudySummary": "tuner.records",
    "TunerError": "tuner.errors",
    "InputError": "tuner.errors",
    "ConflictError": "tuner.errors",
    "SetupError": "tuner.errors",
    "StudyBusyError": "tuner.locks",
    "StudyExistsError": "tuner.store",
    "StudyNotFoundError": "tuner.store",
    "TrialRecord": "tuner.records",
    "TrialState": "tuner.records",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


def run(spec: StudySpec | str, *, resume: bool = False, **study_args: Any) -> StudySummary:
    """Runs a study from a spec or the path of a YAML spec; see :class:`tuner.Study`."""
    from tuner.spec import load_spec
    from tuner.study import Study

    if isinstance(spec, str):
        spec = load_spec(spec)
    return Study(spec, **study_args).run(resume=resume)


__all__ = [
    "Categorical",
    "ConflictError",
    "Float",
    "InputError",
    "Int",
    "SetupError",
    "Space",
    "SpecError",
    "Study",
    "StudyBusyError",
    "StudyExistsError",
    "StudyNotFoundError",
    "StudySpec",
    "StudySummary",
    "TrialRecord",
    "TrialState",
    "TunerError",
    "load_spec",
    "report",
    "run",
]
