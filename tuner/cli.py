"""The ``tuner`` command: run, resume, validate, status, best, schema.

Exit codes: 0 done, 1 the study stopped on an error (failures, a backend), 2 a bad spec, study
reference or argument, 130 interrupted. Bad input is reported as one paragraph per problem,
never as a traceback, and before anything is created.

One job, the command line: each command is a few lines over the modules that do the work
(printing is :mod:`tuner.views`); its length is the number of commands and their options.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuner import views
from tuner.errors import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_INTERRUPTED, TunerError
from tuner.records import StopReason, TrialRecord, TrialState
from tuner.secrets import redact
from tuner.spec import SpecError, StudySpec, load_spec
from tuner.starter import StarterBackend, TrialKind

console = Console()
err = Console(stderr=True)


class _Group(typer.core.TyperGroup):
    """Reports a bad command line as one ``error:`` paragraph instead of a usage panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Runs the command line; exits 2 with one paragraph for a usage error."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            err.print("aborted", highlight=False)
            sys.exit(EXIT_ERROR)
        except typer.TyperException as exc:  # typer's own copy of click's usage errors
            exit_code = int(getattr(exc, "exit_code", EXIT_BAD_INPUT))
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
                sys.exit(exit_code)
            context = getattr(exc, "ctx", None)
            command = context.command_path if context is not None else "tuner"
            format_message = getattr(exc, "format_message", None)
            message = " ".join(str(format_message() if format_message else exc).split())
            err.print(
                f"[bold red]error:[/] {escape(command)}: {escape(message)} "
                f"(see `{escape(command)} --help`)",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="tuner",
    help="Hyperparameter tuning: optuna strategies on Ray or SageMaker, tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
)

SpecArg = Annotated[Path, typer.Argument(help="The study spec (YAML).", show_default=False)]
StudyArg = Annotated[
    str,
    typer.Argument(help="The study: its spec file, its folder, or its name.", show_default=False),
]


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Prints ``message`` as one ``error:`` paragraph (never as markup) and exits ``code``."""
    text = " ".join(message.split())
    err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _spec_problems(exc: SpecError, what: str) -> NoReturn:
    """One line naming the spec, then one paragraph (``file:line:col: field: fix``) per issue."""
    count = len(exc.issues)
    err.print(
        f"[bold red]{escape(what)}: {count} problem{'s' * (count != 1)} in the spec[/]",
        highlight=False,
        soft_wrap=True,
    )
    for issue in exc.issues:
        err.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _unexpected(exc: Exception, what: str) -> NoReturn:
    """The last resort for a failure tuner did not foresee while reading its input."""
    _fail(
        f"{what}: tuner could not read it ({type(exc).__name__}: {exc}). This is a bug in "
        "tuner, not in your input: please report it with the file that caused it; run with "
        "`python -X dev -m tuner.cli` to see where it happened"
    )


def _load(path: Path) -> StudySpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        _spec_problems(exc, str(path))
    except Exception as exc:  # KeyboardInterrupt is no Exception: Ctrl-C still stops tuner
        _unexpected(exc, str(path))


def _find(study: str) -> StudySpec:
    from tuner.store import StudyNotFoundError, find_spec

    try:
        return find_spec(study)
    except SpecError as exc:
        _spec_problems(exc, f"study {study}")
    except StudyNotFoundError as exc:
        _fail(str(exc))
    except Exception as exc:
        _unexpected(exc, f"study {study}")


def _load_study(spec: StudySpec) -> Any:
    from tuner.store import StorageError, StudyNotFoundError, load_study

    try:
        return load_study(spec)
    except StudyNotFoundError as exc:
        _fail(str(exc))
    except StorageError as exc:
        _fail(str(exc), EXIT_ERROR)


def _with_budget(spec: StudySpec, **overrides: Any) -> StudySpec:
    from pydantic import ValidationError

    from tuner.spec import MAX_INT, Budget

    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return spec
    try:
        budget = Budget.model_validate({**spec.budget.model_dump(), **changes})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        _fail(
            f"bad `--{name.replace('_', '-')} {changes.get(name)}`: {error['msg']}; give a whole "
            f"number from 1 to {MAX_INT}"
        )
    return spec.model_copy(update={"budget": budget})


@app.callback()
def _setup() -> None:
    """Quiets library chatter (optuna's and MLflow's INFO lines) for the whole command."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def run(
    spec_path: SpecArg,
    max_trials: Annotated[int | None, typer.Option(help="Override budget.max_trials.")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Override budget.max_concurrent.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the plan; run nothing.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Delete the study's earlier trials first (MLflow runs stay)."
        ),
    ] = False,
) -> None:
    """Run a study from its spec."""
    spec = _with_budget(_load(spec_path), max_trials=max_trials, max_concurrent=max_concurrent)
    if dry_run:
        views.print_plan(console, spec)
        return
    if overwrite:
        from tuner.store import delete_study

        try:
            if delete_study(spec):
                console.print(f"deleted the earlier trials of study [bold]{spec.name}[/]")
        except TunerError as exc:
            _fail(str(exc), exc.exit_code)
    _run_study(spec, resume=False)


