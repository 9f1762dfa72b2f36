"""The study spec: pydantic models, the YAML loader, and errors that point into the file.

The YAML form and the Python form build the same :class:`StudySpec`::

    spec = StudySpec(
        name="digits-svm",
        objective={"metric": "val_accuracy", "direction": "maximize"},
        space={"C": Float(1e-3, 1e3, log=True), "kernel": Categorical(["rbf", "poly"])},
        strategy={"type": "bayesian", "engine": "tpe", "seed": 42},
        budget={"max_trials": 30, "max_concurrent": 2},
        trial={"function": "examples.quickstart.train:train_svm"},
    )
"""

from __future__ import annotations

import difflib
import enum
import importlib
import importlib.util
import inspect
import math
import os
import re
import shlex
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tuner.backend import (
    BackendConfig,
    CommandEntry,
    FunctionEntry,
    MetricDefinition,
    Resources,
    UnknownBackendError,
    available_backends,
    backend_class,
)
from tuner.secrets import MASK, is_secret_name, redact_spec
from tuner.space import Categorical, Float, Param, Space, SpaceError

RESERVED_PREFIX = "tuner."
"""Metric and attribute keys the framework writes; user metrics may not start with it."""

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_FUNCTION_PATTERN = r"[\w.]+:[\w.]+"

MAX_SPEC_BYTES = 1_000_000
"""The largest spec file read: a spec describes a study; data belongs in files it names."""

MAX_INT = 2**63 - 1
"""The largest integer a spec may hold (what storages and MLflow keep exactly)."""

MAX_YAML_NODES = 100_000
"""The most values a spec may expand to (YAML aliases can multiply a small file)."""


# --- durations -------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s|ms)", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds or a string such as ``90s``, ``10m``, ``1h30m``.

    Raises:
        ValueError: for anything else, or a duration that is not positive.
    """
    hint = "use a number of seconds or a string such as 90s, 10m, 1h30m or 2d"
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {hint}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(p.group(0) for p in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration; {hint}") from None
        else:
            seconds = sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2).lower()] for p in parts)
    else:
        raise ValueError(f"{value!r} is not a duration; {hint}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be positive and finite, but got {value!r}; {hint}")
    return seconds


Duration: TypeAlias = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?\s*(d|h|m|s|ms)\s*)+$"},
            ],
            "description": "Seconds, or a string such as 90s, 10m, 1h30m.",
        }
    ),
]


# --- sections --------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Direction(enum.Enum):
    """Whether the objective metric should go up or down."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class Objective(_Section):
    """The metric the study optimises."""

    metric: str = Field(min_length=1, description="Name of the metric the trial reports.")
    direction: Direction = Direction.MINIMIZE

    @field_validator("metric")
    @classmethod
    def _not_reserved(cls, metric: str) -> str:
        if metric.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"metric names starting with `{RESERVED_PREFIX}` are reserved for tuner; "
                "rename the metric"
            )
        return metric


class RandomStrategy(_Section):
    """Independent uniform (or log-uniform) samples."""

    type: Literal["random"] = "random"
    seed: int | None = None


class GridStrategy(_Section):
    """Every configuration once; the study ends when the grid is exhausted."""

    type: Literal["grid"] = "grid"
    seed: int | None = Field(None, description="With `shuffle`, the order's seed.")
    shuffle: bool = Field(False, description="Try the grid in a random order.")


class BayesianStrategy(_Section):
    """Model-based search. ``engine`` defaults to ``gp`` when torch is installed, else ``skopt``."""

    type: Literal["bayesian"] = "bayesian"
    engine: Literal["gp", "skopt", "tpe"] | None = None
    seed: int | None = None
    n_startup_trials: PositiveInt | None = Field(
        None, description="Random trials before the model takes over (engine default if unset)."
    )


Strategy: TypeAlias = Annotated[
    RandomStrategy | GridStrategy | BayesianStrategy, Field(discriminator="type")
]


class NoPruner(_Section):
    """No early stopping: every trial runs to its end."""

    type: Literal["none"] = "none"


class MedianPruner(_Section):
    """Stops a trial whose intermediate objective is worse than the median of earlier trials
    at the same step (optuna's ``MedianPruner``)."""

    type: Literal["median"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="Trials that are never stopped.")
    n_warmup_steps: int = Field(0, ge=0, description="Steps of each trial never judged.")


