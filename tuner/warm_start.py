"""Earlier results told to a study before its first proposal, and known configurations to run
first.

:func:`prepare` does both, once per study, before the loop asks for its first trial:

- ``warm_start:`` reads the finished trials of an earlier tuner study, or the finished runs of
  an MLflow experiment (tuner's trial runs and hand-made ones alike), maps each onto this
  study's space and objectives, and tells optuna the ones that fit as COMPLETE trials marked
  ``tuner.warm_start``. The strategy learns from them; tuner never runs, counts, tracks or
  reports them (:func:`tuner.records.is_own`). What was used and dropped, and why, is kept as
  the study attribute ``tuner.warm_started``.
- ``seed_trials:`` queues the spec's configurations (optuna's ``enqueue_trial``): the loop's
  ``ask`` takes queued trials first, and they count in the budget as any trial.

The study attributes ``tuner.warm_started`` and ``tuner.seeded`` say it is done, so a resumed
study neither tells nor queues anything again; each trial also carries where it came from, so a
run killed halfway through finishes the job without repeating what was already written.

One job, what a study knows before its first proposal: its two sources are read here too (a
few lines each), beside the mapping that gives their values one meaning.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import InputError
from tuner.hints import closest
from tuner.records import Attr, TrialRecord, is_own
from tuner.space import Categorical, Float, Int, to_optuna, value_problem
from tuner.spec.sections import COST_METRIC, Direction

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from tuner.spec import StudySpec, WarmStart

_log = logging.getLogger("tuner")

SEED_TRIAL = Attr.SEED_TRIAL
WARM_START_REF = Attr.WARM_START_REF

_TOLERANCE = 1e-9
"""How far beyond a bound a value may be and still count as the bound (as the spec checks)."""
_PAGE = 1000
"""Runs per MLflow search page (MLflow's own limit for one page)."""


@dataclass(frozen=True)
class WarmStartReport:
    """What a warm start told the study.

    Attributes:
        source: where the trials came from (``study digits-v1``, ``mlflow experiment runs``).
        used: trials told to the study.
        dropped: finished trials left out, counted by reason (``x outside the space``).

    Example:
        >>> WarmStartReport("study v1", 25, {"`x` outside the space": 5}).describe()
        '25 trials from study v1 (5 dropped: 5 `x` outside the space)'
    """

    source: str
    used: int
    dropped: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The report as the study attribute ``tuner.warm_started`` keeps it."""
        data = {"source": self.source, "used": self.used, "dropped": dict(self.dropped)}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WarmStartReport:
        """The report :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(data["source"], int(data["used"]), dict(data.get("dropped") or {}))

    def describe(self) -> str:
        """One line: ``25 trials from study v1 (5 dropped: 3 `x` outside the space, ...)``."""
        line = f"{self.used} trial{'' if self.used == 1 else 's'} from {self.source}"
        if self.dropped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items())
            line += f" ({sum(self.dropped.values())} dropped: {reasons})"
        return line


def stored_report(study_attrs: Mapping[str, Any]) -> WarmStartReport | None:
    """The report a study's warm start left in its attributes, if it had one."""
    text = study_attrs.get(Attr.WARM_STARTED)
    return WarmStartReport.from_json(text) if text else None


def prepare(study: optuna.Study, spec: StudySpec) -> WarmStartReport | None:
    """Tells the warm-start trials and queues the seed trials of ``spec`` (each once a study).

    Args:
        study: the study's optuna study, opened and not yet asked for a trial.
        spec: the study's spec.

    Returns:
        What the warm start told (``None`` without ``warm_start``).

    Raises:
        InputError: if the earlier study or experiment does not exist, or ``warm_start``
            names a parameter or objective this study does not have.
    """
    report = warm_start(study, spec)
    queue_seed_trials(study, spec)
    return report


# --- seed trials ------------------------------------------------------------------------------


