"""A study's results as a researcher works with them: the best trial, a table, the plots.

:class:`StudyResult` is what :meth:`tuner.Study.run` returns and :func:`load` reads back for
any study, finished or running. It is a snapshot of the study's store: ``trials`` is a pandas
DataFrame (one row per trial), the ``plot_*`` methods return plotly figures (a notebook shows
them inline), and in a notebook the result itself displays as a short summary.

Example:
    >>> result = tuner.load("digits-svm")  # doctest: +SKIP
    >>> result.best.params, result.best.value  # doctest: +SKIP
    >>> result.trials.sort_values("value").head()  # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tuner.optuna_adapter import own_trials
from tuner.progress import format_value
from tuner.records import StopReason, StudySummary, TrialRecord, TrialState

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import plotly.graph_objects as go

    from tuner.spec import StudySpec


@dataclass(frozen=True)
class BestTrial:
    """The best completed trial of a study.

    Attributes:
        number: the trial's number in the study.
        params: its hyperparameters.
        value: its objective value.
        metrics: every final metric it reported.
        run_id: its MLflow run, when the study is tracked.
    """

    number: int
    params: Mapping[str, Any]
    value: float
    metrics: Mapping[str, float]
    run_id: str | None
    values: Mapping[str, float]
    """Every objective's value by its metric (one entry for one objective)."""

    @classmethod
    def of(cls, record: TrialRecord, objectives: Sequence[str]) -> BestTrial:
        """The best trial from its record."""
        assert record.value is not None
        values = record.objective_values or ()
        return cls(
            number=record.number,
            params=dict(record.params),
            value=record.value,
            metrics=dict(record.metrics),
            run_id=record.mlflow_run_id,
            values=dict(zip(objectives, values, strict=False)),
        )


TRIAL_COLUMNS = ("number", "state", "value")
"""The first columns of :attr:`StudyResult.trials`; parameters and metrics follow, then
``seconds``, ``attempts``, ``node``, ``cost`` and ``run_id``."""