class AshaPruner(_Section):
    """Asynchronous successive halving (optuna's ``SuccessiveHalvingPruner``)."""

    type: Literal["asha"] = "asha"
    min_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)


class HyperbandPruner(_Section):
    """Hyperband over successive-halving brackets (optuna's ``HyperbandPruner``)."""

    type: Literal["hyperband"] = "hyperband"
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


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
}


def parse_bytes(value: Any) -> int:
    """Bytes in ``value``: a number, or a string such as ``512MB``, ``2GiB`` or ``4G``.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
            if size > 0:
                return size
    raise ValueError(f"{value!r} is not a size; write a number of bytes or e.g. 512MB, 2GiB")


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
        description="Extra folders to import the function from (the working directory and "
        "the spec's folder always are).",
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

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("function")
    @classmethod
    def _importable(cls, function: Any, info: ValidationInfo) -> Any:
        if function is None or callable(function):
            return function
        if not re.fullmatch(_FUNCTION_PATTERN, function):
            raise ValueError(
                f"{function!r} is not a function reference; write it as `package.module:function`"
            )
        # A spec read from YAML checks the import as a separate step (see `load_spec_text`),
        # so a missing module does not hide the spec's other problems, and reading a study
        # (`tuner status`) never runs its code. A spec built in Python checks it right here.
        if (info.context or {}).get("import_trial", True):
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


# --- storage and tracking URLs ---------------------------------------------------------------

# optuna's `get_storage` opens a URL as an SQLAlchemy database (RDBStorage); its Redis storage
# is gone since optuna 3.1. Dialect -> the pip package of each DBAPI driver it may use.
_RDB_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
_DRIVERS: dict[str, tuple[str, str]] = {
    "pysqlite": ("sqlite3", "a Python built with sqlite3"),
    "psycopg": ("psycopg", "psycopg[binary]"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "psycopg2cffi": ("psycopg2cffi", "psycopg2cffi"),
    "pg8000": ("pg8000", "pg8000"),
    "pymysql": ("pymysql", "PyMySQL"),
    "mysqldb": ("MySQLdb", "mysqlclient"),
    "mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    "mariadbconnector": ("mariadb", "mariadb"),
    "cymysql": ("cymysql", "cymysql"),
    "oracledb": ("oracledb", "oracledb"),
    "cx_oracle": ("cx_Oracle", "cx-Oracle"),
    "pyodbc": ("pyodbc", "pyodbc"),
    "pymssql": ("pymssql", "pymssql"),
}
_SYNC_DRIVER_HINT = {
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "mssql": "mssql+pyodbc",
    "oracle": "oracle+oracledb",
    "sqlite": "sqlite",
}


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package of a dotted name
        return False


def database_url_problem(url: str, what: str, dialects: tuple[str, ...]) -> str | None:
    """What is wrong with an SQLAlchemy database URL, or ``None``; imports no DBAPI driver.

    Args:
        url: the URL, e.g. ``postgresql+psycopg2://user:pass@host/db``.
        what: what the URL is for, as the message calls it ("optuna storage URL").
        dialects: the database dialects that may be used.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    accepted = ", ".join(f"{d}://..." for d in dialects)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return f"not a valid {what}; write e.g. `sqlite:///studies.db` or `{accepted}`"
    backend = parsed.get_backend_name()
    if backend not in dialects:
        return f"`{backend}` is not a database a {what} can use; use one of: {accepted}"
    try:
        dialect = parsed.get_dialect()
    except (NoSuchModuleError, ArgumentError, ImportError):
        return (
            f"SQLAlchemy has no `{parsed.drivername}` driver; write `{backend}://...` or e.g. "
            f"`{_SYNC_DRIVER_HINT[backend]}://...`"
        )
    if getattr(dialect, "is_async", False):
        return (
            f"`{parsed.drivername}` is an asyncio driver, which optuna and MLflow cannot use; "
            f"use e.g. `{_SYNC_DRIVER_HINT[backend]}://...`"
        )
    driver = str(getattr(dialect, "driver", ""))
    module, package = _DRIVERS.get(driver, ("", ""))
    if module and not _module_available(module):
        alternative = ""
        if backend == "postgresql" and driver == "psycopg" and _module_available("psycopg2"):
            alternative = "; psycopg2 is installed: write `postgresql+psycopg2://...` to use it"
        return (
            f"the `{backend}` database driver `{driver}` (Python module `{module}`) is not "
            f"installed; install it with `pip install '{package}'`{alternative}"
        )
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            return (
                f"the folder `{folder}` of the SQLite database does not exist; create it or "
                "fix the path (`sqlite:///relative.db`, `sqlite:////absolute/path.db`)"
            )
    return None