def queue_seed_trials(study: optuna.Study, spec: StudySpec) -> int:
    """Queues ``spec.seed_trials`` unless the study has them; returns how many it queued."""
    if not spec.seed_trials or Attr.SEEDED in study.user_attrs:
        return 0
    # A run killed between queueing and marking the study must not queue a seed twice.
    queued = {t.user_attrs.get(SEED_TRIAL) for t in study.get_trials(deepcopy=False)}
    space = spec.search_space
    count = 0
    for index, config in enumerate(spec.seed_trials):
        if index in queued:
            continue
        params = {name: _typed(space[name], value) for name, value in config.items()}
        study.enqueue_trial(params, user_attrs={SEED_TRIAL: index}, skip_if_exists=False)
        count += 1
    study.set_user_attr(Attr.SEEDED, len(spec.seed_trials))
    return count


# --- warm start -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Earlier:
    """One finished trial or run as its source keeps it."""

    ref: str
    params: Mapping[str, Any]
    """Typed values (an earlier study), or MLflow's strings (``text``)."""
    metrics: Mapping[str, float]
    text: bool = False


@dataclass(frozen=True)
class Mapped:
    """An earlier trial on this study's space: ready to be told."""

    ref: str
    params: dict[str, Any]
    values: tuple[float, ...]
    violations: tuple[float, ...] = ()


def warm_start(study: optuna.Study, spec: StudySpec) -> WarmStartReport | None:
    """Tells ``study`` the earlier trials ``spec.warm_start`` names (see the module)."""
    config = spec.warm_start
    if config is None:
        return None
    if (done := stored_report(study.user_attrs)) is not None:
        return done
    if config.study is not None:
        source, earlier = study_trials(spec, config)
    else:
        source, earlier = mlflow_runs(spec, config)
    mapped, dropped = map_all(spec, earlier)
    if config.max_trials is not None and len(mapped) > config.max_trials:
        kept = best(spec, mapped, config.max_trials)
        dropped[f"not among the best {config.max_trials} (max_trials)"] = len(mapped) - len(kept)
        mapped = kept
    told = {t.user_attrs.get(WARM_START_REF) for t in study.get_trials(deepcopy=False)}
    tell(study, spec, [m for m in mapped if m.ref not in told], source)
    report = WarmStartReport(source, len(mapped), dict(dropped))
    study.set_user_attr(Attr.WARM_STARTED, report.to_json())
    if dropped:
        hint = ""
        if not mapped and any(r.startswith("no metric") for r in dropped):
            hint = "; give an objective's earlier name in `warm_start.metrics: {new: old}`"
        _log.warning("warm start: %s%s", report.describe(), hint)
    else:
        _log.info("warm start: %s", report.describe())
    return report


def tell(study: optuna.Study, spec: StudySpec, mapped: Iterable[Mapped], source: str) -> None:
    """Adds ``mapped`` to ``study`` as finished trials marked with their ``source``."""
    import optuna

    from tuner.optuna_adapter import CONSTRAINTS_KEY

    space = spec.search_space
    study.add_trials(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            params=m.params,
            distributions={name: to_optuna(space[name]) for name in m.params},
            values=list(m.values),
            user_attrs={Attr.WARM_START: source, WARM_START_REF: m.ref},
            # read by the constrained samplers exactly as the study's own trials' values
            system_attrs={CONSTRAINTS_KEY: list(m.violations)} if spec.constraints else None,
        )
        for m in mapped
    )


# --- mapping onto this study ------------------------------------------------------------------


def map_all(spec: StudySpec, earlier: Iterable[Earlier]) -> tuple[list[Mapped], Counter[str]]:
    """The earlier trials that fit this study, and how many did not, by reason."""
    mapped: list[Mapped] = []
    dropped: Counter[str] = Counter()
    for trial in earlier:
        result = map_one(spec, trial)
        if isinstance(result, str):
            dropped[result] += 1
        else:
            mapped.append(result)
    return mapped, dropped


