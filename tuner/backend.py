"""The contract between the study loop and an execution backend.

A backend runs trials somewhere (a Ray cluster, SageMaker, a thread pool in tests) and reports
back only immutable records. Backends are found by name through the ``tuner.backends``
entry-point group, so a third party adds one without touching tuner::

    [project.entry-points."tuner.backends"]
    slurm = "my_package.slurm:SlurmBackend"

The class named there keeps the :class:`Backend` protocol: a ``name``, a ``Config`` pydantic
model (a :class:`BackendConfig` whose ``type`` field holds the entry point's name), the methods,
and a constructor called as ``SlurmBackend(config, context)``. :mod:`tuner.plugins` finds
plug-ins and checks that when it loads one; :mod:`tuner.testing.backend_contract` checks what
the backend does.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from tuner.errors import InputError, SetupError

ENTRY_POINT_GROUP = "tuner.backends"
DISTRIBUTION = "hpo-tuner"
"""The name tuner is installed under (``pip install hpo-tuner``)."""

_log = logging.getLogger(__name__)


class TrialStatus(enum.Enum):
    """What a backend says about one attempt of a trial.

    Not the trial's state in the study: a FAILED attempt may be retried, and the loop decides.
    :mod:`tuner.records` maps the study's :class:`~tuner.records.TrialState` to optuna's and
    MLflow's.
    """

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_finished(self) -> bool:
        """Whether the backend is done with the trial."""
        return self is not TrialStatus.RUNNING


@dataclass(frozen=True)
class Resources:
    """What one trial needs on its backend (``memory`` in bytes)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None
    custom: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionEntry:
    """A trial that calls ``function(params)``.

    Attributes:
        ref: ``"module:function"``, importable on the worker.
        search_path: folders put in front of ``sys.path`` before the import.
        function: the callable itself when the study was built in Python; backends that can
            ship code (Ray) send it as is, so functions from scripts and notebooks work too.
    """

    ref: str
    search_path: tuple[str, ...] = ()
    function: Callable[[dict[str, Any]], Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class MetricDefinition:
    """A metric read from output lines: the first group of ``regex`` is its value."""

    name: str
    regex: str


@dataclass(frozen=True)
class CommandEntry:
    """A trial that runs a program (no shell) with ``--name value`` arguments.

    Attributes:
        argv: the program and its own arguments; ``python``/``python3`` mean the worker's
            interpreter.
        metric_definitions: how metrics are read from its output (stdout and stderr).
        workdir: where it runs, if that folder exists on the worker.
    """

    argv: tuple[str, ...]
    metric_definitions: tuple[MetricDefinition, ...] = ()
    workdir: str | None = None


class ErrorKind(enum.Enum):
    """Why a trial failed, which decides whether it is retried."""

    USER = "USER"
    """The trial code raised, exited non-zero or returned something unusable."""
    INFRA = "INFRA"
    """The worker, node or job died under the trial: retried up to ``trial.max_retries``."""
    TIMEOUT = "TIMEOUT"
    """The trial ran past ``trial.timeout``."""


@dataclass(frozen=True)
class TrialSpec:
    """Everything a backend needs to run one trial."""

    study: str
    number: int
    params: Mapping[str, Any]
    entry: FunctionEntry | CommandEntry
    objective: str
    resources: Resources = Resources()
    env: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0


@dataclass(frozen=True)
class TrialHandle:
    """A backend's JSON-serialisable reference to a submitted trial."""

    backend: str
    trial: int
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The handle as a JSON string (stored with the trial for resume)."""
        return json.dumps({"backend": self.backend, "trial": self.trial, "data": dict(self.data)})

    @classmethod
    def from_json(cls, text: str) -> TrialHandle:
        """The inverse of :meth:`to_json`."""
        raw = json.loads(text)
        return cls(backend=raw["backend"], trial=int(raw["trial"]), data=raw.get("data", {}))


@dataclass(frozen=True)
class TrialUpdate:
    """What is new about one trial since the last poll.

    A ``RUNNING`` update carries intermediate metrics at ``step`` (or only a new ``cost``
    estimate); a ``COMPLETED`` one the trial's final metrics; a ``FAILED`` one the error, its
    kind and, where there is one, the traceback. ``log`` is the trial's output (stdout and
    stderr), on the final update.
    """

    trial: int
    status: TrialStatus
    metrics: Mapping[str, float] = field(default_factory=dict)
    step: int | None = None
    error: str | None = None
    traceback: str | None = None
    node: str | None = None
    error_kind: ErrorKind = ErrorKind.USER
    log: str | None = None
    cost: float | None = None
    """USD the trial has cost so far (an estimate on ``RUNNING`` updates), if known."""
    details: Mapping[str, str | float] = field(default_factory=dict)
    """What the backend tells about the trial on its final update (job name, billed time)."""


@dataclass(frozen=True)
class BackendContext:
    """What the study tells a backend when it builds it."""

    study: str
    study_dir: Path
    max_concurrent: int
    resources: Resources = Resources()
    uid: str = ""
    """The study's unique id (its name is reused after ``--overwrite``; this is not)."""