def storage_url_problem(url: str) -> str | None:
    """What is wrong with an optuna storage URL (``storage.url``), or ``None``."""
    return database_url_problem(url, "optuna storage URL", _RDB_DIALECTS)


_MLFLOW_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
_MLFLOW_NAMED_URIS = ("databricks", "databricks-uc", "uc")
_MLFLOW_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc")
_SAGEMAKER_ARN = re.compile(
    r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/[A-Za-z0-9][A-Za-z0-9-]*"
)


def tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with an MLflow tracking URI, or ``None``; never imports MLflow.

    Accepted: what MLflow 3's tracking store registry serves (local paths and ``file:``,
    ``sqlite``/``postgresql``/``mysql``/``mssql`` databases, ``http(s)://``, ``databricks``,
    ``databricks://profile``, ``databricks-uc``, ``uc:``), SageMaker MLflow tracking-server
    ARNs, and every scheme registered in the ``mlflow.tracking_store`` entry-point group.
    """
    plugins = sorted(ep.name for ep in metadata.entry_points(group="mlflow.tracking_store"))
    accepted = (
        "a folder or `file:` URI, `sqlite:///mlflow.db`, `postgresql://...`, `mysql://...`, "
        "`mssql://...`, `http(s)://host:port`, `databricks`, `databricks://PROFILE`, "
        "`databricks-uc`, `uc:...`, "
        "`arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME`"
        + "".join(f", `{name}:...`" for name in plugins)
    )
    text = uri.strip()
    if not text:
        return "the tracking URI is empty; remove `tracking_uri` to use MLflow's default"
    if text in _MLFLOW_NAMED_URIS:
        return None
    if text.startswith("arn:"):
        if _SAGEMAKER_ARN.fullmatch(text):
            return None
        return (
            "not a SageMaker MLflow tracking server ARN; write "
            "`arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME`"
        )
    try:
        parsed = urlparse(text)
    except ValueError as exc:
        return f"not a URI ({exc}); use one of: {accepted}"
    scheme = parsed.scheme.lower()
    if scheme == "" or len(scheme) == 1:  # a path (or a Windows drive letter)
        return None
    database = scheme.split("+", 1)[0]
    if database in _MLFLOW_DATABASES:
        return database_url_problem(text, "MLflow tracking database URI", _MLFLOW_DATABASES)
    if scheme in ("http", "https") and not parsed.netloc:
        return f"`{text}` names no server; write e.g. `{scheme}://mlflow.example.com:5000`"
    if scheme in _MLFLOW_SCHEMES or scheme in plugins:
        return None
    return f"MLflow cannot track to `{scheme}:` URIs; use one of: {accepted}"


def _default_backend() -> dict[str, Any]:
    return {"type": "ray"}


class StudySpec(_Section):
    """A whole study: what to search, how, for how long, where to run and where to record."""

    name: str = Field(pattern=_NAME_PATTERN, description="Letters, digits, '.', '_', '-'.")
    objective: Objective
    space: dict[str, Param]
    strategy: Strategy = Field(default_factory=lambda: BayesianStrategy())
    budget: Budget = Budget()
    pruner: Pruner = Field(
        default_factory=lambda: NoPruner(),
        description="Early stopping on the objective's intermediate values.",
    )
    trial: TrialConfig
    backend: Annotated[SerializeAsAny[BackendConfig], WithJsonSchema({"type": "object"})] = Field(
        default_factory=lambda: _resolve_backend(_default_backend())
    )
    tracking: Tracking = Tracking()
    storage: Storage = Storage()

    _space: Space | None = PrivateAttr(None)

    @field_validator("space", mode="before")
    @classmethod
    def _params_from_python(cls, value: Any) -> Any:
        if isinstance(value, Space):
            return dict(value)
        return value

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_by_name(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_backend(value, info.context)

    @model_validator(mode="after")
    def _check_whole(self) -> StudySpec:
        errors: list[InitErrorDetails] = []
        try:
            self._space = Space(self.space)
        except SpaceError as exc:
            loc: tuple[str, ...] = ("space", exc.param, exc.field) if exc.param else ("space",)
            errors.append(_error(loc, "space", str(exc)))
        if self.trial.function is not None and not self.backend.runs_functions:
            errors.append(
                _error(
                    ("trial", "function"),
                    "backend_needs_command",
                    f"the {self.backend.type} backend runs programs, not Python functions; "
                    "give `command: [python, train.py]` with `metric_definitions` instead",
                )
            )
        if self.budget.max_cost is not None:
            problem = self.backend.cost_problem()
            if problem is not None:
                errors.append(_error(("budget", "max_cost"), "max_cost_unknown", problem))
        if self.trial.command is not None:
            names = [d.name for d in self.trial.metric_definitions]
            if self.objective.metric not in names:
                errors.append(
                    _error(
                        ("trial", "metric_definitions"),
                        "objective_undefined",
                        f"the objective `{self.objective.metric}` has no metric definition; "
                        f"add `{{name: {self.objective.metric}, regex: ...}}` so it can be "
                        "read from the command's output",
                    )
                )
        if isinstance(self.strategy, GridStrategy):
            for name, param in self.space.items():
                if isinstance(param, Float) and param.step is None:
                    errors.append(
                        _error(
                            ("space", name, "step"),
                            "grid_needs_step",
                            f"the grid strategy needs a `step` for float parameter `{name}`; "
                            "add one, or use the random or bayesian strategy",
                        )
                    )
        elif self.budget.max_trials is None and self.budget.max_time is None:
            errors.append(
                _error(
                    ("budget",),
                    "budget_unbounded",
                    "the study would never stop: set `budget.max_trials` or `budget.max_time` "
                    "(only the grid strategy ends by itself)",
                )
            )
        if errors:
            raise ValidationError.from_exception_data("StudySpec", errors)
        return self

    @property
    def search_space(self) -> Space:
        """The validated :class:`Space`."""
        assert self._space is not None
        return self._space

    def to_yaml(self, *, redact: bool = False) -> str:
        """The spec as YAML, with the folders its trial function is imported from.

        A Python-built trial function is written as its ``module:function`` reference.

        Args:
            redact: mask secret-named ``env``/``environment`` values and URL passwords (see
                :mod:`tuner.secrets`), for anything shown or logged. The study folder keeps
                the unredacted form, which ``tuner resume`` runs with.
        """
        data = self.model_dump(mode="json", exclude_none=True)
        entry = self.trial.entry
        if isinstance(entry, FunctionEntry):
            data["trial"]["path"] = list(entry.search_path)
        else:
            data["trial"]["workdir"] = entry.workdir
        if redact:
            data = redact_spec(data)
        return yaml.safe_dump(data, sort_keys=False)


def _resolve_backend(value: Any, context: Mapping[str, Any] | None = None) -> Any:
    if isinstance(value, BackendConfig):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"`backend` must be a mapping such as `{{type: ray}}`, got {value!r}")
    name = value.get("type")
    if not isinstance(name, str):
        raise ValueError(
            "`backend.type` is missing; available backends: "
            + ", ".join(sorted(available_backends()))
        )
    try:
        config_model = backend_class(name).Config
    except UnknownBackendError as exc:
        raise ValueError(str(exc)) from None
    return config_model.model_validate(dict(value), context=context)


# --- trial functions -------------------------------------------------------------------------


def _search_path(info: ValidationInfo, extra: list[str]) -> tuple[str, ...]:
    spec_dir = (info.context or {}).get("spec_dir")
    return tuple(dict.fromkeys(p for p in (os.getcwd(), spec_dir, *extra) if p))


def resolve_function(
    function: str | Callable[..., Any], search_path: tuple[str, ...]
) -> FunctionEntry:
    """Checks that a trial function can be imported and says where it comes from.

    Raises:
        ValueError: with what to fix, if the reference is malformed or cannot be imported.
    """
    if callable(function):
        module = getattr(function, "__module__", None) or "__main__"
        qualname = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        return FunctionEntry(f"{module}:{qualname}", search_path, function)
    if not isinstance(function, str) or not re.fullmatch(r"[\w.]+:[\w.]+", function):
        raise ValueError(
            f"{function!r} is not a function reference; write it as `package.module:function`"
        )
    module_name, _, attr = function.partition(":")
    with _on_sys_path(search_path):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(
                f"cannot import module `{module_name}` ({exc}); it is looked up from "
                f"{', '.join(search_path)}: run tuner from the folder that holds the package, "
                "or fix the reference"
            ) from None
        except (Exception, SystemExit) as exc:  # the module's own top-level code failed
            raise ValueError(
                f"importing `{module_name}` raised {type(exc).__name__}: {exc}; fix the module "
                "(it runs when the study starts)"
            ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            members = [n for n, _ in inspect.getmembers(module, callable) if not n.startswith("_")]
            close = _closest(part, members)
            hint = f" (did you mean `{module_name}:{close}`?)" if close else ""
            raise ValueError(f"module `{module_name}` has no function `{attr}`{hint}")
    if not callable(target):
        raise ValueError(f"`{function}` is not callable")
    return FunctionEntry(function, search_path)


@contextmanager
def _on_sys_path(paths: tuple[str, ...]) -> Iterator[None]:
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


# --- loading YAML with locations -------------------------------------------------------------


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where it is, what is wrong, and how to fix it."""

    path: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        # One line per issue, whatever the message quotes (a traceback, a multi-line value).
        message = " ".join(self.message.split())
        return f"{where}: {self.field or '(spec)'}: {message}"


