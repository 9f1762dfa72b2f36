"""Search spaces: parameters, conditions, and one converter per engine.

A parameter is a small immutable model that validates itself when built. Bounds are inclusive
everywhere. A :class:`Space` is an ordered mapping of names to parameters; a parameter may be
*conditional* on an earlier categorical (``when={"kernel": "poly"}``) and is then absent from a
configuration in which the condition does not hold.

Example:
    >>> space = Space({
    ...     "C": Float(1e-3, 1e3, log=True),
    ...     "kernel": Categorical(["rbf", "poly"]),
    ...     "degree": Int(2, 5, when={"kernel": "poly"}),
    ... })
    >>> space.is_active("degree", {"C": 1.0, "kernel": "rbf"})
    False

One job, the search space: the parameters, their conditions and the one converter per engine
that each parameter needs (optuna, skopt) live together, so a new parameter kind is one read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuner.errors import InputError
from tuner.hints import closest

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

ChoiceValue: TypeAlias = str | bool | int | float
"""What a categorical choice may be (bool first, so YAML's ``true`` stays a bool)."""

_STEP_TOLERANCE = 1e-9


def _normalise_when(value: Any) -> dict[str, tuple[ChoiceValue, ...]]:
    """Accepts ``{parent: value}`` or ``{parent: [values]}`` and returns tuples of values."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            "`when` must map an earlier categorical parameter to the value(s) that activate "
            f"this one, e.g. `when: {{kernel: poly}}`; got {value!r}"
        )
    normalised: dict[str, tuple[ChoiceValue, ...]] = {}
    for parent, values in value.items():
        items = tuple(values) if isinstance(values, list | tuple) else (values,)
        if not items:
            raise ValueError(
                f"`when.{parent}` lists no values; give at least one choice of {parent}"
            )
        normalised[str(parent)] = items
    return normalised


class _Param(BaseModel):
    """Fields every parameter shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    when: dict[str, tuple[ChoiceValue, ...]] = Field(
        default_factory=dict,
        description="Activate this parameter only when earlier categoricals take these values.",
    )
    default: ChoiceValue | None = Field(
        None,
        description="The value earlier trials are taken to have had, when they did not have this "
        "parameter: a parameter added to a study as it is resumed, or missing from a warm start.",
    )

    @field_validator("when", mode="before")
    @classmethod
    def _check_when(cls, value: Any) -> dict[str, tuple[ChoiceValue, ...]]:
        return _normalise_when(value)

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if "type" in data:  # pydantic validating a spec's mapping: the spec reports it
                raise
            # built in Python, `tuner.Float(5, 1)`: said as a spec would, not as pydantic
            raise _param_error(type(self).__name__, data, exc) from None


class _Numeric(_Param):
    @model_validator(mode="after")
    def _check_bounds(self) -> _Numeric:
        low, high = self.low, self.high  # type: ignore[attr-defined]
        step = self.step  # type: ignore[attr-defined]
        log = self.log  # type: ignore[attr-defined]
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"bounds must be finite numbers, but got low={low}, high={high}")
        if low >= high:
            raise ValueError(
                f"`low < high` must hold, but got low={low}, high={high}; "
                "swap them, or use a categorical with one choice for a constant"
            )
        if log and low <= 0:
            raise ValueError(
                f"a log-scaled range needs `low > 0`, but got low={low}; "
                "raise `low` to a small positive value or set `log: false`"
            )
        if step is not None:
            if step <= 0:
                raise ValueError(f"`step` must be positive, but got step={step}")
            if log:
                raise ValueError("`step` and `log: true` cannot be combined; drop one of them")
            # Exactly as optuna checks it (in decimal), so optuna never moves `high` silently.
            d_low, d_high, d_step = (Decimal(str(v)) for v in (low, high, step))
            if (d_high - d_low) % d_step != 0:
                span = (high - low) / step
                raise ValueError(
                    f"`step` must divide `high - low`, but (high - low) / step = "
                    f"({high} - {low}) / {step} = {span:g}; choose a step such as "
                    f"{(high - low) / max(1, round(span)):g} or move `high`"
                )
        self._check_default()
        return self

    def _check_default(self) -> None:
        if self.default is not None and (problem := value_problem(self, self.default)):  # type: ignore[arg-type]
            raise ValueError(f"`default` {problem}")