def map_one(spec: StudySpec, earlier: Earlier) -> Mapped | str:
    """``earlier`` on this study's space and objectives, or why it does not fit.

    A parameter it lacks takes ``warm_start.defaults``, else the parameter's ``default``; one
    not active in its configuration is left out; one this space no longer has is ignored.
    """
    config = spec.warm_start
    assert config is not None
    space = spec.search_space
    params: dict[str, Any] = {}
    for name, param in space.items():
        if not space.is_active(name, params):
            continue
        if name in earlier.params:
            raw = earlier.params[name]
            value = _from_text(param, raw) if earlier.text else _typed(param, raw)
            if value is None or value_problem(param, value) is not None:
                return f"`{name}` outside the space"
        elif name in config.defaults:
            value = config.defaults[name]
        elif param.default is not None:
            value = param.default
        else:
            return f"no value for `{name}`"
        params[name] = _typed(param, value)
    values = []
    for objective in spec.objectives:
        metric = config.metrics.get(objective.metric, objective.metric)
        value = earlier.metrics.get(metric)
        if value is None:
            return f"no metric `{metric}`"
        if not math.isfinite(value):
            return f"`{metric}` not finite"
        values.append(float(value))
    violations = []
    for constraint in spec.constraints:
        if constraint.metric not in earlier.metrics:
            return f"no metric `{constraint.metric}` (a constraint)"
        violations.append(constraint.violation(earlier.metrics[constraint.metric]))
    return Mapped(earlier.ref, params, tuple(values), tuple(violations))


def best(spec: StudySpec, mapped: list[Mapped], count: int) -> list[Mapped]:
    """The ``count`` best of ``mapped``, in their order: feasible first, then by how many
    others dominate them (one objective: by its value), then by the first objective."""
    import numpy as np

    signs = np.array([-1.0 if o.direction is Direction.MAXIMIZE else 1.0 for o in spec.objectives])
    losses = np.array([m.values for m in mapped], dtype=float) * signs
    dominated = np.zeros(len(mapped), dtype=int)
    if losses.shape[1] > 1:
        for start in range(0, len(mapped), 256):  # bounded memory for many runs
            rows = losses[start : start + 256, None, :]
            no_worse = np.all(losses[None, :, :] <= rows, axis=2)
            better = np.any(losses[None, :, :] < rows, axis=2)
            dominated[start : start + 256] = np.sum(no_worse & better, axis=1)
    infeasible = [any(v > 0 for v in m.violations) for m in mapped]
    order = sorted(range(len(mapped)), key=lambda i: (infeasible[i], dominated[i], losses[i, 0], i))
    return [mapped[i] for i in sorted(order[:count])]


def _typed(param: Float | Int | Categorical, value: Any) -> Any:
    """``value`` as the parameter's own type (``3.0`` for an int is ``3``; a choice is the
    choice itself, so ``1`` never stands for ``True``)."""
    if isinstance(param, Categorical):
        same = [c for c in param.choices if type(c) is type(value) and c == value]
        numeric = [c for c in param.choices if _number(c) and _number(value) and c == value]
        return (same or numeric or [value])[0]
    if not _number(value):
        return value
    if isinstance(param, Int):
        return int(value) if float(value).is_integer() else value
    if param.low - _TOLERANCE <= value <= param.high + _TOLERANCE:  # optuna has none
        value = min(max(value, param.low), param.high)
    return float(value)


def _from_text(param: Float | Int | Categorical, text: str) -> Any:
    """An MLflow param (always a string) as the parameter's value, or ``None``."""
    if isinstance(param, Categorical):
        for choice in param.choices:
            if str(choice) == text or (isinstance(choice, bool) and str(choice).lower() == text):
                return choice
        try:
            number = float(text)
        except ValueError:
            return None
        return next((c for c in param.choices if _number(c) and c == number), None)
    try:
        number = float(text)
    except ValueError:
        return None
    if isinstance(param, Int):
        return int(number) if number.is_integer() else None
    return number


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- sources ----------------------------------------------------------------------------------


