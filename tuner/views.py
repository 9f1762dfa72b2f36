"""What the ``tuner`` command prints about a study: counts, tables of trials, the plan."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tuner.backend import FunctionEntry
from tuner.records import StudySummary, TrialRecord, TrialState
from tuner.secrets import redact_url
from tuner.spec import StudySpec


def print_results(
    console: Console, spec: StudySpec, summary: StudySummary, tracking_uri: str | None
) -> None:
    """The counts, the five best trials, and where to look next."""
    from tuner.store import load_study, location, records

    print_counts(console, summary)
    trials = [t for t in records(load_study(spec)) if t.state is TrialState.COMPLETE]
    maximize = spec.objective.direction.value == "maximize"
    trials.sort(key=lambda t: t.value if t.value is not None else 0.0, reverse=maximize)
    if trials:
        console.print(trials_table(spec, trials[:5], title=f"Best trials of {spec.name}"))
    where = redact_url(spec.storage.url) if spec.storage.url else location(spec).root
    console.print(f"Study state: {where}   (tuner status {spec.name} · tuner best {spec.name})")
    if tracking_uri:
        console.print(
            f"Compare the runs in MLflow:  [bold]mlflow ui --backend-store-uri {tracking_uri}[/]",
            soft_wrap=True,
        )


def print_counts(console: Console, summary: StudySummary) -> None:
    """One line: counts per state, cost, and why the study stopped."""
    counts = ", ".join(f"{n} {state.value.lower()}" for state, n in summary.counts.items() if n)
    reason = f" — stopped: {summary.stop_reason.value}" if summary.stop_reason else ""
    cost = ""
    if summary.cost is not None:
        cost = f" — cost ${summary.cost:,.2f}"
        saved = summary.totals.get("sagemaker.spot_savings_usd")
        if saved:
            cost += f" (spot saved ${saved:,.2f})"
    console.print(
        f"[bold]{summary.name}[/]: {counts or 'no trials'}{cost}{reason}", highlight=False
    )


def trials_table(spec: StudySpec, trials: list[TrialRecord], *, title: str) -> Table:
    """Trials with their objective, parameters and seconds."""
    names = list(spec.space)
    table = Table(title=title)
    table.add_column("trial", justify="right")
    table.add_column(spec.objective.metric, justify="right", style="bold")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    for record in trials:
        table.add_row(
            str(record.number),
            f"{record.value:.6g}" if record.value is not None else "-",
            *(fmt(record.params.get(n, "")) for n in names),
            f"{record.duration:.1f}" if record.duration is not None else "-",
        )
    return table


def fmt(value: Any) -> str:
    """A value as a table cell."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_plan(console: Console, spec: StudySpec) -> None:
    """What ``tuner run --dry-run`` shows: the study, its budget and first configurations."""
    import optuna

    from tuner.store import location
    from tuner.strategies import make_sampler

    seed = spec.strategy.seed if spec.strategy.seed is not None else 0
    sampler = make_sampler(spec.strategy, spec.search_space, seed)
    console.print(f"[bold]{spec.name}[/]: {spec.objective.direction.value} {spec.objective.metric}")
    console.print(f"strategy: {spec.strategy.type} (engine: {sampler.engine})")
    console.print(f"budget: {spec.budget.model_dump(exclude_none=True)}")
    entry = spec.trial.entry
    what = entry.ref if isinstance(entry, FunctionEntry) else " ".join(entry.argv)
    console.print(f"trial: {what} on backend {spec.backend.type}")
    state = redact_url(spec.storage.url) if spec.storage.url else location(spec).journal
    console.print(f"state: {state}", markup=False)
    preview = optuna.create_study(sampler=sampler, direction=spec.objective.direction.value)
    table = Table(title="First configurations")
    for name in spec.space:
        table.add_column(name, justify="right")
    for _ in range(min(5, spec.budget.max_trials or 5)):
        trial = preview.ask()
        params = spec.search_space.suggest(trial)
        table.add_row(*(fmt(params.get(n, "")) for n in spec.space))
    console.print(table)
    console.print("[green]dry run[/]: nothing was started")