class Float(_Numeric):
    """A real-valued parameter in ``[low, high]``, optionally log-scaled or on a ``step`` grid.

    Example:
        >>> Float(1e-4, 1e-1, log=True).low
        0.0001
    """

    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __init__(self, low: float | None = None, high: float | None = None, /, **data: Any):
        if low is not None:
            data["low"] = low
        if high is not None:
            data["high"] = high
        super().__init__(**data)


class Int(_Numeric):
    """An integer parameter in ``[low, high]`` (both inclusive).

    Example:
        >>> Int(2, 5).grid()
        [2, 3, 4, 5]
    """

    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int | None = None

    def __init__(self, low: int | None = None, high: int | None = None, /, **data: Any):
        if low is not None:
            data["low"] = low
        if high is not None:
            data["high"] = high
        super().__init__(**data)

    def grid(self) -> list[int]:
        """Every value of the parameter, in order."""
        return list(range(self.low, self.high + 1, self.step or 1))


class Categorical(_Param):
    """A choice among strings, numbers or booleans.

    Example:
        >>> Categorical(["rbf", "poly"]).choices
        ('rbf', 'poly')
    """

    type: Literal["categorical"] = "categorical"
    choices: tuple[ChoiceValue, ...]

    def __init__(self, choices: Sequence[ChoiceValue] | None = None, /, **data: Any):
        if choices is not None:
            data["choices"] = choices
        super().__init__(**data)

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, choices: tuple[ChoiceValue, ...]) -> tuple[ChoiceValue, ...]:
        if not choices:
            raise ValueError("`choices` is empty; list at least one value")
        seen: list[ChoiceValue] = []
        for choice in choices:
            # `1 == True` in Python; a duplicate here means the same type and value.
            if any(type(choice) is type(other) and choice == other for other in seen):
                raise ValueError(f"`choices` lists {choice!r} twice; each choice must be unique")
            seen.append(choice)
        return choices

    @model_validator(mode="after")
    def _check_default(self) -> Categorical:
        if self.default is not None and not _is_choice(self.default, self.choices):
            raise ValueError(
                f"`default` is {self.default!r}, which is not among the choices "
                f"{list(self.choices)}"
            )
        return self

    def grid(self) -> list[ChoiceValue]:
        """Every choice, in order."""
        return list(self.choices)


Param: TypeAlias = Annotated[Float | Int | Categorical, Field(discriminator="type")]
"""Any parameter, told apart by its ``type`` field."""


def float_grid(param: Float) -> list[float]:
    """Every value of a stepped float parameter, in order.

    Raises:
        ValueError: if the parameter has no ``step`` (a continuous range has no grid).
    """
    if param.step is None:
        raise ValueError("a float parameter needs a `step` to be searched by grid")
    count = round((param.high - param.low) / param.step)
    return [min(param.high, param.low + i * param.step) for i in range(count + 1)]


def grid_values(param: Float | Int | Categorical) -> list[Any]:
    """Every value a grid search tries for ``param``."""
    if isinstance(param, Float):
        return float_grid(param)
    return param.grid()


def _param_error(kind: str, data: Mapping[str, Any], exc: ValidationError) -> SpaceError:
    """A parameter built with bad values, in the words a YAML spec's error uses."""
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = f"`{field}` is required; add it"
    elif error["type"] == "extra_forbidden":
        message = f"unknown argument `{field}`"
    args = ", ".join(f"{key}={value!r}" for key, value in data.items())
    return SpaceError("", field, f"tuner.{kind}({args}): {message}")


class SpaceError(InputError):
    """A space whose conditions cannot hold; ``param`` and ``field`` say where."""

    def __init__(self, param: str, field: str, message: str):
        super().__init__(message)
        self.param = param
        self.field = field


