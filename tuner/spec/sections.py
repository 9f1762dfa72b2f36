"""The sections of a study spec: what each key means, its type, default and limits.

Each section is a frozen pydantic model with ``extra="forbid"``, so an unknown key or a value of
the wrong type is an error that names the field. :class:`tuner.spec.StudySpec` puts them
together and checks what spans sections.

One job, the sections: each model is short, and side by side they read as the spec's
reference (the documentation's is generated from them).
"""

from __future__ import annotations

import enum
import math
import os
import re
import shlex
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tuner.backend import (
    CommandEntry,
    FunctionEntry,
    MetricDefinition,
    Resources,
)
from tuner.functions import REFERENCE, resolve_function
from tuner.units import Duration, parse_bytes
from tuner.urls import storage_url_problem, tracking_uri_problem

RESERVED_PREFIX = "tuner."
"""Metric and attribute keys the framework writes; user metrics may not start with it."""


_FUNCTION_PATTERN = REFERENCE.pattern
_STORED_PATTERN = r"[\w.]+:[\w.<>]+"
"""What a study folder's spec may hold: a function defined in a notebook cell or a script may
be a lambda (``__main__:<lambda>``) or a closure (``train.<locals>.fit``), which reading the
study never imports."""


MAX_INT = 2**63 - 1
"""The largest integer a spec may hold (what storages and MLflow keep exactly)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Direction(enum.Enum):
    """Whether the objective metric should go up or down."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


ONE_OBJECTIVE = "one objective"
SEVERAL_OBJECTIVES = "several objectives"
UNION_TAGS = frozenset({ONE_OBJECTIVE, SEVERAL_OBJECTIVES})
"""Tags of unions told apart by shape: pydantic puts them in error locations; messages
leave them out (a spec has no such key)."""

COST_METRIC = "tuner.cost_usd"
"""What a trial cost on its backend, in USD: an objective where the backend knows prices."""


class Objective(_Section):
    """A metric the study optimises."""

    metric: str = Field(
        min_length=1,
        description=f"Name of the metric the trial reports (or `{COST_METRIC}`, what the "
        "trial cost, on a backend that knows prices).",
    )
    direction: Direction = Direction.MINIMIZE

    @field_validator("metric")
    @classmethod
    def _not_reserved(cls, metric: str) -> str:
        if metric.startswith(RESERVED_PREFIX) and metric != COST_METRIC:
            raise ValueError(
                f"metric names starting with `{RESERVED_PREFIX}` are reserved for tuner "
                f"(`{COST_METRIC}` excepted); rename the metric"
            )
        return metric


