"""What may change in a study's spec between its runs, and what may not.

A study resumed with another spec (``tuner resume STUDY --spec new.yaml``, or
``Study.run(resume=True)`` on a changed study) keeps its finished trials, so the new spec must
keep them meaningful: the same objectives and constraints, every finished trial's parameters
inside the new space, and a ``default`` for each parameter added (the value the earlier trials
are taken to have had). A range that still holds every finished trial, a new choice, a new
parameter with a default, another budget, strategy, pruner or backend are fine. Anything else
is refused with the exact difference and a pointer to ``warm_start``, which starts a new study
from the old one's trials.

``warm_start`` and ``seed_trials`` act once, when a study begins (:mod:`tuner.warm_start`): the
earlier trials are told and the seeds queued before the first proposal, and neither can be told
again or taken back. A study that had none may take them on resume (they act before the next
proposal); one that had them keeps them as they were, as a changed section would otherwise be
ignored without a word.

A categorical's choices and a parameter's log scale are fixed in optuna's storages once a
trial used them; a study resumed with new ones is rewritten (:mod:`tuner.migrate`).

Example:
    >>> changes = check_evolution(old_spec, new_spec, trials)  # doctest: +SKIP
    >>> [str(c) for c in changes]  # doctest: +SKIP
    ['budget.max_trials: 30 -> 60', 'space.lr.high: 0.1 -> 0.5']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import InputError
from tuner.records import TrialRecord, TrialState
from tuner.space import Categorical, Float, Int, value_problem
from tuner.spec import StudySpec

ACCEPTED_SECTIONS = ("budget", "strategy", "pruner", "backend", "trial", "tracking")
"""Sections that may change freely: they decide what runs next, not what the trials meant."""

STARTING_SECTIONS = ("warm_start", "seed_trials")
"""Sections that act once, when a study begins: they may be added on resume, not changed."""


@dataclass(frozen=True)
class Change:
    """One difference between two specs of a study.

    Attributes:
        field: where, as a dotted spec path (``space.lr.high``).
        before: the old value, as text.
        after: the new value, as text.
        problem: why it cannot be accepted, or ``None`` if it can.
    """

    field: str
    before: str
    after: str
    problem: str | None = None

    def __str__(self) -> str:
        text = f"{self.field}: {self.before} -> {self.after}"
        return f"{text} ({self.problem})" if self.problem else text


class SpecChangeError(InputError):
    """A resumed study's new spec changes what its finished trials meant."""

    def __init__(self, name: str, refused: Sequence[Change]):
        self.refused = tuple(refused)
        lines = "\n".join(f"  {change}" for change in refused)
        begun = all(c.field.startswith(STARTING_SECTIONS) for c in refused)
        why = (
            "it changes how the study began"
            if begun
            else "its finished trials would not mean what they meant"
        )
        super().__init__(
            f"study `{name}` cannot continue with this spec; {why}:\n{lines}\n"
            "Keep these as they were, or start a new study "
            f"that learns from this one: `warm_start: {{study: {name}}}` (with `metrics:` for "
            "a renamed metric)"
        )


def check_evolution(old: StudySpec, new: StudySpec, trials: Sequence[TrialRecord]) -> list[Change]:
    """Every difference between ``old`` and ``new`` given the study's ``trials``.

    Returns:
        The accepted changes (empty when nothing changed).

    Raises:
        SpecChangeError: listing every change that is refused.
    """
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    changes = [
        *_objective_changes(old, new),
        *_space_changes(old, new, finished),
        *_section_changes(old, new),
        *_start_changes(old, new),
    ]
    refused = [c for c in changes if c.problem]
    if refused:
        raise SpecChangeError(old.name, refused)
    return changes


def _objective_changes(old: StudySpec, new: StudySpec) -> list[Change]:
    before = [f"{o.direction.value} {o.metric}" for o in old.objectives]
    after = [f"{o.direction.value} {o.metric}" for o in new.objectives]
    changes = []
    if before != after:
        changes.append(
            Change(
                "objective",
                ", ".join(before),
                ", ".join(after),
                "the finished trials were measured and ranked on the old objectives",
            )
        )
    old_constraints = [str(c) for c in old.constraints]
    new_constraints = [str(c) for c in new.constraints]
    if old_constraints != new_constraints:
        changes.append(
            Change(
                "constraints",
                "; ".join(old_constraints) or "none",
                "; ".join(new_constraints) or "none",
                "the finished trials were judged feasible or not by the old constraints",
            )
        )
    if _where(old) != _where(new):
        changes.append(
            Change(
                "storage",
                _shown(old.storage.model_dump(exclude_none=True)),
                _shown(new.storage.model_dump(exclude_none=True)),
                "the study's trials are in the old storage",
            )
        )
    return changes


