"""The Python API: a study built with the keywords of its YAML spec, run, and its result.

:class:`Study` takes the spec's sections as keyword arguments, with the same names, checks and
error messages as the YAML form, plus short forms for the common case::

    study = tuner.Study(
        name="digits-svm",
        trial=train_svm,                       # a function, lambda, closure, partial or "mod:fn"
        space={"C": tuner.Float(1e-3, 1e3, log=True), "kernel": tuner.Categorical(["rbf"])},
        objective="val_accuracy", direction="maximize",
        strategy="bayesian",                   # or {"type": "bayesian", "engine": "tpe"}
        max_trials=30, max_concurrent=2,       # budget fields, or budget={...}
        backend="ray",                         # a name, a dict or a typed config
    )
    result = study.run()                       # a tuner.StudyResult
    result.best.params, result.trials, result.plot_history()

``study.to_yaml()`` writes the same spec as YAML and ``Study.from_yaml(path, **changes)`` reads
one back, changed. The wiring that runs a study (store, backend, MLflow, lock) is
:class:`tuner.orchestrator.Orchestrator`; this module only builds the spec and reads results.
That one job is long because it covers every section of the spec: each keyword, its short
forms and the checks that make a Python mistake read as the YAML one does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tuner.backend import FunctionEntry
from tuner.errors import InputError
from tuner.spec import StudySpec, load_spec, spec_from_mapping
from tuner.views import objectives_text

if TYPE_CHECKING:
    from tuner.results import StudyResult

SECTIONS = (
    "name",
    "objective",
    "constraints",
    "space",
    "seed_trials",
    "warm_start",
    "strategy",
    "budget",
    "pruner",
    "trial",
    "backend",
    "tracking",
    "storage",
)
"""The spec's sections, in the order YAML writes them; each is a keyword of :class:`Study`."""

BUDGET_FIELDS = ("max_trials", "max_concurrent", "max_time", "max_failures", "max_cost")
"""Budget fields :class:`Study` also takes as keywords of their own."""

STRATEGIES = ("random", "grid", "bayesian")

_UNSET: Any = object()