class StudyResult:
    """A study's trials and best trial, read from its store.

    Args:
        spec: the study's spec.
        trials: every trial, in order (with their MLflow run ids where known).
        summary: counts, the best trial and why the study stopped.
        study: the optuna study, for the plots.
    """

    def __init__(
        self,
        spec: StudySpec,
        trials: Sequence[TrialRecord],
        summary: StudySummary,
        study: optuna.Study,
    ):
        self.spec = spec
        self.records = tuple(trials)
        self.summary = summary
        self._study = own_trials(study, for_plots=True)  # a warm start's are not the study's

    @classmethod
    def read(cls, spec: StudySpec, summary: StudySummary | None = None) -> StudyResult:
        """The result of ``spec``'s study as its store holds it now.

        Args:
            spec: the study's spec.
            summary: the summary of the run that just ended (it knows why it stopped);
                computed from the trials if not given.

        Raises:
            StudyNotFoundError: if the study has no state yet.
        """
        from tuner.store import load_study, records, summarise

        study = load_study(spec)
        trials = records(study)
        fresh = summarise(spec, trials)
        if summary is not None:
            fresh = replace(fresh, stop_reason=summary.stop_reason, message=summary.message)
        return cls(spec, trials, fresh, study)

    # --- what a researcher reads -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The study's name."""
        return self.spec.name

    @property
    def best(self) -> Any:
        """The best feasible completed trial (:class:`BestTrial`, ``None`` before one
        completed); for several objectives, the Pareto front (a list of them)."""
        front = self.front
        if self.spec.multi_objective:
            return front
        return front[0] if front else None

    @property
    def front(self) -> list[BestTrial]:
        """The feasible completed trials no other one beats in every objective (the best
        trial alone for one objective), in trial order."""
        by_number = {t.number: t for t in self.records}
        metrics = [o.metric for o in self.spec.objectives]
        return [BestTrial.of(by_number.get(t.number, t), metrics) for t in self.summary.front]

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the run that made this result stopped (``None`` for a study read back)."""
        return self.summary.stop_reason

    @property
    def counts(self) -> Mapping[TrialState, int]:
        """Trials per state."""
        return self.summary.counts

    @cached_property
    def trials(self) -> pd.DataFrame:
        """One row per trial: ``number``, ``state``, ``value``, a column per parameter and per
        final metric, ``seconds``, ``attempts``, ``node``, ``cost`` and ``run_id``.

        A parameter and a metric of the same name get ``param.`` and ``metric.`` prefixes.
        """
        import pandas as pd

        params = list(dict.fromkeys(name for t in self.records for name in t.params))
        metrics = list(dict.fromkeys(name for t in self.records for name in t.metrics))
        metrics = [m for m in metrics if m != "value"]
        clash = set(params) & set(metrics) | set(params) & set(_TAIL) | set(metrics) & set(_TAIL)
        front = {t.number for t in self.summary.front}
        rows = []
        for trial in self.records:
            row: dict[str, Any] = {
                "number": trial.number,
                "state": trial.state.value,
                "value": trial.value,
            }
            for name in params:
                row[f"param.{name}" if name in clash else name] = trial.params.get(name)
            for name in metrics:
                row[f"metric.{name}" if name in clash else name] = trial.metrics.get(name)
            if self.spec.multi_objective:
                row["pareto"] = trial.number in front
            if self.spec.constraints:
                row["infeasible"] = trial.infeasible
            row.update(
                seconds=trial.duration,
                attempts=trial.attempts,
                node=trial.node,
                cost=trial.cost,
                engine=trial.engine,
                run_id=trial.mlflow_run_id,
            )
            rows.append(row)
        columns = [*TRIAL_COLUMNS]
        columns += [f"param.{n}" if n in clash else n for n in params]
        columns += [f"metric.{n}" if n in clash else n for n in metrics]
        columns += ["pareto"] if self.spec.multi_objective else []
        columns += ["infeasible"] if self.spec.constraints else []
        columns += list(_TAIL)
        return pd.DataFrame(rows, columns=columns)

    # --- plots (optuna's visualisation, plotly) --------------------------------------------

    def plot_history(self, metric: str | None = None) -> go.Figure:
        """The objective of each completed trial and the best so far.

        Args:
            metric: which objective, for several (the watched one by default).
        """
        from optuna.visualization import plot_optimization_history

        figure = plot_optimization_history(self._study, **self._target(metric))
        return self._titled(figure)

    def plot_parallel_coordinates(
        self, params: Sequence[str] | None = None, metric: str | None = None
    ) -> go.Figure:
        """Each completed trial as a line through its parameters to its objective."""
        from optuna.visualization import plot_parallel_coordinate

        figure = plot_parallel_coordinate(
            self._study, params=list(params) if params else None, **self._target(metric)
        )
        return self._titled(figure)

    def plot_pareto_front(self) -> go.Figure:
        """The completed trials by their objectives, the Pareto front highlighted.

        Raises:
            ValueError: for a study of one objective.
        """
        from optuna.visualization import plot_pareto_front

        if not self.spec.multi_objective:
            raise ValueError(f"{self.name} has one objective: it has a best trial, no front")
        return self._titled(plot_pareto_front(self._study))

    def plot_importances(self) -> go.Figure:
        """How much each parameter explains of the objective (fANOVA over completed trials).

        Raises:
            ValueError: with fewer than two completed trials.
        """
        from optuna.visualization import plot_param_importances

        completed = self.summary.counts.get(TrialState.COMPLETE, 0)
        if completed < 2:
            raise ValueError(
                f"parameter importances need at least 2 completed trials; {self.name} has "
                f"{completed}"
            )
        return self._titled(plot_param_importances(self._study, **self._target(None)))

    def plot_intermediate_values(self) -> go.Figure:
        """The intermediate objective each trial reported, by step."""
        from optuna.visualization import plot_intermediate_values

        return self._titled(plot_intermediate_values(self._study))

    @property
    def _metric(self) -> str:
        return self.spec.primary.metric

    def _target(self, metric: str | None) -> dict[str, Any]:
        """optuna's ``target`` and ``target_name`` arguments for one objective."""
        metrics = [o.metric for o in self.spec.objectives]
        name = metric or self._metric
        if name not in metrics:
            raise ValueError(f"`{name}` is not an objective; give one of {', '.join(metrics)}")
        if len(metrics) == 1:
            return {"target_name": name}
        index = metrics.index(name)
        return {"target": lambda trial: trial.values[index], "target_name": name}

    def _titled(self, figure: go.Figure) -> go.Figure:
        title = figure.layout.title.text or ""
        figure.update_layout(title=f"{title} — {self.name}" if title else self.name)
        return figure

    # --- display -------------------------------------------------------------------------

    def _lines(self) -> list[str]:
        counts = ", ".join(
            f"{n} {state.value.lower()}" for state, n in self.summary.counts.items() if n
        )
        lines = [f"study {self.name}: {counts or 'no trials'}"]
        if self.summary.stop_reason is not None:
            lines.append(f"stopped: {self.summary.stop_reason.value}")
        front = self.front
        if self.spec.multi_objective and front:
            lines.append(f"Pareto front: {len(front)} trials")
        for best in front[:10]:
            params = ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
            values = ", ".join(f"{k}={format_value(v)}" for k, v in best.values.items())
            label = "  trial" if self.spec.multi_objective else "best: trial"
            lines.append(f"{label} {best.number}, {values} ({params})")
        return lines

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_html_(self) -> str:
        return "<br>".join(html.escape(line) for line in self._lines())


_TAIL = ("seconds", "attempts", "node", "cost", "engine", "run_id")


def load(study: str, *, dir: str = "tuner-studies") -> StudyResult:
    """The result of a study, finished or running, by its name, folder or spec file.

    Args:
        study: the study's name (looked up in ``dir``), its folder, or its spec file.
        dir: the folder that holds the studies (the spec's ``storage.dir``).

    Raises:
        StudyNotFoundError: if no study matches or it has no state yet.
    """
    from tuner.store import find_spec

    return StudyResult.read(find_spec(study, dir))


__all__ = ["BestTrial", "StudyResult", "load"]