class Space(Mapping[str, "Float | Int | Categorical"]):
    """An ordered, validated mapping of parameter names to parameters.

    Args:
        params: parameters in the order they are suggested; a parameter's ``when`` may only name
            an earlier categorical and values among its choices.

    Raises:
        SpaceError: if a condition names an unknown or later parameter, a non-categorical, or a
            value the parent cannot take.
    """

    def __init__(self, params: Mapping[str, Float | Int | Categorical]):
        if not params:
            raise SpaceError("", "", "the space is empty; define at least one parameter")
        self._params = dict(params)
        names = list(self._params)
        for index, (name, param) in enumerate(self._params.items()):
            for parent, values in param.when.items():
                if parent == name:
                    raise SpaceError(name, "when", f"`{name}` cannot be conditional on itself")
                if parent not in self._params:
                    raise SpaceError(
                        name,
                        "when",
                        f"`when` names `{parent}`, which is not a parameter of this space; "
                        f"known parameters: {', '.join(names)}",
                    )
                if names.index(parent) > index:
                    raise SpaceError(
                        name,
                        "when",
                        f"`when` names `{parent}`, which is defined after `{name}`; "
                        f"move `{parent}` above `{name}`",
                    )
                parent_param = self._params[parent]
                if not isinstance(parent_param, Categorical):
                    raise SpaceError(
                        name,
                        "when",
                        f"`when` may only name a categorical parameter, but `{parent}` is "
                        f"{parent_param.type}",
                    )
                for value in values:
                    if not _is_choice(value, parent_param.choices):
                        raise SpaceError(
                            name,
                            "when",
                            f"`when.{parent}` is {value!r}, which `{parent}` can never take; "
                            f"its choices are {list(parent_param.choices)}",
                        )

    def __getitem__(self, name: str) -> Float | Int | Categorical:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"Space({self._params!r})"

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether ``name`` takes part in a configuration whose earlier values are ``config``."""
        return all(
            parent in config and _is_choice(config[parent], values)
            for parent, values in self._params[name].when.items()
        )

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Asks an optuna trial for every active parameter, in order (define-by-run)."""
        config: dict[str, Any] = {}
        for name, param in self._params.items():
            if self.is_active(name, config):
                config[name] = _suggest_one(trial, name, param)
        return config

    def distributions(self) -> dict[str, BaseDistribution]:
        """The optuna distribution of every parameter, active or not."""
        return {name: to_optuna(param) for name, param in self._params.items()}

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of a fully discrete space, conditions respected, in order.

        Raises:
            ValueError: if a float parameter has no ``step``.
        """
        configs: list[dict[str, Any]] = [{}]
        for name, param in self._params.items():
            values = grid_values(param)
            expanded: list[dict[str, Any]] = []
            for config in configs:
                if self.is_active(name, config):
                    expanded.extend({**config, name: value} for value in values)
                else:
                    expanded.append(config)
            configs = expanded
        return configs

    def grid_size(self) -> int:
        """The number of configurations :meth:`grid` returns."""
        return len(self.grid())

    def config_problems(
        self, config: Mapping[str, Any], *, complete: bool = False
    ) -> list[tuple[str, str]]:
        """What keeps ``config`` from being a configuration of this space, by parameter.

        Args:
            config: parameter names to values.
            complete: whether every active parameter must be given (else the strategy fills
                in the missing ones).
        """
        problems: list[tuple[str, str]] = []
        names = list(self._params)
        for name in config:
            if name not in self._params:
                close = closest(name, names)
                hint = f"did you mean `{close}`? " if close else ""
                problems.append(
                    (
                        name,
                        f"`{name}` is not a parameter of the space; {hint}"
                        f"the parameters are {', '.join(names)}",
                    )
                )
        active: dict[str, Any] = {}
        for name, param in self._params.items():
            if not self.is_active(name, active):
                if name in config:
                    condition = ", ".join(f"{k} in {list(v)}" for k, v in param.when.items())
                    problems.append(
                        (
                            name,
                            f"`{name}` only takes part when {condition}; "
                            "remove it from this configuration",
                        )
                    )
                continue
            if name not in config:
                if complete:
                    problems.append((name, f"`{name}` is missing; give it a value"))
                continue
            problem = value_problem(param, config[name])
            if problem is not None:
                fix = "; give one it can take, or widen the parameter in `space`"
                problems.append((name, f"`{name}` {problem}{fix}"))
            else:
                active[name] = config[name]
        return problems

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` is a valid configuration: active params present and in range."""
        expected: dict[str, Any] = {}
        for name, param in self._params.items():
            if self.is_active(name, expected):
                if name not in config or not _in_param(param, config[name]):
                    return False
                expected[name] = config[name]
        return set(expected) == set(config)