class SpecError(ValueError):
    """A spec that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


_Location: TypeAlias = tuple[int, int]
_Path: TypeAlias = tuple[Any, ...]


class _LocatingLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys and remembers where every node is."""


@dataclass
class _Nodes:
    """Where every key and value of a YAML document is, and what is wrong with its shape."""

    keys: dict[_Path, _Location]
    values: dict[_Path, _Location]
    problems: list[tuple[_Path, _Location, str]]
    count: int = 0

    def where(self, path: _Path) -> tuple[int | None, int | None]:
        """The line and column of the value at ``path`` (or of its nearest enclosing one)."""
        found = self.values.get(path) or self.keys.get(path)
        probe = path
        while found is None and probe:
            probe = probe[:-1]
            found = self.values.get(probe)
        return found if found else (None, None)

    def key_where(self, path: _Path) -> tuple[int | None, int | None]:
        """The line and column of the key at ``path`` (for an unknown key)."""
        found = self.keys.get(path)
        return found if found else self.where(path)

    def walk(self, node: yaml.Node, path: _Path, ancestors: frozenset[int]) -> bool:
        """Records ``node`` and its children; ``False`` once the document is too big to read."""
        self.count += 1
        where = (node.start_mark.line + 1, node.start_mark.column + 1)
        if self.count > MAX_YAML_NODES:
            self.problems.append(
                (
                    path,
                    where,
                    f"the spec expands to more than {MAX_YAML_NODES:,} values (an alias counts "
                    "each time it is used); data belongs in files the trial reads, not in the "
                    "spec",
                )
            )
            return False
        if id(node) in ancestors:
            self.problems.append((path, where, "this alias refers to itself; remove the loop"))
            return False
        self.values.setdefault(path, where)
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
                child = (*path, key)
                key_where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in seen:
                    self.problems.append(
                        (child, key_where, f"`{key}` is given twice; keep one of them")
                    )
                seen.add(key)
                self.keys[child] = key_where
                if not self.walk(value_node, child, inner):
                    return False
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                if not self.walk(item, (*path, index), inner):
                    return False
        return True