class Study:
    """A study built in Python: the spec's sections as keywords, checked as YAML is.

    Args:
        spec: a whole spec to start from (the other keywords change it).
        name: the study's name (letters, digits, ``.``, ``_``, ``-``); a named trial
            function's name if not given.
        trial: the trial code: a callable taking the params dict (a function, lambda, closure
            over notebook data or ``functools.partial``), a ``"module:function"`` reference, or
            the mapping of the YAML ``trial:`` section (e.g. a ``command``).
        space: parameter names to :class:`~tuner.Float`, :class:`~tuner.Int`,
            :class:`~tuner.Categorical` (or their YAML mappings).
        objective: the metric to optimise, or the ``objective:`` mapping; a list of them for a
            multi-objective study (whose ``best`` is the Pareto front).
        direction: ``"minimize"`` (default) or ``"maximize"`` (a list, one per objective, for
            several), with metric names as ``objective``.
        constraints: bounds on reported metrics, ``["memory_mb <= 4000", "latency_ms < 50"]``.
        seed_trials: known configurations to evaluate first.
        warm_start: the ``warm_start:`` mapping: ``{"study": "earlier"}`` or
            ``{"mlflow_experiment": "manual-runs"}``.
        strategy: ``"random"``, ``"grid"``, ``"bayesian"``, an engine name (``"auto"``,
            ``"tpe"``, ``"gp"``...: a bayesian strategy on it), the ``strategy:`` mapping or
            a strategy model.
        seed: the strategy's seed.
        budget: the ``budget:`` mapping; its fields may also be given as keywords.
        max_trials: finished trials before the study stops.
        max_concurrent: trials running at once.
        max_time: wall time of one run (seconds, or ``"1h30m"``).
        max_failures: failed trials before the study stops.
        max_cost: USD to spend (backends that know prices).
        pruner: ``"median"``, ``"asha"``, ``"hyperband"``, the ``pruner:`` mapping or model.
        backend: a backend name (``"ray"``), its mapping or its typed config.
        tracking: the ``tracking:`` mapping, an MLflow tracking URI, or ``None`` for no MLflow.
        storage: the ``storage:`` mapping, an optuna storage URL, or the studies' folder.

    Raises:
        SpecError: listing every problem, each with its field and how to fix it.
    """

    def __init__(
        self,
        spec: StudySpec | None = None,
        /,
        *,
        name: str | None = None,
        trial: Callable[..., Any] | str | Mapping[str, Any] | BaseModel | None = None,
        space: Mapping[str, Any] | None = None,
        objective: str | Mapping[str, Any] | BaseModel | Sequence[Any] | None = None,
        direction: str | Sequence[str] | None = None,
        constraints: Sequence[str] | None = None,
        seed_trials: Sequence[Mapping[str, Any]] | None = None,
        warm_start: Mapping[str, Any] | BaseModel | None = None,
        strategy: str | Mapping[str, Any] | BaseModel | None = None,
        seed: int | None = None,
        budget: Mapping[str, Any] | BaseModel | None = None,
        max_trials: int | None = None,
        max_concurrent: int | None = None,
        max_time: float | str | None = None,
        max_failures: int | None = None,
        max_cost: float | None = None,
        pruner: str | Mapping[str, Any] | BaseModel | None = None,
        backend: str | Mapping[str, Any] | BaseModel | None = None,
        tracking: str | Mapping[str, Any] | BaseModel | None = _UNSET,
        storage: str | Mapping[str, Any] | BaseModel | None = None,
    ):
        given = {
            "name": name,
            "trial": trial,
            "space": space,
            "objective": objective,
            "constraints": list(constraints) if constraints is not None else None,
            "seed_trials": [dict(c) for c in seed_trials] if seed_trials is not None else None,
            "warm_start": warm_start,
            "strategy": strategy,
            "budget": budget,
            "pruner": pruner,
            "backend": backend,
            "storage": storage,
        }
        data = _sections_of(spec) if spec is not None else {}
        data.update({key: value for key, value in given.items() if value is not None})
        if tracking is not _UNSET:
            data["tracking"] = tracking
        shortcuts = {
            "direction": direction,
            "seed": seed,
            "max_trials": max_trials,
            "max_concurrent": max_concurrent,
            "max_time": max_time,
            "max_failures": max_failures,
            "max_cost": max_cost,
        }
        self.spec: StudySpec = build_spec(data, **shortcuts)
        """The validated spec."""
        self._folder: str | None = None
        """The folder of the YAML file it was read from: where ``to_yaml()`` writes for."""

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], /, **changes: Any) -> Study:
        """A study from a YAML spec file, with any keyword of :class:`Study` changing it.

        Raises:
            SpecError: with the file, line and field of every problem.
        """
        study = cls(load_spec(path), **changes)
        study._folder = str(Path(path).resolve().parent)
        return study

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The spec as YAML (written to ``path`` too, if given); ``from_yaml`` reads it back.

        The YAML holds no folder of this machine that its reader imports from anyway: the
        working directory and the file's own folder (``path``'s, else that of the file the
        study was read from) are left out, and a command's ``workdir`` is relative to the
        file's folder. So ``Study.from_yaml(path).to_yaml()`` is the text written to ``path``.

        Raises:
            InputError: if the trial function cannot be named by a ``module:function``
                reference (a lambda, a closure, a partial, a function of ``__main__`` or of
                a notebook): YAML can only refer to code in a module.
        """
        _check_referable(self.spec)
        if path is not None:
            folder = str(Path(path).resolve().parent)
        else:
            folder = self._folder or os.getcwd()
        text = self.spec.to_yaml(folder=folder)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @property
    def name(self) -> str:
        """The study's name."""
        return self.spec.name

    def run(
        self, *, resume: bool = False, overwrite: bool = False, progress: bool = True
    ) -> StudyResult:
        """Runs the study until its budget ends; returns its result.

        Interrupting it (Ctrl-C, or the notebook's stop button) cancels the running trials,
        keeps every finished one, and raises ``KeyboardInterrupt``; ``run(resume=True)``
        continues from there.

        Args:
            resume: continue a study that already has trials (those cancelled by an
                interruption run again).
            overwrite: delete the study's earlier trials first (its MLflow runs stay).
            progress: show the live progress (in a notebook's output or on the terminal).

        Raises:
            StudyExistsError: if the study already has trials and neither ``resume`` nor
                ``overwrite`` is given.
            StudyBusyError: if another live process runs the study.
        """
        from tuner.orchestrator import Orchestrator
        from tuner.results import StudyResult
        from tuner.store import StudyExistsError, delete_study

        if resume and overwrite:
            raise InputError("give `resume=True` or `overwrite=True`, not both")
        if overwrite:
            delete_study(self.spec)
        display = _progress_display() if progress else None
        orchestrator = Orchestrator(self.spec, listeners=[display] if display else [])
        try:
            summary = orchestrator.run(resume=resume)
        except StudyExistsError:
            raise StudyExistsError(
                f"study `{self.name}` already has trials; `run(resume=True)` continues it, "
                "`run(overwrite=True)` starts it over, or give the study another `name`"
            ) from None
        except KeyboardInterrupt:
            if display is not None:
                display.close()
            _say(
                f"interrupted: running trials were cancelled; `run(resume=True)` continues "
                f"study {self.name}"
            )
            raise
        return StudyResult.read(self.spec, summary)

    def result(self) -> StudyResult:
        """The study's result as its store holds it now (while it runs, too).

        Raises:
            StudyNotFoundError: if the study has not run yet.
        """
        from tuner.results import StudyResult

        return StudyResult.read(self.spec)

    def __repr__(self) -> str:
        spec = self.spec
        return (
            f"Study({spec.name!r}: {objectives_text(spec)} over {', '.join(spec.space)}; "
            f"{spec.strategy.type} on {spec.backend.type})"
        )