_CONSTRAINT = re.compile(
    r"\s*(?P<metric>[A-Za-z_][\w.:/-]*)\s*(?P<op><=|<|>=|>)\s*"
    r"(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)


class Constraint(_Section):
    """A bound a reported metric must keep for a trial to count, written ``memory_mb <= 4000``.

    Infeasible trials are recorded (and tagged in MLflow) but never reported as best; the
    bayesian engines that can (auto, tpe, gp, nsga2) learn to avoid them.
    """

    metric: str
    op: Literal["<=", "<", ">=", ">"]
    bound: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _CONSTRAINT.fullmatch(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a constraint; write `metric <= number` (or <, >=, >), "
                "e.g. `memory_mb <= 4000`"
            )
        return {**match.groupdict(), "bound": float(match["bound"])}

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"

    def violation(self, value: float | None) -> float:
        """How far ``value`` is beyond the bound: ``<= 0`` when it keeps it (optuna's sign).

        A missing or non-finite value violates the constraint.
        """
        if value is None or not math.isfinite(value):
            return 1.0
        excess = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if self.op in ("<", ">") and excess == 0:
            return sys.float_info.min  # a strict bound is not kept by the bound itself
        return excess


class WarmStart(_Section):
    """Earlier results the strategy learns from before its first proposal.

    Give ``study`` (an earlier tuner study) or ``mlflow_experiment`` (runs in MLflow, whether
    tuner wrote them or not). Their trials are mapped onto this study's space: parameters it
    lacks take ``defaults`` (or the parameter's own ``default``), and trials with values outside
    the space are dropped and counted. They are not run again and not in the budget.
    """

    study: str | None = Field(None, description="The name (or folder) of an earlier study.")
    storage: str | None = Field(
        None,
        description="Where that study is: an optuna storage URL or a studies folder (this "
        "spec's storage if unset).",
    )
    mlflow_experiment: str | None = Field(None, description="An MLflow experiment's name.")
    tracking_uri: str | None = Field(
        None, description="The MLflow tracking URI of that experiment (this spec's if unset)."
    )
    metrics: dict[str, str] = Field(
        default_factory=dict,
        description="The earlier name of an objective's metric, where it differs: "
        "{val_loss: loss}.",
    )
    defaults: dict[str, str | bool | int | float] = Field(
        default_factory=dict,
        description="Values for parameters the earlier trials do not have.",
    )
    max_trials: PositiveInt | None = Field(
        None, description="Use at most this many earlier trials (the best ones)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> WarmStart:
        if (self.study is None) == (self.mlflow_experiment is None):
            raise ValueError("give exactly one of `study: NAME` and `mlflow_experiment: NAME`")
        if self.study is None and self.storage is not None:
            raise ValueError("`storage` says where `study` is; give `study` too")
        if self.mlflow_experiment is None and self.tracking_uri is not None:
            raise ValueError("`tracking_uri` says where `mlflow_experiment` is; give it too")
        return self


class RandomStrategy(_Section):
    """Independent uniform (or log-uniform) samples."""

    type: Literal["random"] = "random"
    seed: int | None = None


class GridStrategy(_Section):
    """Every configuration once; the study ends when the grid is exhausted."""

    type: Literal["grid"] = "grid"
    seed: int | None = Field(None, description="With `shuffle`, the order's seed.")
    shuffle: bool = Field(False, description="Try the grid in a random order.")


MULTI_OBJECTIVE_ENGINES = ("auto", "tpe", "gp", "nsga2", "qmc")
"""The bayesian engines that optimise several objectives at once (qmc reads no results)."""


class BayesianStrategy(_Section):
    """Model-based search. ``engine`` defaults to ``auto``, which chooses an engine for each
    proposal: random start-up trials (none after a warm start of 3 or more trials), then the
    GP on spaces of floats (CMA-ES after 200 trials; TPE instead for a constrained study) or
    TPE on integer, categorical, conditional and multi-objective ones."""

    type: Literal["bayesian"] = "bayesian"
    engine: Literal["auto", "gp", "skopt", "cmaes", "qmc", "tpe", "nsga2"] | None = None
    seed: int | None = None
    n_startup_trials: PositiveInt | None = Field(
        None,
        description="Random trials before the model takes over, counting a warm start's "
        "trials (if unset, each engine's own: 10 for auto, gp, tpe and skopt, none after a "
        "warm start of 3 or more trials; 1 for cmaes; nsga2's population, 20).",
    )


Strategy: TypeAlias = Annotated[
    RandomStrategy | GridStrategy | BayesianStrategy, Field(discriminator="type")
]


_PRUNED_OBJECTIVE = (
    "The objective metric whose intermediate values are judged (the first one if unset)."
)


class NoPruner(_Section):
    """No early stopping: every trial runs to its end."""

    type: Literal["none"] = "none"


class MedianPruner(_Section):
    """Stops a trial whose intermediate objective is worse than the median of earlier trials
    at the same step (optuna's ``MedianPruner``)."""

    type: Literal["median"] = "median"
    objective: str | None = Field(None, description=_PRUNED_OBJECTIVE)
    n_startup_trials: int = Field(5, ge=0, description="Trials that are never stopped.")
    n_warmup_steps: int = Field(0, ge=0, description="Steps of each trial never judged.")


class AshaPruner(_Section):
    """Asynchronous successive halving (optuna's ``SuccessiveHalvingPruner``)."""

    type: Literal["asha"] = "asha"
    objective: str | None = Field(None, description=_PRUNED_OBJECTIVE)
    min_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)


class HyperbandPruner(_Section):
    """Hyperband over successive-halving brackets (optuna's ``HyperbandPruner``)."""

    type: Literal["hyperband"] = "hyperband"
    objective: str | None = Field(None, description=_PRUNED_OBJECTIVE)
    min_resource: int = Field(1, ge=1)
    max_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)


