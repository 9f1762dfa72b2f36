"""What the ``tuner`` command prints about a study: counts, tables of trials, the plan."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuner.backend import FunctionEntry
from tuner.progress import format_value
from tuner.records import StudySummary, TrialRecord, TrialState
from tuner.secrets import redact_url
from tuner.spec import StudySpec


def print_results(
    console: Console, spec: StudySpec, summary: StudySummary, tracking_uri: str | None
) -> None:
    """The counts, the five best trials, and where to look next."""
    from tuner.store import load_study, location, records

    print_counts(console, summary)
    if spec.multi_objective:
        if summary.front:
            title = f"Pareto front of {spec.name} ({len(summary.front)} trials)"
            console.print(trials_table(spec, list(summary.front), title=title))
    else:
        trials = [
            t
            for t in records(load_study(spec))
            if t.state is TrialState.COMPLETE and not t.infeasible
        ]
        maximize = spec.maximize[0]
        trials.sort(key=lambda t: t.value if t.value is not None else 0.0, reverse=maximize)
        if trials:
            console.print(trials_table(spec, trials[:5], title=f"Best trials of {spec.name}"))
    where = redact_url(spec.storage.url) if spec.storage.url else location(spec).root
    console.print(f"Study state: {where}   (tuner status {spec.name} · tuner best {spec.name})")
    if tracking_uri:
        console.print(
            f"Compare the runs in MLflow:  [bold]tuner ui {spec.name}[/]  (its store: "
            f"{redact_url(tracking_uri)})",
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
    """Trials with their objective, parameters, seconds and the engine that proposed them."""
    names = list(spec.space)
    engines = any(record.engine for record in trials)
    table = Table(title=title)
    table.add_column("trial", justify="right")
    for objective in spec.objectives:
        table.add_column(objective.metric, justify="right", style="bold")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    if engines:
        table.add_column("engine")
    if spec.constraints:
        table.add_column("constraints", overflow="fold")
    count = len(spec.objectives)
    for record in trials:
        values = record.objective_values or ()
        cells = [f"{v:.6g}" for v in values] if len(values) == count else ["-"] * count
        row = [
            str(record.number),
            *cells,
            *(fmt(record.params.get(n, "")) for n in names),
            f"{record.duration:.1f}" if record.duration is not None else "-",
        ]
        if engines:
            row.append(record.engine or "-")
        if spec.constraints:
            row.append(f"broken: {record.infeasible}" if record.infeasible else "kept")
        table.add_row(*row)
    return table


def objectives_text(spec: StudySpec) -> str:
    """The objectives as a phrase: ``maximize val_accuracy, minimize latency_ms``."""
    return ", ".join(f"{o.direction.value} {o.metric}" for o in spec.objectives)


fmt = format_value
"""A value as a table cell."""


def print_plan(console: Console, spec: StudySpec) -> None:
    """What ``tuner run --dry-run`` shows: the study, its budget and first configurations."""
    import optuna

    from tuner.optuna_adapter import quiet
    from tuner.store import location
    from tuner.strategies import Problem, make_sampler

    seed = spec.strategy.seed if spec.strategy.seed is not None else 0
    problem = Problem(objectives=len(spec.objectives), constraints=len(spec.constraints))
    sampler = make_sampler(spec.strategy, spec.search_space, seed, problem)
    console.print(f"[bold]{spec.name}[/]: {objectives_text(spec)}")
    console.print(f"strategy: {spec.strategy.type} (engine: {sampler.engine})")
    console.print(f"budget: {spec.budget.model_dump(exclude_none=True)}")
    entry = spec.trial.entry
    what = entry.ref if isinstance(entry, FunctionEntry) else " ".join(entry.argv)
    console.print(f"trial: {what} on backend {spec.backend.type}")
    state = redact_url(spec.storage.url) if spec.storage.url else location(spec).journal
    console.print(f"state: {state}", markup=False)
    with quiet():
        preview = optuna.create_study(
            sampler=sampler, directions=[o.direction.value for o in spec.objectives]
        )
        for config in spec.seed_trials:  # run first, as the study runs them
            preview.enqueue_trial(dict(config))
    if spec.warm_start is not None:
        source = spec.warm_start.study or f"MLflow experiment {spec.warm_start.mlflow_experiment}"
        console.print(
            f"warm start: from {source}, read when the study starts; the proposals shown "
            "here are made without it",
            markup=False,
        )
    table = Table(title="First configurations")
    for name in spec.space:
        table.add_column(name, justify="right")
    for _ in range(min(5, spec.budget.max_trials or 5)):
        trial = preview.ask()
        params = spec.search_space.suggest(trial)
        table.add_row(*(fmt(params.get(n, "")) for n in spec.space))
    console.print(table)
    console.print("[green]dry run[/]: nothing was started")