def build_spec(data: Mapping[str, Any], **shortcuts: Any) -> StudySpec:
    """A spec from sections given as Python values, short forms expanded.

    Args:
        data: sections by name: mappings as YAML has them, section models, or short forms
            (a name for ``strategy``/``pruner``/``backend``, a metric for ``objective``, a
            callable or reference for ``trial``).
        shortcuts: ``direction``, ``seed`` and the budget fields; ``None`` leaves them be.

    Raises:
        SpecError: listing every problem.
    """
    sections = {key: _expand(key, value) for key, value in data.items()}
    into = {"seed": "strategy"}
    into.update(dict.fromkeys(BUDGET_FIELDS, "budget"))
    direction = shortcuts.pop("direction", None)
    if direction is not None:
        sections["objective"] = _with_direction(sections.get("objective"), direction)
    for key, value in shortcuts.items():
        if value is None:
            continue
        section = into[key]
        current = sections.get(section)
        if current is None and section == "strategy":
            current = {"type": "bayesian"}
        merged = _as_mapping(current) if current is not None else {}
        if isinstance(merged, dict):
            merged[key] = value
        sections[section] = merged
    if "name" not in sections:
        name = _default_name(sections.get("trial"))
        if name is not None:
            sections["name"] = name
    ordered = {key: sections[key] for key in SECTIONS if key in sections}
    ordered.update({k: v for k, v in sections.items() if k not in ordered})
    return spec_from_mapping(ordered)


def _expand(section: str, value: Any) -> Any:
    """A section's short form as the mapping YAML would hold."""
    if section == "trial" and (callable(value) or isinstance(value, str)):
        return {"function": value}
    if section == "objective" and isinstance(value, str):
        return {"metric": value}
    if section == "objective" and isinstance(value, list | tuple):
        return [{"metric": v} if isinstance(v, str) else v for v in value]
    if section == "strategy" and isinstance(value, str):
        return {"type": value} if value in STRATEGIES else {"type": "bayesian", "engine": value}
    if section in ("pruner", "backend") and isinstance(value, str):
        return {"type": value}
    if section == "tracking":
        if value is None:
            return {"mlflow": None}
        if isinstance(value, str):
            return {"mlflow": {"tracking_uri": value}}
    if section == "storage" and isinstance(value, str | os.PathLike):
        text = os.fspath(value)
        return {"url": text} if "://" in text else {"dir": text}
    return value


def _with_direction(objective: Any, direction: str | Sequence[str]) -> Any:
    """The objective section with ``direction`` (one per objective) set."""
    objectives = objective if isinstance(objective, list) else [objective]
    directions = [direction] if isinstance(direction, str) else list(direction)
    if len(directions) != len(objectives):
        raise InputError(
            f"`direction` gives {len(directions)} directions for {len(objectives)} objectives; "
            "give one per objective"
        )
    changed = []
    for item, way in zip(objectives, directions, strict=True):
        mapping = _as_mapping(item) if item is not None else {}
        if isinstance(mapping, dict):
            mapping["direction"] = way
        changed.append(mapping)
    return changed if isinstance(objective, list) else changed[0]


def _as_mapping(value: Any) -> Any:
    """A section model as its mapping, to change one of its keys."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, Mapping):
        return dict(value)
    return value  # not a mapping: the spec's check says what is wrong with it


def _default_name(trial: Any) -> str | None:
    """A named trial function's name; else ``None`` and the spec's check asks for a `name`."""
    function = trial.get("function") if isinstance(trial, Mapping) else None
    name = getattr(function, "__name__", None)
    if isinstance(name, str) and name.isidentifier():
        return name.replace("_", "-")
    return None


def _sections_of(spec: StudySpec) -> dict[str, Any]:
    """A spec's sections, to be checked again with changes.

    The trial section carries what it was resolved against (the folders its function is
    imported from, the command's working folder), as a saved spec does, and the function
    object itself (a notebook's function has no other form).
    """
    sections = {key: getattr(spec, key) for key in SECTIONS}
    trial = spec.trial.model_dump(exclude_none=True)
    entry = spec.trial.entry
    if isinstance(entry, FunctionEntry):
        trial.update(path=list(entry.search_path), function=spec.trial.function)
    else:
        trial["workdir"] = entry.workdir
    sections["trial"] = trial
    return sections


def _check_referable(spec: StudySpec) -> None:
    from tuner.functions import is_referable

    entry = spec.trial.entry
    if isinstance(entry, FunctionEntry) and not is_referable(entry):
        raise InputError(
            f"the trial function `{entry.ref}` cannot be written to YAML: YAML refers to code "
            "by `module:function`, and this one is defined in a notebook or a script's "
            "`__main__`, or is a lambda, closure or partial; move it into a module (e.g. "
            'train.py) and pass `trial="train:function"`'
        )


def _progress_display() -> Any:
    from tuner.notebook import NotebookProgress, in_notebook

    if in_notebook():
        return NotebookProgress()
    from rich.console import Console

    from tuner.progress import ProgressDisplay

    return ProgressDisplay(Console())


def _say(line: str) -> None:
    import sys

    print(line, file=sys.stderr)
