"""Makes the MLflow mirror equal the study store.

The store is the truth. The rule the mirror must meet, once no orchestrator writes to it:
every trial that has started has exactly one child run under the study's parent run, with the
trial's state (run status and ``tuner.state``), its parameters, its final metrics and the
objective's intermediate values; no run is left ``RUNNING`` unless its trial runs; runs made
ahead of need that no trial took are gone; the parent run is closed.

:func:`converge` checks the rule with one paged search of the parent's child runs and repairs
what differs (a missing run, a missing final metric or step, a wrong state, a duplicate, an
unused pre-made run), saying what it repaired. It runs at the end of every ``tuner run`` and
``tuner resume``, at the start of a resume for what earlier runs left, and in ``tuner sync``
(:mod:`tuner.sync`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner.records import MLFLOW_STATUS, TrialRecord, TrialState, is_own
from tuner.tally import pareto_front

if TYPE_CHECKING:
    import optuna
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient


_log = logging.getLogger(__name__)

POOL_STATE = "POOL"
"""``tuner.state`` of a child run created ahead of need and not yet taken by a trial."""
_PAGE = 1000


@dataclass(frozen=True)
class Repair:
    """One difference between the store and MLflow, and what was done about it."""

    trial: int | None
    what: str

    def __str__(self) -> str:
        return f"trial {self.trial}: {self.what}" if self.trial is not None else self.what


@dataclass(frozen=True)
class Mirror:
    """Where a study's runs are: the client, its experiment and its parent run."""

    client: MlflowClient
    experiment_id: str
    parent_run_id: str
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags every run of the study carries (``tuner.study``, ``tuner.engine``, ...)."""


def converge(
    mirror: Mirror,
    study: optuna.Study,
    objective: str,
    *,
    keep_run_id: Callable[[int, str], None],
    finished_only: bool = False,
    deep: bool = False,
) -> list[Repair]:
    """Repairs the study's runs until they meet the rule in the module docstring.

    Args:
        mirror: the study's experiment and parent run.
        study: the study as stored.
        objective: the metric whose intermediate values the store keeps.
        keep_run_id: stores the run id of a trial whose run was made or found here.
        finished_only: leave the runs of trials that have not finished alone (a study about to
            resume: its interrupted trials are closed by the loop).
        deep: check every run's intermediate values, not only those of runs that needed
            another repair (a run closed in order has all of them: writes keep their order).

    Returns:
        What was repaired, in order.
    """
    client = mirror.client
    attrs = study.user_attrs
    children = _children(mirror)
    by_id = {run.info.run_id: run for run in children}
    tagged: dict[int, list[Run]] = {}
    for run in children:
        number = run.data.tags.get("tuner.trial")
        if number is not None and number.isdigit():
            tagged.setdefault(int(number), []).append(run)
    repairs: list[Repair] = []
    used: set[str] = set()
    numbers: set[int] = set()
    own = [frozen for frozen in study.get_trials(deepcopy=False) if is_own(frozen)]
    records = [TrialRecord.from_optuna(frozen, attrs) for frozen in own]
    front = pareto_numbers(study, records)
    for frozen, record in zip(own, records, strict=True):
        numbers.add(record.number)
        stored = record.mlflow_run_id
        if stored:
            used.add(stored)
        if record.state is TrialState.WAITING:
            continue
        if finished_only and not (
            record.state.is_finished() or record.state is TrialState.CANCELLED
        ):
            continue
        candidates = [by_id[stored]] if stored in by_id else []
        candidates += [r for r in tagged.get(record.number, []) if r.info.run_id != stored]
        if not candidates:
            run_id = _create(mirror, record, frozen.intermediate_values, objective, front)
            keep_run_id(record.number, run_id)
            used.add(run_id)
            repairs.append(Repair(record.number, "its run was missing; created it"))
            continue
        keep, *extra = candidates
        used.update(r.info.run_id for r in candidates)
        for duplicate in extra:
            client.delete_run(duplicate.info.run_id)
            repairs.append(Repair(record.number, f"deleted a second run {duplicate.info.run_id}"))
        if keep.info.run_id != stored:
            keep_run_id(record.number, keep.info.run_id)
        found = _repair(mirror, keep, record, frozen.intermediate_values, objective, deep, front)
        repairs.extend(Repair(record.number, what) for what in found)
    unused = [
        run
        for run in children
        if run.info.run_id not in used
        and (
            run.data.tags.get("tuner.state") == POOL_STATE
            or (not finished_only and int(run.data.tags.get("tuner.trial", -1)) not in numbers)
        )
    ]
    for run in unused:
        client.delete_run(run.info.run_id)
    if unused:
        repairs.append(Repair(None, f"deleted {len(unused)} runs that no trial of the store has"))
    if not finished_only:
        parent = client.get_run(mirror.parent_run_id)
        if parent.info.status == "RUNNING":
            # No orchestrator runs the study now: the one that opened the run was killed.
            client.set_tag(mirror.parent_run_id, "tuner.stop_reason", "orchestrator killed")
            client.set_terminated(mirror.parent_run_id, "KILLED")
            repairs.append(Repair(None, "the study's run was left RUNNING; closed it as KILLED"))
    return repairs


def _children(mirror: Mirror) -> list[Run]:
    """Every live child run of the parent run (paged)."""
    found: list[Run] = []
    token = None
    while True:
        page = mirror.client.search_runs(
            [mirror.experiment_id],
            f"tags.`mlflow.parentRunId` = '{mirror.parent_run_id}'",
            max_results=_PAGE,
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def pareto_numbers(study: optuna.Study, records: list[TrialRecord]) -> set[int] | None:
    """The numbers of the trials on the Pareto front of a study of several objectives (which
    carry ``tuner.pareto=true``; its other completed trials ``false``); ``None`` for one."""
    from optuna.study import StudyDirection

    if len(study.directions) < 2:
        return None
    maximize = tuple(d == StudyDirection.MAXIMIZE for d in study.directions)
    return {record.number for record in pareto_front(records, maximize)}


def expected_tags(mirror: Mirror, record: TrialRecord, front: set[int] | None) -> dict[str, str]:
    """The tags a trial's run carries (``tuner.pareto`` where ``front`` is known)."""
    tags = {
        **mirror.tags,
        "tuner.trial": str(record.number),
        "tuner.state": record.state.value,
        "tuner.attempts": str(record.attempts),
        "mlflow.runName": f"trial-{record.number:04d}",
    }
    if record.node:
        tags["tuner.node"] = record.node
    if record.error:
        tags["tuner.error"] = record.error[:5000]
    if record.infeasible:
        tags["tuner.infeasible"] = record.infeasible[:5000]
    if record.seed_trial is not None:
        tags["tuner.seed_trial"] = str(record.seed_trial)
    if record.engine:
        tags["tuner.engine"] = record.engine
    if front is not None and record.state is TrialState.COMPLETE:
        tags["tuner.pareto"] = str(record.number in front).lower()
    return tags