def load_spec(path: str | os.PathLike[str], *, import_trial: bool = True) -> StudySpec:
    """Reads and validates a YAML study spec.

    Args:
        path: the spec file (UTF-8, at most ``MAX_SPEC_BYTES``).
        import_trial: whether to check that ``trial.function`` imports. Commands that only read
            a study (``tuner status``) pass ``False``, so they never run the study's code.

    Raises:
        SpecError: naming file, line, column and field of every problem, with how to fix it.
    """
    spec_path = Path(path)
    source = str(spec_path)
    try:
        with open(spec_path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(
            [SpecIssue(source, None, None, "", f"cannot read the spec ({reason}); check the path")]
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError([_too_big(source, max(size, len(raw)))])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line_start = raw.rfind(b"\n", 0, offset) + 1
        raise SpecError(
            [
                SpecIssue(
                    source,
                    raw.count(b"\n", 0, offset) + 1,
                    offset - line_start + 1,
                    "",
                    f"not UTF-8 text (byte 0x{raw[offset]:02x} at offset {offset}); save the "
                    "file as UTF-8",
                )
            ]
        ) from None
    spec_dir = str(spec_path.resolve().parent)
    return load_spec_text(text, source, spec_dir=spec_dir, import_trial=import_trial)


def _too_big(source: str, size: int) -> SpecIssue:
    return SpecIssue(
        source,
        None,
        None,
        "",
        f"the spec is {size:,} bytes, more than the {MAX_SPEC_BYTES:,} a spec may have; data "
        "belongs in files the trial reads, not in the spec",
    )


def load_spec_text(
    text: str,
    source: str = "<spec>",
    spec_dir: str | None = None,
    *,
    import_trial: bool = True,
) -> StudySpec:
    """Validates a study spec given as YAML text; see :func:`load_spec`.

    Every problem is reported at once: YAML structure, each field, the checks across sections
    and (with ``import_trial``) whether the trial function imports.
    """
    size = len(text) if len(text) * 4 <= MAX_SPEC_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([_too_big(source, size)])
    node, data = _parse_yaml(text, source)
    if node is None or data is None:
        raise SpecError([SpecIssue(source, 1, 1, "", "the spec is empty; see `tuner schema`")])
    nodes = _Nodes({}, {}, [])
    complete = nodes.walk(node, (), frozenset())
    issues = [SpecIssue(source, *where, _dotted(p), msg) for p, where, msg in nodes.problems]
    if not complete:
        raise SpecError(issues)
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    source,
                    *nodes.values[()],
                    "",
                    f"the spec must be a mapping of sections (`name:`, `objective:`, `space:`, "
                    f"`trial:` ...), not {_kind(data)}; see `tuner schema`",
                )
            ]
        )

    flagged = _check_numbers(data, ())
    for loc, message in flagged:
        issues.append(SpecIssue(source, *nodes.where(loc), _dotted(loc), message))
        _replace(data, loc, None)  # reported here; the model would only report it again
    if "name" not in data and source != "<spec>":
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "-", Path(source).stem)[:63] or "study"
    spec: StudySpec | None = None
    try:
        spec = StudySpec.model_validate(data, context={"spec_dir": spec_dir, "import_trial": False})
    except ValidationError as exc:
        for issue_loc, issue in _issues_from(exc, data, nodes, source):
            if not any(issue_loc[: len(loc)] == loc for loc, _ in flagged):
                issues.append(issue)
    if import_trial:
        issues.extend(_import_issues(data, spec, spec_dir, issues, nodes, source))
    if issues:
        issues.sort(key=lambda i: (i.line is None, i.line or 0, i.column or 0))
        raise SpecError(issues)
    assert spec is not None
    return spec