@app.command()
def resume(
    study: StudyArg,
    max_trials: Annotated[
        int | None,
        typer.Option(help="Run this many more trials (on top of those finished so far)."),
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Override budget.max_concurrent.")
    ] = None,
    spec_path: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Continue with this changed spec: a wider range, a new parameter with a "
            "default, a new choice, another budget or backend (changes that would alter what "
            "the finished trials meant are refused).",
        ),
    ] = None,
) -> None:
    """Continue a study: completed trials are kept, interrupted ones run again."""
    found = _find(study)
    spec = found
    if spec_path is not None:
        spec = _load(spec_path)
        if spec.name != found.name:
            _fail(
                f"{spec_path} names study `{spec.name}`, not `{found.name}`; set "
                f"`name: {found.name}` to continue it, or run it as a new study"
            )
        _show_changes(found, spec)
    more = None
    if max_trials is not None:
        more = _finished_trials(spec) + max_trials if max_trials > 0 else max_trials
    spec = _with_budget(spec, max_trials=more, max_concurrent=max_concurrent)
    _check_trial_imports(spec)
    _run_study(spec, resume=True)


def _check_trial_imports(spec: StudySpec) -> None:
    """Says once, before any trial, that the study's function does not import (rather than
    failing every trial): a lambda, a closure or a function of a notebook or a script."""
    from tuner.backend import FunctionEntry
    from tuner.functions import is_made_in_place, resolve_function

    function, entry = spec.trial.function, spec.trial.entry
    if not isinstance(function, str) or not isinstance(entry, FunctionEntry):
        return
    # A script's `__main__` is not the CLI's (which may even have a function of that name).
    why = None
    if is_made_in_place(function):
        why = (
            f"its trial function `{function}` was defined in a notebook or a script, where "
            "only Python can give it again: `tuner.Study(..., trial=fn).run(resume=True)` "
            "there, or move it to a module and resume with `--spec` naming "
            "`package.module:function`"
        )
    else:
        try:
            resolve_function(function, entry.search_path)
        except ValueError as exc:
            why = str(exc)
    if why is not None:
        _fail(f"study `{spec.name}` cannot resume: {why}")


def _finished_trials(spec: StudySpec) -> int:
    from tuner.store import records

    return sum(1 for t in records(_load_study(spec)) if t.state.is_finished())