def value_problem(param: Float | Int | Categorical, value: Any) -> str | None:
    """Why ``value`` is not one ``param`` can take, or ``None`` if it is."""
    if isinstance(param, Categorical):
        if _is_choice(value, param.choices):
            return None
        return f"is {value!r}, which is not among the choices {list(param.choices)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is {value!r}, not a number"
    if isinstance(param, Int) and not float(value).is_integer():
        return f"is {value!r}, not a whole number"
    if not param.low - _STEP_TOLERANCE <= value <= param.high + _STEP_TOLERANCE:
        return f"is {value!r}, outside [{param.low}, {param.high}]"
    if param.step is not None:
        index = (value - param.low) / param.step
        if abs(index - round(index)) > 1e-9 * max(1.0, abs(index)):
            return f"is {value!r}, not on the grid {param.low} + k * {param.step}"
    return None


def _is_choice(value: Any, choices: Sequence[Any]) -> bool:
    return any(type(value) is type(choice) and value == choice for choice in choices) or (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and any(
            not isinstance(c, bool) and isinstance(c, int | float) and c == value for c in choices
        )
    )


def _in_param(param: Float | Int | Categorical, value: Any) -> bool:
    if isinstance(param, Categorical):
        return _is_choice(value, param.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(param, Int) and not float(value).is_integer():
        return False
    return param.low - _STEP_TOLERANCE <= value <= param.high + _STEP_TOLERANCE


def _suggest_one(trial: optuna.trial.BaseTrial, name: str, param: Float | Int | Categorical) -> Any:
    if isinstance(param, Float):
        return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, Int):
        return trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step or 1)
    return trial.suggest_categorical(name, list(param.choices))


# --- converters: exactly one per engine ------------------------------------------------------


def to_optuna(param: Float | Int | Categorical) -> BaseDistribution:
    """The optuna distribution that :meth:`Space.suggest` asks for."""
    from optuna import distributions

    if isinstance(param, Float):
        return distributions.FloatDistribution(
            param.low, param.high, log=param.log, step=param.step
        )
    if isinstance(param, Int):
        return distributions.IntDistribution(
            param.low, param.high, log=param.log, step=param.step or 1
        )
    return distributions.CategoricalDistribution(list(param.choices))


def from_optuna(distribution: BaseDistribution) -> Float | Int | Categorical:
    """The parameter for an optuna distribution (the inverse of :func:`to_optuna`)."""
    from optuna import distributions

    if isinstance(distribution, distributions.FloatDistribution):
        return Float(
            distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    if isinstance(distribution, distributions.IntDistribution):
        step = None if distribution.step == 1 else distribution.step
        return Int(distribution.low, distribution.high, log=distribution.log, step=step)
    if isinstance(distribution, distributions.CategoricalDistribution):
        return Categorical([c for c in distribution.choices if c is not None])
    raise TypeError(f"unsupported optuna distribution: {distribution!r}")


def to_skopt(param: Float | Int | Categorical, name: str) -> Any:
    """The scikit-optimize dimension for ``param``.

    Stepped parameters become skopt integer dimensions over the step index, so every point the
    optimizer proposes is on the grid; :func:`from_skopt_value` maps an index back.
    """
    from skopt import space as sk

    if isinstance(param, Categorical):
        # skopt transforms categoricals by their string form; indices keep types intact.
        return sk.Categorical(list(range(len(param.choices))), name=name, transform="onehot")
    prior = "log-uniform" if param.log else "uniform"
    if param.step is not None:
        count = round((param.high - param.low) / param.step)
        return sk.Integer(0, count, name=name)
    if isinstance(param, Int):
        return sk.Integer(param.low, param.high, prior=prior, name=name)
    return sk.Real(param.low, param.high, prior=prior, name=name)


def to_skopt_value(param: Float | Int | Categorical, value: Any) -> Any:
    """A parameter value in the coordinates of :func:`to_skopt`'s dimension."""
    if isinstance(param, Categorical):
        return next(i for i, choice in enumerate(param.choices) if _is_choice(value, [choice]))
    if param.step is not None:
        return round((value - param.low) / param.step)
    return int(value) if isinstance(param, Int) else float(value)


def from_skopt_value(param: Float | Int | Categorical, value: Any) -> Any:
    """The parameter value for a point of :func:`to_skopt`'s dimension."""
    if isinstance(param, Categorical):
        return param.choices[int(value)]
    if param.step is not None:
        raw = param.low + int(value) * param.step
        return int(raw) if isinstance(param, Int) else min(float(raw), param.high)
    return int(value) if isinstance(param, Int) else float(value)