def _space_changes(old: StudySpec, new: StudySpec, finished: Sequence[TrialRecord]) -> list[Change]:
    changes: list[Change] = []
    for name, before in old.space.items():
        where = f"space.{name}"
        after = new.space.get(name)
        if after is None:
            changes.append(
                Change(where, _param_text(before), "removed", "the finished trials vary it")
            )
            continue
        if type(after) is not type(before):
            changes.append(
                Change(
                    f"{where}.type",
                    before.type,
                    after.type,
                    "the finished trials' values are of the old type",
                )
            )
            continue
        if dict(after.when) != dict(before.when):
            changes.append(
                Change(
                    f"{where}.when",
                    _shown(dict(before.when)),
                    _shown(dict(after.when)),
                    "the finished trials took part under the old condition",
                )
            )
        outside = [t.number for t in finished if _outside(after, t.params.get(name))]
        for key in _differing_fields(before, after):
            problem = None
            if outside:
                shown = ", ".join(f"#{n}" for n in outside[:5])
                more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
                problem = f"finished trials {shown}{more} have values it excludes"
            changes.append(
                Change(
                    f"{where}.{key}",
                    _shown(getattr(before, key)),
                    _shown(getattr(after, key)),
                    problem,
                )
            )
    for name, param in new.space.items():
        if name in old.space:
            continue
        problem = None
        if param.default is None and finished:
            problem = (
                "a new parameter needs a `default:`, the value the finished trials are taken "
                "to have had"
            )
        changes.append(Change(f"space.{name}", "absent", _param_text(param), problem))
    return changes


def _section_changes(old: StudySpec, new: StudySpec) -> list[Change]:
    changes = []
    for section in ACCEPTED_SECTIONS:
        before = _dumped(getattr(old, section))
        after = _dumped(getattr(new, section))
        if section == "trial":  # where the code is imported from is not a change of the study
            before.pop("path", None)
            after.pop("path", None)
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                changes.append(
                    Change(
                        f"{section}.{key}",
                        _shown(before.get(key, "unset")),
                        _shown(after.get(key, "unset")),
                    )
                )
    return changes


def _start_changes(old: StudySpec, new: StudySpec) -> list[Change]:
    """``warm_start`` and ``seed_trials``: taken where the study had none, else refused."""
    return [*_warm_start_changes(old, new), *_seed_changes(old, new)]


def _warm_start_changes(old: StudySpec, new: StudySpec) -> list[Change]:
    if old.warm_start == new.warm_start:
        return []
    if old.warm_start is None or new.warm_start is None:
        before = "none" if old.warm_start is None else _shown(_given(old.warm_start))
        after = "none" if new.warm_start is None else _shown(_given(new.warm_start))
        fields = [("warm_start", before, after)]
    else:
        was, now = _given(old.warm_start), _given(new.warm_start)
        fields = [
            (f"warm_start.{key}", _shown(was.get(key, "unset")), _shown(now.get(key, "unset")))
            for key in sorted(set(was) | set(now))
            if was.get(key) != now.get(key)
        ]
    problem = None
    if old.warm_start is not None:
        problem = (
            "the earlier trials were told when the study began, and it keeps them; they "
            "cannot be told again or taken back"
        )
    return [Change(field, before, after, problem) for field, before, after in fields]


def _seed_changes(old: StudySpec, new: StudySpec) -> list[Change]:
    if old.seed_trials == new.seed_trials:
        return []
    if not old.seed_trials:
        return [Change("seed_trials", "none", _shown(new.seed_trials))]
    problem = (
        "the seed trials were queued when the study began and are among its trials; they "
        "cannot be queued again or taken back"
    )
    changes = []
    for index in range(max(len(old.seed_trials), len(new.seed_trials))):
        was = old.seed_trials[index] if index < len(old.seed_trials) else None
        now = new.seed_trials[index] if index < len(new.seed_trials) else None
        if was != now:
            before = "absent" if was is None else _shown(was)
            after = "removed" if now is None else _shown(now)
            changes.append(Change(f"seed_trials.{index}", before, after, problem))
    return changes


def _where(spec: StudySpec) -> tuple[str | None, Path]:
    return spec.storage.url, Path(spec.storage.dir).resolve()


def _outside(param: Float | Int | Categorical, value: Any) -> bool:
    return value is not None and value_problem(param, value) is not None


def _differing_fields(before: Any, after: Any) -> list[str]:
    keys = [k for k in type(before).model_fields if k not in ("when", "type")]
    return [k for k in keys if getattr(before, k) != getattr(after, k)]


def _dumped(section: Any) -> dict[str, Any]:
    dumped = section.model_dump(mode="json", exclude_none=True)
    return dumped if isinstance(dumped, dict) else {"value": dumped}


def _given(section: Any) -> dict[str, Any]:
    """What the spec gave of ``section`` (its defaults left out)."""
    given: dict[str, Any] = section.model_dump(mode="json", exclude_defaults=True)
    return given


def _param_text(param: Float | Int | Categorical) -> str:
    return _shown(param.model_dump(mode="json", exclude_defaults=True) | {"type": param.type})


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    return str(value)