Pruner: TypeAlias = Annotated[
    NoPruner | MedianPruner | AshaPruner | HyperbandPruner, Field(discriminator="type")
]


class Budget(_Section):
    """When the study stops. Counts include the trials of earlier runs of the same study."""

    max_trials: PositiveInt | None = Field(
        None, le=MAX_INT, description="Finished trials (any state)."
    )
    max_concurrent: PositiveInt = Field(1, le=MAX_INT, description="Trials running at once.")
    max_time: Duration | None = Field(None, description="Wall time of one `tuner run`.")
    max_failures: PositiveInt = Field(
        10, le=MAX_INT, description="Failed trials before the study stops."
    )
    max_cost: PositiveFloat | None = Field(
        None,
        description="USD to spend on trials (finished, and running ones so far) before no new "
        "trial starts; needs a backend that knows prices (sagemaker).",
    )


class ResourcesSpec(_Section):
    """What one trial needs on its backend."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0, description="Fractions share a GPU between trials.")
    memory: Annotated[int, BeforeValidator(parse_bytes)] | None = Field(
        None, description="Memory to reserve, e.g. 2GB."
    )
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom resources, e.g. {TPU: 1} on Ray."
    )

    def to_resources(self) -> Resources:
        """The backend-facing record."""
        return Resources(
            cpus=self.cpus, gpus=self.gpus, memory=self.memory, custom=dict(self.custom)
        )


class MetricDefinitionSpec(_Section):
    """A metric read from a command's output, in SageMaker's ``MetricDefinitions`` format."""

    name: str = Field(min_length=1)
    regex: str = Field(description="A regular expression whose first group is the value.")

    @field_validator("regex")
    @classmethod
    def _one_group(cls, regex: str) -> str:
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ValueError(
                f"not a valid regular expression ({exc}); check the escaping"
            ) from None
        if compiled.groups < 1:
            raise ValueError(
                "the regex needs a capture group around the value, e.g. `loss=([0-9.eE+-]+)`"
            )
        return regex


class TrialConfig(_Section):
    """What a trial runs: a Python ``function`` or a ``command``, and how.

    A function is ``module:function(params) -> float | dict``. A command (no shell) receives
    the hyperparameters as ``--name value`` arguments and in the JSON file whose path is in
    ``TUNER_PARAMS_FILE``; ``metric_definitions`` read its metrics from its output.
    """

    path: list[str] = Field(
        default_factory=list,
        description="Extra folders to import the function from, relative to the spec's folder "
        "(the working directory and the spec's folder always are).",
    )
    function: (
        Annotated[
            str | Callable[..., Any],
            WithJsonSchema({"type": "string", "pattern": r"^[\w.]+:[\w.]+$"}),
        ]
        | None
    ) = None
    command: list[str] | None = Field(
        None, min_length=1, description="e.g. [python, train.py]; run without a shell."
    )
    metric_definitions: list[MetricDefinitionSpec] = Field(default_factory=list)
    workdir: str | None = Field(
        None, description="The command's working directory (default: the spec's folder)."
    )
    resources: ResourcesSpec = ResourcesSpec()
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    timeout: Duration | None = Field(None, description="Longest a trial may run.")
    max_retries: int = Field(
        2, ge=0, description="Retries after infrastructure failures (lost worker or node)."
    )
    retry_on_error: bool = Field(False, description="Retry errors in the trial code too.")

    _entry: FunctionEntry | CommandEntry | None = PrivateAttr(None)

    @field_validator("path")
    @classmethod
    def _from_spec_folder(cls, path: list[str], info: ValidationInfo) -> list[str]:
        # As `workdir`: a relative folder is the spec file's, wherever it is read from.
        spec_dir = (info.context or {}).get("spec_dir")
        if not spec_dir:
            return path
        return [os.path.normpath(os.path.join(spec_dir, p)) for p in path]

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("function")
    @classmethod
    def _importable(cls, function: Any, info: ValidationInfo) -> Any:
        if function is None or callable(function):
            return function
        importing = (info.context or {}).get("import_trial", True)
        pattern = _FUNCTION_PATTERN if importing else _STORED_PATTERN
        if not re.fullmatch(pattern, function):
            raise ValueError(
                f"{function!r} is not a function reference; write it as `package.module:function`"
            )
        # A spec read from YAML checks the import as a separate step (see `load_spec_text`),
        # so a missing module does not hide the spec's other problems, and reading a study
        # (`tuner status`) never runs its code. A spec built in Python checks it right here.
        if importing:
            resolve_function(function, _search_path(info, info.data.get("path", [])))
        return function

    @model_validator(mode="after")
    def _resolve_entry(self, info: ValidationInfo) -> TrialConfig:
        if (self.function is None) == (self.command is None):
            raise ValueError("give exactly one of `function: module:function` and `command: [...]`")
        if self.function is not None:
            if self.metric_definitions:
                raise ValueError(
                    "`metric_definitions` read a command's output; a function returns its "
                    "metrics (or reports them with tuner.report)"
                )
            search_path = _search_path(info, self.path)
            if callable(self.function):
                self._entry = resolve_function(self.function, search_path)
            else:
                self._entry = FunctionEntry(self.function, search_path)
        else:
            assert self.command is not None
            spec_dir = (info.context or {}).get("spec_dir") or os.getcwd()
            workdir = os.path.join(spec_dir, self.workdir) if self.workdir else spec_dir
            self._entry = CommandEntry(
                argv=tuple(self.command),
                metric_definitions=tuple(
                    MetricDefinition(d.name, d.regex) for d in self.metric_definitions
                ),
                workdir=os.path.abspath(workdir),
            )
        return self

    @field_serializer("function")
    def _function_as_reference(self, function: Any) -> str | None:
        if function is None:
            return None
        entry = self.entry
        return entry.ref if isinstance(entry, FunctionEntry) else str(function)

    @property
    def entry(self) -> FunctionEntry | CommandEntry:
        """The resolved function reference or command the backends run."""
        assert self._entry is not None
        return self._entry


class MlflowTracking(_Section):
    """MLflow tracking: a parent run per study, a nested child run per trial."""

    experiment: str | None = Field(None, description="Experiment name; the study name if unset.")
    tracking_uri: str | None = Field(
        None, description="Any MLflow tracking URI; MLflow's default (env or ./mlflow.db) if unset."
    )

    @field_validator("tracking_uri")
    @classmethod
    def _supported_uri(cls, uri: str | None) -> str | None:
        problem = None if uri is None else tracking_uri_problem(uri)
        if problem is not None:
            raise ValueError(problem)
        return uri


class Tracking(_Section):
    """Where results are mirrored. ``mlflow: null`` turns MLflow off."""

    mlflow: MlflowTracking | None = MlflowTracking()


class Storage(_Section):
    """Where the study's state lives."""

    dir: str = Field("tuner-studies", description="Folder that holds one folder per study.")
    url: str | None = Field(
        None, description="An optuna storage URL; a journal file in the study's folder if unset."
    )

    @field_validator("url")
    @classmethod
    def _supported_url(cls, url: str | None) -> str | None:
        problem = None if url is None else storage_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url


def _search_path(info: ValidationInfo, extra: list[str]) -> tuple[str, ...]:
    spec_dir = (info.context or {}).get("spec_dir")
    return tuple(dict.fromkeys(p for p in (os.getcwd(), spec_dir, *extra) if p))


_CUSTOM_KINDS: set[str] = set()
"""Error kinds made by :func:`_error`: their messages are whole, with no input to quote."""


def _error(loc: tuple[str | int, ...], kind: str, message: str) -> InitErrorDetails:
    _CUSTOM_KINDS.add(kind)
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)