def _parse_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    loader: _LocatingLoader | None = None
    try:
        loader = _LocatingLoader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(
            [SpecIssue(source, line, col, "", f"invalid YAML: {problem}; fix the syntax here")]
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecError(
            [
                SpecIssue(
                    source,
                    line,
                    col,
                    "",
                    f"invalid YAML: the character {exc.character!r} is not allowed in YAML; "
                    "remove it (or quote and escape it)",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(source, None, None, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise SpecError(
            [SpecIssue(source, None, None, "", "the spec is nested too deeply; flatten it")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, data


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _check_numbers(node: Any, path: _Path) -> list[tuple[_Path, str]]:
    """Numbers no engine can use: beyond 64 bits, NaN or infinite, or ranges that overflow."""
    found: list[tuple[_Path, str]] = []
    if isinstance(node, bool):
        return found
    if isinstance(node, int) and abs(node) > MAX_INT:
        found.append(
            (
                path,
                f"{_shown(node, path)} is too large; numbers in a spec must lie within "
                f"±{MAX_INT} (64 bits)",
            )
        )
    elif isinstance(node, float) and not math.isfinite(node):
        shown = (
            MASK
            if _is_secret_path(path)
            else {"nan": ".nan", "inf": ".inf"}.get(str(node), "-.inf")
        )
        found.append((path, f"`{shown}` is not a finite number; write a finite number"))
    elif isinstance(node, dict):
        for key, value in node.items():
            found.extend(_check_numbers(value, (*path, key)))
        if len(path) == 2 and path[0] == "space" and not found:
            found.extend(_check_range(node, path))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(_check_numbers(item, (*path, index)))
    return found


def _as_number(value: Any) -> float | None:
    """``value`` as pydantic will read a bound (YAML reads ``1e3`` as a string), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if abs(value) <= 1e308 else math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check_range(param: dict[Any, Any], path: _Path) -> list[tuple[_Path, str]]:
    """A float or int range no engine can sample, with its values as YAML spells them."""
    found: list[tuple[_Path, str]] = []
    bounds = {key: _as_number(param.get(key)) for key in ("low", "high", "step")}
    for key in ("low", "high", "step"):
        number = bounds[key]
        if number is not None and not math.isfinite(number):
            found.append(((*path, key), f"{_shown(param[key], ())} is not a finite number"))
        elif number is not None and param.get("type") == "int" and abs(number) > MAX_INT:
            found.append(
                ((*path, key), f"{_shown(param[key], ())} is too large; use at most {MAX_INT}")
            )
    low, high, step = bounds["low"], bounds["high"], bounds["step"]
    if found or low is None or high is None or not low < high:
        return found
    span = high - low
    if not math.isfinite(span):
        return [(path, f"the range [{low:g}, {high:g}] is too wide to sample; narrow it")]
    if step is not None and step > 0 and span / step > 1e15:
        return [
            (
                (*path, "step"),
                f"`step: {step:g}` splits [{low:g}, {high:g}] into more than 10^15 values; use "
                "a larger step, or drop `step` for a continuous range",
            )
        ]
    return []


def _replace(data: Any, path: _Path, value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _import_issues(
    data: dict[str, Any],
    spec: StudySpec | None,
    spec_dir: str | None,
    issues: list[SpecIssue],
    nodes: _Nodes,
    source: str,
) -> list[SpecIssue]:
    """The trial function's import problem, checked apart so it hides nothing else."""
    trial = data.get("trial")
    function = trial.get("function") if isinstance(trial, dict) else None
    if not isinstance(function, str) or not re.fullmatch(_FUNCTION_PATTERN, function):
        return []  # a malformed reference is already a field error
    if any(i.field == "trial.function" for i in issues):
        return []  # e.g. a backend that runs only commands: importing would add nothing
    if spec is not None and isinstance(spec.trial.entry, FunctionEntry):
        search_path = spec.trial.entry.search_path
    else:
        assert isinstance(trial, dict)
        extra = trial.get("path")
        folders = [p for p in extra if isinstance(p, str)] if isinstance(extra, list) else []
        search_path = tuple(dict.fromkeys(p for p in (os.getcwd(), spec_dir, *folders) if p))
    try:
        resolve_function(function, search_path)
    except ValueError as exc:
        loc = ("trial", "function")
        return [SpecIssue(source, *nodes.where(loc), _dotted(loc), _clip(str(exc)))]
    return []


def _issues_from(
    exc: ValidationError, data: Any, nodes: _Nodes, source: str
) -> list[tuple[_Path, SpecIssue]]:
    issues = []
    for error in exc.errors(include_url=False):
        loc = _data_path(error["loc"], data)
        if error["type"] == "extra_forbidden":
            line, col = nodes.key_where(loc)
        else:
            line, col = nodes.where(loc)
        message = _clip(_explain(error, loc, data))
        issues.append((loc, SpecIssue(source, line, col, _dotted(loc), message)))
    return issues


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drops the parts of a pydantic location that are not in the data (union tags)."""
    path: list[Any] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_mapping or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, Mapping) and node.get("type") == part:
            continue  # the discriminator's tag
        else:
            path.append(part)
            node = None
    return tuple(path)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _resolve_model(annotation: Any, node: Any) -> Any:
    """Narrows a field's annotation to the model (or ``dict`` type) that ``node`` is read as."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if _is_model(a)]
        kind = node.get("type") if isinstance(node, Mapping) else None
        for model in models:
            type_field = model.model_fields.get("type")
            if type_field is not None and type_field.default == kind:
                return model
        return models[0] if len(models) == 1 else None
    if annotation is BackendConfig and isinstance(node, Mapping):
        try:
            return backend_class(str(node.get("type"))).Config
        except Exception:
            return None
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys_at(path: tuple[Any, ...], data: Any) -> list[str]:
    """The keys a mapping at ``path`` may hold, or ``[]`` if that is not known."""
    target: Any = StudySpec
    node = data
    for key in path:
        target = _resolve_model(target, node)
        if _is_model(target):
            field = target.model_fields.get(key)
            if field is None:
                return []
            target = field.annotation
        elif typing.get_origin(target) is dict:
            target = typing.get_args(target)[1]
        else:
            return []
        node = node.get(key) if isinstance(node, Mapping) else None
    target = _resolve_model(target, node)
    return list(target.model_fields) if _is_model(target) else []


def _closest(word: str, options: list[str]) -> str | None:
    """The likeliest intended option: a transposition first, then the nearest spelling."""
    for option in options:
        if sorted(option) == sorted(word):
            return option
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return close[0] if close else None


_CUSTOM_KINDS: set[str] = set()
"""Error kinds made by :func:`_error`: their messages are whole, with no input to quote."""

_MAX_MESSAGE = 600


def _error(loc: tuple[str, ...], kind: str, message: str) -> InitErrorDetails:
    _CUSTOM_KINDS.add(kind)
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)


def _is_secret_path(loc: _Path) -> bool:
    return any(is_secret_name(part) for part in loc if isinstance(part, str))


def _shown(value: Any, loc: _Path) -> str:
    """``value`` as a message quotes it: YAML spelling, clipped, and never a secret."""
    if _is_secret_path(loc):
        return MASK
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:45]}...{text[-10:]}"


def _clip(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[: _MAX_MESSAGE - 100]} ... {message[-90:]}"


def _explain(error: Any, loc: tuple[Any, ...], data: Any) -> str:
    kind = error["type"]
    field = str(loc[-1]) if loc else "spec"
    message = str(error["msg"])
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = [k for k in _keys_at(loc[:-1], data) if k != "type"]
        close = _closest(field, allowed)
        hint = f"did you mean `{close}`?" if close else "remove it"
        known = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown key `{field}`; {hint}{known}"
    if kind == "missing":
        return f"`{field}` is required here; add it"
    if kind in ("union_tag_not_found",):
        return f"{message}; add `type:` (for example `type: float`)"
    if kind == "union_tag_invalid":
        return message
    if kind in ("literal_error", "enum"):
        return f"{message}, got {_shown(value, loc)}"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "assertion_error":
        return message.removeprefix("Assertion failed, ")
    if kind in _CUSTOM_KINDS:
        return message
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"`{field}` must be a mapping (`key: value` lines or `{{...}}`), not {_kind(value)}"
    if kind == "list_type":
        return f"`{field}` must be a list such as `[a, b]`, not {_kind(value)}"
    if kind == "string_pattern_mismatch" and field == "name":
        return (
            f"{_shown(value, loc)} is not a valid study name; use up to 63 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if "input" in error and not isinstance(value, dict | list):
        return f"{message}, got {_shown(value, loc)}"
    return message


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec, with every installed backend's options."""
    schema = StudySpec.model_json_schema()
    backends = []
    for name in sorted(available_backends()):
        try:
            config_model = backend_class(name).Config
        except Exception:  # a broken third-party plug-in must not hide the others
            continue
        sub = config_model.model_json_schema()
        schema.setdefault("$defs", {}).update(sub.pop("$defs", {}))
        backends.append(sub)
    if backends:
        schema["properties"]["backend"] = {"oneOf": backends}
    return schema


__all__ = [
    "BayesianStrategy",
    "Budget",
    "Categorical",
    "Direction",
    "GridStrategy",
    "Objective",
    "RandomStrategy",
    "SpecError",
    "SpecIssue",
    "StudySpec",
    "load_spec",
    "load_spec_text",
    "parse_duration",
    "spec_json_schema",
]


def make_pruner(pruner: NoPruner | MedianPruner | AshaPruner | HyperbandPruner) -> Any:
    """The optuna pruner for the spec's ``pruner`` section."""
    import optuna

    if isinstance(pruner, MedianPruner):
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps
        )
    if isinstance(pruner, AshaPruner):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_resource, reduction_factor=pruner.reduction_factor
        )
    if isinstance(pruner, HyperbandPruner):
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_resource,
            max_resource=pruner.max_resource,
            reduction_factor=pruner.reduction_factor,
        )
    return optuna.pruners.NopPruner()
