"""End-of-study artifacts for the parent MLflow run: plots (PNG and HTML) and the trials table.

Built from the optuna study with optuna's own visualisation: optimization history, parallel
coordinates, parameter importances and intermediate values, each as a static PNG (matplotlib)
and together in one self-contained interactive HTML page (plotly).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

_log = logging.getLogger(__name__)

PLOTS = (
    "pareto_front",
    "optimization_history",
    "parallel_coordinate",
    "param_importances",
    "intermediate_values",
)
_TARGETED = ("optimization_history", "parallel_coordinate", "param_importances")
"""Plots of one objective: given the first objective's values in a study of several."""


def _usable(study: optuna.Study, name: str) -> bool:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if name == "pareto_front":
        return len(study.directions) > 1 and len(complete) >= 1
    if name == "param_importances":
        return len(complete) >= 2 and len({k for t in complete for k in t.params}) >= 1
    if name == "intermediate_values":
        return any(t.intermediate_values for t in study.get_trials(deepcopy=False))
    return len(complete) >= 1


def write_study_artifacts(client: MlflowClient, run_id: str, study: optuna.Study) -> list[str]:
    """Logs the trials table and every plot that the study's own trials allow (not a warm
    start's); returns the paths."""
    from tuner.optuna_adapter import own_trials

    plotted = own_trials(study, for_plots=True)
    study = own_trials(study)
    written: list[str] = []
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
    client.log_text(run_id, frame.to_csv(index=False), "trials.csv")
    written.append("trials.csv")
    if len(study.directions) > 1:
        client.log_text(run_id, _front_table(study), "pareto.csv")
        written.append("pareto.csv")
    names = [name for name in PLOTS if _usable(study, name)]
    written += _static(client, run_id, plotted, names)
    written += _interactive(client, run_id, plotted, names)
    return written


def _static(client: MlflowClient, run_id: str, study: optuna.Study, names: list[str]) -> list[str]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_mpl
    except ImportError:
        _log.info("matplotlib is not installed: no PNG plots (install hpo-tuner[plots])")
        return []
    from optuna.exceptions import ExperimentalWarning

    written = []
    for name in names:
        plot: Callable[..., Any] = getattr(optuna_mpl, f"plot_{name}")
        try:
            path = f"plots/{name}.png"
            with warnings.catch_warnings():
                # Degenerate axes (one value tried) are expected in small studies.
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                figure = _figure_of(plot(study, **_arguments(study, name)))
                client.log_figure(run_id, figure, path)
            plt.close(figure)
            written.append(path)
        except Exception as exc:  # a plot the data cannot make must not lose the others
            _log.info("no %s plot: %s", name, exc)
    return written


def _figure_of(plotted: Any) -> Any:
    if hasattr(plotted, "savefig"):
        return plotted
    axes = plotted.flat[0] if hasattr(plotted, "flat") else plotted
    return axes.get_figure()


def _interactive(
    client: MlflowClient, run_id: str, study: optuna.Study, names: list[str]
) -> list[str]:
    try:
        import optuna.visualization as optuna_plotly
    except ImportError:
        return []
    parts: list[str] = []
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # small studies make degenerate plots
                figure = getattr(optuna_plotly, f"plot_{name}")(study, **_arguments(study, name))
        except Exception as exc:
            _log.info("no interactive %s plot: %s", name, exc)
            continue
        parts.append(figure.to_html(full_html=False, include_plotlyjs=not parts))
    if not parts:
        return []
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{study.study_name}</title></head><body>{''.join(parts)}</body></html>"
    )
    client.log_text(run_id, page, "plots/plots.html")
    return ["plots/plots.html"]


def _arguments(study: optuna.Study, name: str) -> dict[str, Any]:
    """A plot's arguments: the objective named by its metric (the first one, in a study of
    several)."""
    if name not in _TARGETED:
        return {}
    names = study.metric_names or ["objective"]
    if len(study.directions) < 2:
        return {"target_name": names[0]}
    return {"target": lambda trial: trial.values[0], "target_name": names[0]}


def _front_table(study: optuna.Study) -> str:
    """The Pareto front as CSV: trial number, each objective's value, the parameters."""
    import csv
    import io

    from tuner.mirror import pareto_numbers
    from tuner.store import records

    trials = records(study)
    front = pareto_numbers(study, trials) or set()
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    out = io.StringIO()
    writer = csv.writer(out)
    metrics = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    writer.writerow(["number", *metrics, *names])
    for trial in trials:
        if trial.number in front:
            values = trial.objective_values or ()
            writer.writerow([trial.number, *values, *(trial.params.get(n, "") for n in names)])
    return out.getvalue()