def study_trials(spec: StudySpec, config: WarmStart) -> tuple[str, list[Earlier]]:
    """The finished COMPLETE trials of the earlier study ``config.study`` (its own only)."""
    from optuna.trial import TrialState

    source = open_source_study(spec, config)
    metric_names = source.metric_names or []
    earlier = []
    for frozen in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not is_own(frozen):
            continue
        record = TrialRecord.from_optuna(frozen)
        metrics = dict(record.metrics)
        for name, value in zip(metric_names, frozen.values or (), strict=False):
            metrics.setdefault(name, value)
        if record.cost is not None:
            metrics.setdefault(COST_METRIC, record.cost)
        earlier.append(Earlier(f"trial {frozen.number}", record.params, metrics))
    return f"study {source.study_name}", earlier


def open_source_study(spec: StudySpec, config: WarmStart) -> optuna.Study:
    """The earlier study: by name in ``warm_start.storage`` (a URL or a studies folder) or
    this spec's storage, or by its folder.

    Raises:
        InputError: if there is no such study; the message lists the studies there are.
    """
    import optuna

    from tuner.optuna_adapter import quiet
    from tuner.paths import JOURNAL_FILE
    from tuner.secrets import redact_url
    from tuner.store import open_url

    assert config.study is not None
    name = config.study
    url = config.storage if config.storage and "://" in config.storage else None
    if url is None and config.storage is None:
        url = spec.storage.url
    if url is not None:
        storage, where = open_url(url), redact_url(url)
        if url == spec.storage.url and name == spec.name:
            raise InputError(f"warm_start.study: `{name}` is this study; name an earlier one")
    else:
        folder = Path(config.storage or spec.storage.dir)
        journal = folder / name / JOURNAL_FILE
        if not journal.is_file() and (Path(name) / JOURNAL_FILE).is_file():
            journal, name = Path(name) / JOURNAL_FILE, Path(name).name  # a study's folder
        if not journal.is_file():
            known = sorted(
                p.parent.name
                for p in folder.glob(f"*/{JOURNAL_FILE}")
                if p.parent.name != spec.name
            )
            raise InputError(_missing("warm_start.study", name, f"in {folder}/", known))
        if journal.resolve() == (Path(spec.storage.dir) / spec.name / JOURNAL_FILE).resolve():
            raise InputError(f"warm_start.study: `{name}` is this study; name an earlier one")
        storage, where = _journal(journal), str(journal)
    try:
        with quiet():
            return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = sorted(s.study_name for s in storage.get_all_studies() if s.study_name != spec.name)
        raise InputError(_missing("warm_start.study", name, f"in {where}", known)) from None


def _journal(path: Path) -> BaseStorage:
    """A journal file's storage, for reading (an earlier study may still be running)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def mlflow_runs(spec: StudySpec, config: WarmStart) -> tuple[str, list[Earlier]]:
    """The FINISHED runs of ``config.mlflow_experiment``, every page, but tuner's parent runs
    and its trials that did not complete (pruned ones end FINISHED too).

    Raises:
        InputError: if there is no such experiment; the message lists the ones there are.
    """
    from tuner.secrets import redact_url
    from tuner.tracking import quiet_client, resolve_tracking_uri

    assert config.mlflow_experiment is not None
    name = config.mlflow_experiment
    mlflow = spec.tracking.mlflow
    uri = resolve_tracking_uri(config.tracking_uri or (mlflow.tracking_uri if mlflow else None))
    client = quiet_client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        known = sorted(e.name for e in client.search_experiments(max_results=_PAGE))
        where = f"at {redact_url(uri)}"
        raise InputError(_missing("warm_start.mlflow_experiment", name, where, known))
    earlier = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            max_results=_PAGE,
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            state = tags.get("tuner.state")
            if "tuner.study" in tags and "tuner.trial" not in tags:
                continue  # a study's parent run (or one made ahead of need)
            if state not in (None, "COMPLETE"):
                continue  # a tuner trial that was pruned, failed, or never started
            earlier.append(Earlier(run.info.run_id, run.data.params, run.data.metrics, True))
        token = page.token
        if not token:
            return f"mlflow experiment {name}", earlier


def _missing(field: str, name: str, where: str, known: list[str]) -> str:
    close = closest(name, known)
    hint = f"did you mean `{close}`? " if close else ""
    there = f"there are {', '.join(known)}" if known else "there are none"
    return f"{field}: no `{name}` {where}; {hint}{there}"