def _show_changes(before: StudySpec, after: StudySpec) -> None:
    from tuner.evolve import SpecChangeError, check_evolution
    from tuner.store import records

    try:
        changes = check_evolution(before, after, records(_load_study(before)))
    except SpecChangeError as exc:
        _fail(str(exc))
    for change in changes:
        console.print(f"  changed {change}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def validate(spec_path: SpecArg) -> None:
    """Check a spec and say what is wrong with it, where, and how to fix it."""
    spec = _load(spec_path)
    console.print(f"[green]ok[/]: {spec_path} defines study [bold]{spec.name}[/]", highlight=False)


@app.command()
def status(study: StudyArg) -> None:
    """Show a study's progress: counts per state, the best trial, recent failures."""
    from tuner.store import records, summarise
    from tuner.warm_start import stored_report

    spec = _find(study)
    optuna_study = _load_study(spec)
    trials = records(optuna_study)
    summary = summarise(spec, trials)
    views.print_counts(console, summary)
    if (warm := stored_report(optuna_study.user_attrs)) is not None:
        console.print(f"warm start: {warm.describe()}", markup=False, highlight=False)
    environment = {**dict(getattr(spec.backend, "environment", None) or {}), **spec.trial.env}
    if environment:
        shown = ", ".join(f"{k}={v}" for k, v in redact(environment).items())
        console.print(f"trial environment: {shown}", markup=False, highlight=False, soft_wrap=True)
    if summary.best is not None:
        console.print(views.trials_table(spec, [summary.best], title="Best trial"))
    failed = [t for t in trials if t.state is TrialState.FAILED][-5:]
    if failed:
        table = Table(title="Recent failures")
        table.add_column("trial", justify="right")
        table.add_column("error", overflow="fold")
        for record in failed:
            table.add_row(str(record.number), record.error or "")
        console.print(table)


@app.command()
def best(
    study: StudyArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the best trial of a study."""
    from tuner.store import records, summarise

    spec = _find(study)
    summary = summarise(spec, records(_load_study(spec)))
    front = list(summary.front)
    if not front:
        _fail(f"study `{spec.name}` has no completed feasible trial yet", EXIT_ERROR)
    if as_json:

        def entry(record: TrialRecord) -> dict[str, Any]:
            values = record.objective_values or ()
            return {
                "trial": record.number,
                "values": {o.metric: v for o, v in zip(spec.objectives, values, strict=False)},
                "params": dict(record.params),
                "metrics": dict(record.metrics),
                "mlflow_run_id": record.mlflow_run_id,
            }

        payload: dict[str, Any] = {"study": spec.name}
        if spec.multi_objective:
            payload["objectives"] = [
                {"metric": o.metric, "direction": o.direction.value} for o in spec.objectives
            ]
            payload["front"] = [entry(record) for record in front]
        else:
            record = front[0]
            payload |= {
                "trial": record.number,
                "metric": spec.primary.metric,
                "direction": spec.primary.direction.value,
                "value": record.value,
                "params": dict(record.params),
                "metrics": dict(record.metrics),
                "mlflow_run_id": record.mlflow_run_id,
            }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    title = (
        f"Pareto front of {spec.name} ({len(front)} trials: {views.objectives_text(spec)})"
        if spec.multi_objective
        else f"Best trial of {spec.name}"
    )
    console.print(views.trials_table(spec, front, title=title))


@app.command()
def sync(study: StudyArg) -> None:
    """Make a study's MLflow runs equal its store: write what they miss, repair what differs."""
    from tuner.sync import sync_study

    spec = _find(study)
    try:
        report = sync_study(spec)
    except TunerError as exc:
        _fail(str(exc), exc.exit_code)
    for repair in report.repairs:
        console.print(f"  repaired {repair}", highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{spec.name}[/]: replayed {report.replayed} saved writes, "
        f"repaired {len(report.repairs)} differences"
        + (f"; [red]{report.unwritten} writes still pending[/]" if report.unwritten else "")
        + ("" if report.repairs or report.unwritten else "; MLflow equals the store"),
        highlight=False,
    )
    if report.unwritten:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def ui(
    study: StudyArg,
    port: Annotated[int, typer.Option(help="Port of the local MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Address the UI listens on.")] = "127.0.0.1",
    browser: Annotated[
        bool,
        typer.Option(
            "--browser/--no-browser", help="Open the page in a web browser, when there is one."
        ),
    ] = True,
) -> None:
    """Open the MLflow UI on a study's runs: a local UI on its tracking store, or its server."""
    from tuner import mlflow_ui
    from tuner.records import Attr
    from tuner.tracking import resolve_tracking_uri

    spec = _find(study)
    if spec.tracking.mlflow is None:
        _fail(f"study `{spec.name}` has MLflow tracking turned off")
    stored = _load_study(spec).user_attrs.get(Attr.TRACKING_URI)
    uri = stored or resolve_tracking_uri(spec.tracking.mlflow.tracking_uri)
    experiment = spec.tracking.mlflow.experiment or spec.name

    def show(server: str, ending: str = "") -> None:
        url = mlflow_ui.runs_view_url(server, mlflow_ui.experiment_id(server, experiment))
        console.print(
            f"MLflow UI for [bold]{escape(spec.name)}[/] (experiment {escape(experiment)}): "
            f"{url}{ending}",
            highlight=False,
            soft_wrap=True,  # the address on one line, to copy or click
        )
        if browser:
            mlflow_ui.open_in_browser(url)

    if uri.startswith(("http://", "https://")):
        show(uri)
        return
    server = mlflow_ui.local_address(host, port)
    process = mlflow_ui.start_server(uri, host, port)
    try:
        with mlflow_ui.interrupted_on_termination():
            if not mlflow_ui.wait_until_up(server, process):
                _fail(
                    f"the MLflow UI did not start on {host}:{port} (see its output above); if "
                    "the port is taken, choose another with `--port`",
                    EXIT_ERROR,
                )
            show(server, " — Ctrl-C stops it")
            raise typer.Exit(process.wait())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        mlflow_ui.stop_server(process)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the study spec (for editor completion)."""
    from tuner.spec import spec_json_schema

    sys.stdout.write(json.dumps(spec_json_schema(), indent=2) + "\n")


@app.command()
def init(
    folder: Annotated[
        Path, typer.Argument(help="Where to write study.yaml and train.py (made if missing).")
    ] = Path("."),
    backend: Annotated[
        StarterBackend, typer.Option(help="Where the trials run.")
    ] = StarterBackend.RAY,
    trial: Annotated[
        TrialKind | None,
        typer.Option(
            help="A Python function or a program (command); default: function on ray, "
            "command on sagemaker.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The study's name; default: the folder's name.", show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite study.yaml and train.py if they exist.")
    ] = False,
) -> None:
    """Write a commented starter spec and training script that validate and run as they are."""
    from tuner.starter import (
        StarterError,
        default_name,
        next_commands,
        render_starter,
        write_starter,
    )

    try:
        starter = render_starter(backend, trial, name or default_name(folder))
        written = write_starter(folder, starter, force=force)
    except StarterError as exc:
        _fail(str(exc), exc.exit_code)
    console.print(
        f"wrote {' and '.join(escape(str(path)) for path in written)}: study "
        f"[bold]{escape(starter.name)}[/], a {starter.trial.value} trial on "
        f"{starter.backend.value}",
        highlight=False,
        soft_wrap=True,
    )
    console.print("next:")
    for command in next_commands(folder, starter):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)


# --- running ---------------------------------------------------------------------------------


def _run_study(spec: StudySpec, *, resume: bool) -> None:
    from tuner.orchestrator import Orchestrator
    from tuner.progress import ProgressDisplay

    display = ProgressDisplay(console)
    study = Orchestrator(spec, listeners=[display])
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    # Started in the background by a script (`tuner run ... &`), a process inherits SIGINT
    # ignored: Ctrl-C and `kill -INT` must still stop the study cleanly.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        study.run(resume=resume)
    except TunerError as exc:  # each says what to do; its class says how tuner exits
        display.close()
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        display.close()
        err.print(
            f"[yellow]interrupted[/]: running trials were cancelled and queued again; "
            f"continue with `tuner resume {spec.name}`"
        )
        if study.summary is not None:
            views.print_results(console, spec, study.summary, study.tracking_uri)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    assert study.summary is not None
    views.print_results(console, spec, study.summary, study.tracking_uri)
    if study.summary.stop_reason is StopReason.MAX_FAILURES:
        _fail(study.summary.message or "too many trials failed", EXIT_ERROR)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The console-script entry point."""
    app()


if __name__ == "__main__":
    main()
