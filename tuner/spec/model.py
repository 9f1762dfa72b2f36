"""The whole study spec: its sections together, and the checks that span them.

One job, the spec as a whole: the checks that need two sections at once (seed trials against
the space, objectives against the engine and the pruner, warm-start defaults against the
parameters) and its YAML form, written portably, live beside the model they check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

import yaml
from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    SerializeAsAny,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from tuner.backend import BackendConfig, FunctionEntry, UnknownBackendError
from tuner.plugins import available_backends, backend_class
from tuner.secrets import redact_spec
from tuner.space import ChoiceValue, Float, Param, Space, SpaceError, value_problem
from tuner.spec.sections import (
    COST_METRIC,
    MULTI_OBJECTIVE_ENGINES,
    ONE_OBJECTIVE,
    SEVERAL_OBJECTIVES,
    BayesianStrategy,
    Budget,
    Constraint,
    Direction,
    GridStrategy,
    NoPruner,
    Objective,
    Pruner,
    Storage,
    Strategy,
    Tracking,
    TrialConfig,
    WarmStart,
    _error,
    _Section,
)

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def _default_backend() -> dict[str, Any]:
    return {"type": "ray"}


class StudySpec(_Section):
    """A whole study: what to search, how, for how long, where to run and where to record."""

    name: str = Field(pattern=_NAME_PATTERN, description="Letters, digits, '.', '_', '-'.")
    objective: Annotated[
        Annotated[Objective, Tag(ONE_OBJECTIVE)]
        | Annotated[list[Objective], Field(min_length=1), Tag(SEVERAL_OBJECTIVES)],
        Discriminator(lambda v: SEVERAL_OBJECTIVES if isinstance(v, list) else ONE_OBJECTIVE),
    ] = Field(
        description="The metric to optimise, or a list of them (a multi-objective study, "
        "whose result is the Pareto front)."
    )
    constraints: list[
        Annotated[
            Constraint,
            WithJsonSchema({"type": "string", "examples": ["memory_mb <= 4000"]}),
        ]
    ] = Field(
        default_factory=list,
        description="Bounds on reported metrics (`latency_ms < 50`); a trial that breaks one is "
        "infeasible and never the best.",
    )
    space: dict[str, Param]
    seed_trials: list[dict[str, ChoiceValue]] = Field(
        default_factory=list,
        description="Known configurations to evaluate first (parameters left out are "
        "proposed by the strategy).",
    )
    warm_start: WarmStart | None = Field(
        None, description="Earlier trials the strategy learns from before its first proposal."
    )
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
            loc: tuple[str | int, ...] = (
                ("space", exc.param, exc.field) if exc.param else ("space",)
            )
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
        errors.extend(self._objective_problems())
        if self.trial.command is not None:
            names = [d.name for d in self.trial.metric_definitions]
            wanted = [o.metric for o in self.objectives if o.metric != COST_METRIC]
            wanted += [c.metric for c in self.constraints]
            for metric in dict.fromkeys(m for m in wanted if m not in names):
                errors.append(
                    _error(
                        ("trial", "metric_definitions"),
                        "objective_undefined",
                        f"the metric `{metric}` has no metric definition; add "
                        f"`{{name: {metric}, regex: ...}}` so it can be read from the command's "
                        "output",
                    )
                )
        if self._space is not None and self.warm_start is not None:
            errors.extend(_warm_start_problems(self.warm_start, self._space, self.objectives))
        if self._space is not None:
            for index, config in enumerate(self.seed_trials):
                for key, message in self._space.config_problems(config):
                    errors.append(_error(("seed_trials", index, key), "seed_trial", message))
        if self._space is not None:
            errors.extend(self._engine_space_problems(self._space))
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
    def objectives(self) -> tuple[Objective, ...]:
        """Every objective, in order (one for a single-objective study)."""
        objective = self.objective
        return tuple(objective) if isinstance(objective, list) else (objective,)

    @property
    def maximize(self) -> tuple[bool, ...]:
        """Per objective, whether it is maximised."""
        return tuple(o.direction is Direction.MAXIMIZE for o in self.objectives)

    @property
    def multi_objective(self) -> bool:
        """Whether the study optimises more than one metric (its result is a Pareto front)."""
        return len(self.objectives) > 1

    @property
    def primary(self) -> Objective:
        """The objective progress lines show and pruners watch (``pruner.objective``, or
        the first)."""
        watched = getattr(self.pruner, "objective", None)
        return next((o for o in self.objectives if o.metric == watched), self.objectives[0])

    def _objective_problems(self) -> list[InitErrorDetails]:
        errors: list[InitErrorDetails] = []
        metrics = [o.metric for o in self.objectives]
        where = ("objective",)
        for index, metric in enumerate(metrics):
            if metric in metrics[:index]:
                errors.append(
                    _error(
                        (*where, index, "metric"),
                        "objective_twice",
                        f"`{metric}` is an objective twice; keep one",
                    )
                )
        if COST_METRIC in metrics and self.backend.cost_problem() is not None:
            errors.append(
                _error(
                    where,
                    "cost_unknown",
                    f"the {self.backend.type} backend does not know what trials cost, so "
                    f"`{COST_METRIC}` cannot be an objective; it needs a backend that knows "
                    "prices (sagemaker)",
                )
            )
        watched = getattr(self.pruner, "objective", None)
        if watched is not None and watched not in metrics:
            errors.append(
                _error(
                    ("pruner", "objective"),
                    "pruned_objective",
                    f"`{watched}` is not an objective; give one of {', '.join(metrics)}",
                )
            )
        if self.primary.metric == COST_METRIC and self.pruner.type != "none":
            errors.append(
                _error(
                    ("pruner", "objective"),
                    "pruned_objective",
                    f"`{COST_METRIC}` is known only when a trial ends; have the pruner "
                    "watch a metric the trial reports as it goes",
                )
            )
        engine = getattr(self.strategy, "engine", None)
        if self.multi_objective and engine is not None and engine not in MULTI_OBJECTIVE_ENGINES:
            errors.append(
                _error(
                    ("strategy", "engine"),
                    "single_objective_engine",
                    f"the `{engine}` engine optimises one objective; for "
                    f"{len(self.objectives)} objectives use one of "
                    f"{', '.join(MULTI_OBJECTIVE_ENGINES)} (or the random or grid strategy)",
                )
            )
        return errors

    def _engine_space_problems(self, space: Space) -> list[InitErrorDetails]:
        if getattr(self.strategy, "engine", None) != "cmaes":
            return []
        from tuner.strategies._cmaes import cmaes_parameters

        if cmaes_parameters(space):
            return []
        kinds = [
            f"`{name}` is {'conditional' if param.when else 'categorical'}"
            for name, param in space.items()
        ]
        return [
            _error(
                ("strategy", "engine"),
                "engine_space",
                "the `cmaes` engine evolves numeric parameters that are active in every trial, "
                f"and this space has none ({', '.join(kinds)}); use `engine: tpe`, or add a "
                "float or int parameter without `when:`",
            )
        ]

    @property
    def search_space(self) -> Space:
        """The validated :class:`Space`."""
        assert self._space is not None
        return self._space

    def to_yaml(self, *, redact: bool = False, folder: str | os.PathLike[str] | None = None) -> str:
        """The spec as YAML, with the folders its trial function is imported from.

        Only what differs from the defaults is written (and each section's ``type``). A
        Python-built trial function is written as its ``module:function`` reference.

        Args:
            redact: mask secret-named ``env``/``environment`` values and URL passwords (see
                :mod:`tuner.secrets`), for anything shown or logged. The study folder keeps
                the unredacted form, which ``tuner resume`` runs with.
            folder: write it for a spec file in this folder, to be read on any machine and
                from any working directory: ``trial.path`` names the folders the function is
                imported from relative to ``folder``, as the loader reads them, but for
                ``folder`` itself (the loader always imports from it) and the working
                directory unless the function's module is there; a command's ``workdir`` is
                relative to ``folder`` too. Without it, each folder is the absolute path it
                is here, the form the study folder keeps: ``tuner resume`` reads that from
                anywhere.
        """
        data = _with_tags(
            self.model_dump(mode="json", exclude_defaults=True), self.model_dump(mode="json")
        )
        entry = self.trial.entry
        if isinstance(entry, FunctionEntry):
            data["trial"].pop("path", None)
            if folder is None:
                folders = list(entry.search_path)
            else:  # the working directory only where the function comes from
                provider, cwd = _provider(entry), os.path.realpath(os.getcwd())
                kept = [p for p in entry.search_path if p == provider or os.path.realpath(p) != cwd]
                folders = _portable(kept, folder)
            data["trial"] = {"path": folders, **data["trial"]} if folders else data["trial"]
        else:
            data["trial"].pop("function", None)  # `function: null` says nothing
            data["trial"].pop("workdir", None)  # last, wherever the dump had it
            workdir = entry.workdir if folder is None else _relative(entry.workdir, folder)
            if workdir is not None:
                data["trial"]["workdir"] = workdir
        if redact:
            data = redact_spec(data)
        return yaml.safe_dump(data, sort_keys=False)


def _provider(entry: FunctionEntry) -> str | None:
    """The folder of ``entry.search_path`` its function's module is imported from (``None``:
    an installed package, or a module the interpreter finds on its own path)."""
    top = entry.ref.split(":")[0].split(".")[0]
    for folder in entry.search_path:
        if os.path.isfile(os.path.join(folder, f"{top}.py")) or os.path.isdir(
            os.path.join(folder, top)
        ):
            return folder
    return None


def _portable(folders: list[str], folder: str | os.PathLike[str]) -> list[str]:
    """``folders`` as a spec file in ``folder`` names them: relative to it (the loader reads
    them so), without ``folder`` itself, which the loader always imports from."""
    base = os.path.realpath(folder)
    written = []
    for path in folders:
        if os.path.realpath(path) == base:
            continue
        try:
            written.append(os.path.relpath(path, base))
        except ValueError:  # another drive (Windows): no relative form
            written.append(path)
    return list(dict.fromkeys(written))


def _relative(workdir: str | None, folder: str | os.PathLike[str]) -> str | None:
    """``workdir`` as a spec file in ``folder`` writes it: the loader joins it to the file's
    folder, and none means the folder itself."""
    base = os.path.realpath(folder)
    if workdir is None or os.path.realpath(workdir) == base:
        return None
    try:
        return os.path.relpath(workdir, base)
    except ValueError:  # another drive (Windows): no relative form
        return workdir


def _warm_start_problems(
    config: WarmStart, space: Space, objectives: tuple[Objective, ...]
) -> list[InitErrorDetails]:
    """``warm_start.defaults`` and ``warm_start.metrics`` name what this study has."""
    errors = []
    for name, value in config.defaults.items():
        where: tuple[str | int, ...] = ("warm_start", "defaults", name)
        problems = space.config_problems({name: value})
        if name not in space:
            errors.append(_error(where, "warm_start_default", problems[0][1]))
        elif (problem := value_problem(space[name], value)) is not None:
            errors.append(_error(where, "warm_start_default", f"`{name}` {problem}"))
    metrics = [o.metric for o in objectives]
    for name in config.metrics:
        if name not in metrics:
            errors.append(
                _error(
                    ("warm_start", "metrics", name),
                    "warm_start_metric",
                    f"`{name}` is not an objective of this study; the keys of `metrics` are "
                    f"objectives ({', '.join(metrics)}), the values their earlier names",
                )
            )
    return errors


def _with_tags(lean: Any, full: Any) -> Any:
    """``lean`` (a dump without defaults) with the ``type`` tags ``full`` has put back first:
    a section or parameter is read as its kind by its tag, default or not."""
    if not isinstance(lean, dict) or not isinstance(full, dict):
        if isinstance(lean, list) and isinstance(full, list):
            return [_with_tags(a, b) for a, b in zip(lean, full, strict=False)]
        return lean
    tagged = {"type": full["type"]} if "type" in full else {}
    tagged.update({key: _with_tags(value, full.get(key)) for key, value in lean.items()})
    return tagged


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
