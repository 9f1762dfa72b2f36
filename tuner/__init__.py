"""tuner: hyperparameter tuning with optuna strategies, Ray and SageMaker backends, MLflow runs.

Example:
    >>> import tuner
    >>> study = tuner.Study(
    ...     name="quadratic",
    ...     trial="examples.functions:quadratic",
    ...     space={"x": tuner.Float(-5, 5)},
    ...     objective="loss",
    ...     strategy="random",
    ...     seed=0,
    ...     max_trials=20,
    ...     max_concurrent=2,
    ... )
    >>> result = study.run()  # doctest: +SKIP
    >>> result.best.params  # doctest: +SKIP

Heavy modules load on first use, so ``import tuner`` inside a trial (for ``tuner.report``)
stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from tuner.report import report

if TYPE_CHECKING:
    from tuner.errors import ConflictError, InputError, SetupError, TunerError
    from tuner.locks import StudyBusyError
    from tuner.records import StudySummary, TrialRecord, TrialState
    from tuner.results import BestTrial, StudyResult, load
    from tuner.space import Categorical, Float, Int, Space
    from tuner.spec import SpecError, StudySpec, load_spec
    from tuner.store import StudyExistsError, StudyNotFoundError
    from tuner.study import Study

__version__ = "0.1.0"

_LAZY = {
    "Study": "tuner.study",
    "StudyResult": "tuner.results",
    "BestTrial": "tuner.results",
    "load": "tuner.results",
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


def run(spec: StudySpec | str | os.PathLike[str], **run_args: Any) -> StudyResult:
    """Runs a study from a spec or the path of a YAML spec: ``Study(spec).run(**run_args)``.

    See :class:`tuner.Study` and :meth:`tuner.Study.run`.
    """
    from tuner.spec import StudySpec
    from tuner.study import Study

    study = Study(spec) if isinstance(spec, StudySpec) else Study.from_yaml(spec)
    return study.run(**run_args)


__all__ = [
    "BestTrial",
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
    "StudyResult",
    "StudySpec",
    "StudySummary",
    "TrialRecord",
    "TrialState",
    "TunerError",
    "load",
    "load_spec",
    "report",
    "run",
]