def _final_metrics(record: TrialRecord) -> dict[str, float]:
    metrics = {k: float(v) for k, v in record.metrics.items() if _finite(v)}
    if record.cost is not None:
        metrics["tuner.cost_usd"] = float(record.cost)
    return metrics


def _create(
    mirror: Mirror,
    record: TrialRecord,
    steps: Mapping[int, float],
    objective: str,
    front: set[int] | None,
) -> str:
    from mlflow.entities import Param

    client = mirror.client
    started = int(record.started.timestamp() * 1000) if record.started else None
    run = client.create_run(
        mirror.experiment_id,
        start_time=started,
        run_name=f"trial-{record.number:04d}",
        tags={**expected_tags(mirror, record, front), "mlflow.parentRunId": mirror.parent_run_id},
    )
    run_id = str(run.info.run_id)
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in record.params.items()])
    _log_missing(mirror, run_id, record, steps, objective, have_steps=set(), have={})
    if record.state is not TrialState.RUNNING:
        client.set_terminated(run_id, MLFLOW_STATUS[record.state], _end(record))
    return run_id


def _repair(
    mirror: Mirror,
    run: Run,
    record: TrialRecord,
    steps: Mapping[int, float],
    objective: str,
    deep: bool,
    front: set[int] | None,
) -> list[str]:
    """Brings one run in line with its trial; returns what it changed."""
    from mlflow.entities import Param, RunTag

    client = mirror.client
    run_id = run.info.run_id
    done: list[str] = []
    expected = expected_tags(mirror, record, front).items()
    tags = {k: v for k, v in expected if run.data.tags.get(k) != v}
    have_params = run.data.params
    params = {k: str(v) for k, v in record.params.items() if k not in have_params}
    if tags or params:
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        done.append(f"set {', '.join(sorted({*tags, *params}))}")
    wrong = [k for k, v in record.params.items() if k in have_params and have_params[k] != str(v)]
    if wrong:
        done.append(f"params {', '.join(wrong)} differ from the store and cannot be changed")
    have = run.data.metrics
    missing = {k: v for k, v in _final_metrics(record).items() if not _same(have.get(k), v)}
    if missing or done or deep or run.info.status != MLFLOW_STATUS[record.state]:
        history = client.get_metric_history(run_id, objective) if steps else []
        have_steps = {m.step for m in history}
        logged = _log_missing(mirror, run_id, record, steps, objective, have_steps, have)
        if logged:
            done.append(logged)
    if run.info.status != MLFLOW_STATUS[record.state] and record.state is not TrialState.RUNNING:
        client.set_terminated(run_id, MLFLOW_STATUS[record.state], _end(record))
        done.append(f"was {run.info.status}, closed it as {MLFLOW_STATUS[record.state]}")
    return done


def _log_missing(
    mirror: Mirror,
    run_id: str,
    record: TrialRecord,
    steps: Mapping[int, float],
    objective: str,
    have_steps: set[int],
    have: Mapping[str, float],
) -> str:
    """Logs the objective's missing steps and the final metrics that differ; says which."""
    from mlflow.entities import Metric

    end = _end(record)
    last = max(steps, default=0)
    metrics = [
        Metric(objective, float(v), end, int(s))
        for s, v in sorted(steps.items())
        if s not in have_steps and _finite(v)
    ]
    finals = {k: v for k, v in _final_metrics(record).items() if not _same(have.get(k), v)}
    for key, value in finals.items():
        # A final value is the latest of its metric: at its last step and time, or after any.
        logged = mirror.client.get_metric_history(run_id, key)
        step = max([last, *(m.step for m in logged)])
        stamp = max([end, *(m.timestamp + 1 for m in logged if m.step == step)])
        metrics.append(Metric(key, value, stamp, step))
    for start in range(0, len(metrics), _PAGE):
        mirror.client.log_batch(run_id, metrics=metrics[start : start + _PAGE])
    parts = []
    if len(metrics) > len(finals):
        parts.append(f"logged {len(metrics) - len(finals)} intermediate values")
    if finals:
        parts.append(f"logged final {', '.join(sorted(finals))}")
    return "; ".join(parts)


def _end(record: TrialRecord) -> int:
    import time

    return int((record.finished.timestamp() if record.finished else time.time()) * 1000)


def _same(have: float | None, want: float) -> bool:
    return have is not None and math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
