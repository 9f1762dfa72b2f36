"""The study spec: its sections, the whole spec, loading it from YAML, and its problems.

The YAML form and the Python form build the same :class:`StudySpec`::

    spec = StudySpec(
        name="digits-svm",
        objective={"metric": "val_accuracy", "direction": "maximize"},
        space={"C": Float(1e-3, 1e3, log=True), "kernel": Categorical(["rbf", "poly"])},
        strategy={"type": "bayesian", "engine": "tpe", "seed": 42},
        budget={"max_trials": 30, "max_concurrent": 2},
        trial={"function": "examples.quickstart.train:train_svm"},
    )

Modules: :mod:`~tuner.spec.sections` (each section's model), :mod:`~tuner.spec.model` (the
whole spec), :mod:`~tuner.spec.loader` (YAML with locations), :mod:`~tuner.spec.issues`
(problems as messages), :mod:`~tuner.spec.schema` (JSON Schema).
"""

from __future__ import annotations

from tuner.space import Categorical, Float, Int
from tuner.spec.issues import SpecError, SpecIssue
from tuner.spec.loader import (
    MAX_SPEC_BYTES,
    MAX_YAML_NODES,
    load_spec,
    load_spec_text,
    spec_from_mapping,
)
from tuner.spec.model import StudySpec
from tuner.spec.schema import spec_json_schema
from tuner.spec.sections import (
    COST_METRIC,
    MAX_INT,
    MULTI_OBJECTIVE_ENGINES,
    RESERVED_PREFIX,
    AshaPruner,
    BayesianStrategy,
    Budget,
    Constraint,
    Direction,
    GridStrategy,
    HyperbandPruner,
    MedianPruner,
    MetricDefinitionSpec,
    MlflowTracking,
    NoPruner,
    Objective,
    Pruner,
    RandomStrategy,
    ResourcesSpec,
    Storage,
    Strategy,
    Tracking,
    TrialConfig,
    WarmStart,
)
from tuner.units import Duration, parse_bytes, parse_duration

__all__ = [
    "COST_METRIC",
    "MAX_INT",
    "MAX_SPEC_BYTES",
    "MAX_YAML_NODES",
    "MULTI_OBJECTIVE_ENGINES",
    "RESERVED_PREFIX",
    "AshaPruner",
    "BayesianStrategy",
    "Budget",
    "Categorical",
    "Constraint",
    "Direction",
    "Duration",
    "Float",
    "GridStrategy",
    "HyperbandPruner",
    "Int",
    "MedianPruner",
    "MetricDefinitionSpec",
    "MlflowTracking",
    "NoPruner",
    "Objective",
    "Pruner",
    "RandomStrategy",
    "ResourcesSpec",
    "SpecError",
    "SpecIssue",
    "Storage",
    "Strategy",
    "StudySpec",
    "Tracking",
    "TrialConfig",
    "WarmStart",
    "load_spec",
    "load_spec_text",
    "parse_bytes",
    "parse_duration",
    "spec_from_mapping",
    "spec_json_schema",
]