class BackendConfig(BaseModel):
    """Base of every backend's ``Config``: the spec's ``backend:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    runs_functions: ClassVar[bool] = True
    """Whether the backend runs ``trial.function``; those that do not run only commands."""

    def cost_problem(self) -> str | None:
        """Why ``budget.max_cost`` cannot be enforced with this backend (``None``: it can)."""
        return (
            f"the {self.type} backend does not know what trials cost; `max_cost` needs one "
            "that does (sagemaker)"
        )


@runtime_checkable
class Backend(Protocol):
    """Runs trials and reports what happened to them.

    ``poll`` returns only what is new since the previous call, intermediate updates of a trial
    before its final one. ``cancel`` is idempotent. ``reattach`` tells, after a resume, whether
    a trial submitted by an earlier orchestrator is still followed: running, or finished while
    no orchestrator watched (its updates, final one included, then come through ``poll``).
    ``capacity`` may drop while the study runs (a cloud quota was hit); the loop reads it
    before each launch, and it is never below 1.

    A backend is a class built as ``Backend(config, context)``, ``config`` an instance of its
    ``Config`` and ``context`` a :class:`BackendContext`; it is registered in the
    ``tuner.backends`` entry-point group (see the module's docstring).
    """

    name: ClassVar[str]
    """The backend's name, as in its handles (``TrialHandle.backend``)."""
    Config: ClassVar[type[BackendConfig]]
    """The model of its ``backend:`` section; its ``type`` field holds the entry point's name."""

    @property
    def capacity(self) -> int:
        """How many trials the backend can run at once."""
        ...

    def submit(self, trial: TrialSpec) -> TrialHandle:
        """Starts a trial."""
        ...

    def poll(self, timeout: float) -> list[TrialUpdate]:
        """Waits up to ``timeout`` seconds for news, then returns all there is."""
        ...

    def cancel(self, handle: TrialHandle) -> None:
        """Stops a trial; a no-op for one that already finished."""
        ...

    def reattach(self, handle: TrialHandle) -> bool:
        """Whether the trial behind ``handle`` still runs and will be reported on."""
        ...

    def close(self) -> None:
        """Stops everything the backend started."""
        ...


class UnknownBackendError(InputError, LookupError):
    """No backend is registered under the name asked for."""


class BackendError(SetupError, RuntimeError):
    """A backend cannot run the study as configured; the message says how to fix it."""


class BackendPluginError(SetupError):
    """A plug-in of the ``tuner.backends`` group does not import or does not keep the contract.

    The message names the entry point (``name = module:attr``) and everything wrong with it.
    """


class MissingExtraError(SetupError, ImportError):
    """A dependency is not installed; the message says what to install.

    Args:
        package: the import that failed.
        extra: the distribution's extra that installs it, or ``None`` for a dependency of
            tuner itself (the installation is then broken and is repaired by reinstalling).
        purpose: what needs it.
    """

    def __init__(self, package: str, extra: str | None, purpose: str):
        self.package = package
        self.extra = extra
        how = (
            f"install it with `pip install '{DISTRIBUTION}[{extra}]'`"
            if extra
            else f"it is a dependency of tuner: reinstall with `pip install --force-reinstall "
            f"{DISTRIBUTION}`"
        )
        super().__init__(f"{purpose} needs the `{package}` package, which is not installed; {how}")
