"""The crash-test harness: kill `tuner` where it hurts, resume it, check nothing was harmed.

A :class:`CrashStudy` is one small study in its own folder, run as real `tuner` processes (each
in its own session, SIGINT at its default whatever the parent ignores). The harness kills a run
at a named failpoint (``TUNER_FAILPOINTS``, see ``tuner/failpoints.py``) or at a random moment
(SIGKILL to the whole process group), resumes it until it ends, and then checks:

1. the budget's trials finished (``max_trials`` COMPLETE, or COMPLETE + PRUNED with a pruner);
2. none lost: a trial the store had COMPLETE at any kill is still COMPLETE with the same value;
3. none run twice: each COMPLETE trial has exactly one execution that reached its end (the
   trial function ``trial_functions:crash_trial`` appends one line per such execution), with
   the same params;
4. the MLflow mirror equals the store (``mirror.py``, an independent checker).

``tests/crash/`` and ``benchmarks/crash.py`` share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror import load_store, mirror_divergences

from conftest import TESTS, subprocess_env

FUNCTION = "trial_functions:crash_trial"
KILLED = -signal.SIGKILL


def _default_sigint() -> None:
    """Runs in the child before exec: SIGINT at its default, even if our parent ignores it
    (a shell's background job, nohup), so `tuner` installs its own Ctrl-C handling."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(frozen=True)
class Outcome:
    """One `tuner` process, once it has ended."""

    command: tuple[str, ...]
    returncode: int
    output: str
    failpoints: str | None = None
    killed_by_harness: bool = False

    @property
    def killed(self) -> bool:
        return self.returncode == KILLED

    def describe(self) -> str:
        how = f" (TUNER_FAILPOINTS={self.failpoints})" if self.failpoints else ""
        return f"`tuner {' '.join(self.command)}`{how} -> {self.returncode}"


@dataclass
class Verdict:
    """What the checks found after a scenario; ``ok`` when every invariant holds."""

    scenario: str
    kill_point: str
    expected: int
    finished: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    divergences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Anything else: a count off, an execution missing, a process that failed."""
    seconds: float = 0.0
    processes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.divergences or self.problems)

    def report(self) -> str:
        lines = [
            f"{self.scenario} [{self.kill_point}]: {self.finished}/{self.expected} finished, "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated, "
            f"{len(self.divergences)} mirror divergences",
            *(f"  process: {p.describe()}" for p in self.processes),
            *(f"  lost: {x}" for x in self.lost),
            *(f"  duplicated: {x}" for x in self.duplicated),
            *(f"  mirror: {x}" for x in self.divergences),
            *(f"  problem: {x}" for x in self.problems),
        ]
        failed = [p for p in self.processes if p.returncode not in (0, KILLED)]
        lines += [f"--- output of {p.describe()}\n{p.output[-3000:]}" for p in failed]
        return "\n".join(lines)


_TEMPLATE: Path | None = None


def fresh_sqlite_uri(folder: Path) -> str:
    """A new MLflow sqlite store in ``folder``, copied from one made once (MLflow's schema
    migrations take seconds; a copy takes none)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow.tracking import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="crash-mlflow-")) / "template.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _TEMPLATE = template
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "mlflow.db"
    shutil.copyfile(_TEMPLATE, target)
    return f"sqlite:///{target}"


class CrashStudy:
    """One small study of deterministic trials in ``folder``, and the `tuner` runs on it.

    Args:
        folder: the working directory of every `tuner` process (the study lands in
            ``folder/tuner-studies/<name>``).
        name: the study's name (its MLflow experiment too).
        tracking_uri: the MLflow store; ``None`` turns MLflow off (invariant 4 is skipped).
        backend: the spec's ``backend`` section.
        trials: ``budget.max_trials``.
        concurrent: ``budget.max_concurrent``.
        steps: intermediate values each trial reports (one every ``pause`` seconds).
        pruner: the spec's ``pruner`` section; the space then has a ``bad`` categorical whose
            true half is 10 worse at every step.
        seed: the random strategy's seed.
        env: more environment for every `tuner` process (and, on Ray, for the trials).
        trial: more keys of the spec's ``trial`` section (a ``command`` replaces the function).
    """

    def __init__(
        self,
        folder: Path,
        name: str,
        *,
        tracking_uri: str | None,
        backend: Mapping[str, Any] | None = None,
        trials: int = 8,
        concurrent: int = 2,
        steps: int = 3,
        pause: float = 0.1,
        pruner: Mapping[str, Any] | None = None,
        seed: int = 0,
        env: Mapping[str, str] | None = None,
        trial: Mapping[str, Any] | None = None,
    ):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.name = name
        self.tracking_uri = tracking_uri
        self.trials = trials
        self.pruning = pruner is not None
        self.executions_file = folder / "executions.jsonl"
        self.pids_file = folder / "pids.jsonl"
        self.env = {"CRASH_EXECUTIONS": str(self.executions_file), **(env or {})}
        self.processes: list[Outcome] = []
        self.complete_at_kills: dict[int, float] = {}
        """Trials the store had COMPLETE at any kill, with their values (the first seen)."""
        space: dict[str, Any] = {
            "x": {"type": "float", "low": -2.0, "high": 2.0},
            "steps": {"type": "categorical", "choices": [steps]},
            "pause": {"type": "categorical", "choices": [pause]},
        }
        if pruner is not None:
            space["bad"] = {"type": "categorical", "choices": [False, True]}
        # A command trial (SageMaker) replaces the function.
        entry = {} if "command" in (trial or {}) else {"function": FUNCTION, "path": [str(TESTS)]}
        spec: dict[str, Any] = {
            "name": name,
            "objective": {"metric": "loss", "direction": "minimize"},
            "space": space,
            "strategy": {"type": "random", "seed": seed},
            "budget": {"max_trials": trials, "max_concurrent": concurrent},
            "trial": {**entry, "env": self.env, **(trial or {})},
            "backend": dict(backend or {"type": "inprocess"}),
            "tracking": {
                "mlflow": None
                if tracking_uri is None
                else {"tracking_uri": tracking_uri, "experiment": name}
            },
        }
        if pruner is not None:
            spec["pruner"] = dict(pruner)
        self.spec_file = folder / "study.yaml"
        self.spec_file.write_text(json.dumps(spec, indent=2))  # JSON is YAML

    @property
    def journal(self) -> Path:
        return self.folder / "tuner-studies" / self.name / "journal.log"

    # --- running ---------------------------------------------------------------------------

    def start(self, *args: str, failpoints: str | None = None) -> subprocess.Popen[str]:
        """A `tuner` process in its own session (its process group is the harness's to kill)."""
        env = {**subprocess_env(), **self.env}
        env.pop("TUNER_FAILPOINTS", None)
        if failpoints:
            env["TUNER_FAILPOINTS"] = failpoints
        return subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", *args],
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )

    def wait(
        self,
        process: subprocess.Popen[str],
        args: Sequence[str],
        failpoints: str | None = None,
        *,
        killed_by_harness: bool = False,
        timeout: float = 240.0,
    ) -> Outcome:
        """Waits for ``process``; then kills what is left of its group (a killed orchestrator's
        embedded cluster dies with it, as it would with the machine) and notes the store."""
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            output, _ = process.communicate()
            output += f"\n[harness: killed after {timeout:g}s]"
        kill_group(process)
        outcome = Outcome(tuple(args), process.returncode, output, failpoints, killed_by_harness)
        self.processes.append(outcome)
        if outcome.killed:
            for number, value in self.complete_values().items():
                self.complete_at_kills.setdefault(number, value)
        return outcome

    def run(self, *args: str, failpoints: str | None = None, timeout: float = 240.0) -> Outcome:
        """Runs `tuner args` to its end (or its failpoint)."""
        process = self.start(*args, failpoints=failpoints)
        return self.wait(process, args, failpoints, timeout=timeout)

    def first_run(self, failpoints: str | None = None) -> Outcome:
        return self.run("run", str(self.spec_file), failpoints=failpoints)

    def run_killed_at_random(self, seed: int, span: float) -> Outcome:
        """`tuner run`, SIGKILLed (whole group) a random moment within ``span`` seconds after
        its study is open (seeded: the same seed, the same delay)."""
        delay = random.Random(seed).uniform(0.0, span)
        process = self.start("run", str(self.spec_file))
        wait_until(lambda: self.journal.exists() or process.poll() is not None, 120)
        time.sleep(delay)
        killed = process.poll() is None
        kill_group(process)
        return self.wait(process, ("run", str(self.spec_file)), killed_by_harness=killed)

    def run_until(
        self, condition: Callable[[], bool], then: Callable[[], None], limit: float = 120.0
    ) -> Outcome:
        """`tuner run`; when ``condition()`` holds, ``then()`` (kill something); to its end."""
        args = ("run", str(self.spec_file))
        process = self.start(*args)
        wait_until(lambda: process.poll() is not None or condition(), limit)
        if process.poll() is None:
            then()
        return self.wait(process, args)

    def kill_now(self, process: subprocess.Popen[str]) -> None:
        kill_group(process)

    def recover(self, kills: Sequence[str] = (), rounds: int = 3) -> Outcome:
        """`tuner resume` (killed again at each of ``kills`` first) until one ends by itself."""
        outcome = None
        for failpoints in kills:
            outcome = self.run("resume", self.name, failpoints=failpoints)
            if not outcome.killed:
                return outcome
        for _ in range(rounds):
            outcome = self.run("resume", self.name)
            if not outcome.killed:
                break
        assert outcome is not None
        return outcome

    # --- reading what happened -------------------------------------------------------------

    def store(self) -> Any:
        return load_store(self.name, self.journal)

    def complete_values(self) -> dict[int, float]:
        """COMPLETE trials in the store and their values (none before the study exists)."""
        from optuna.trial import TrialState

        if not self.journal.exists():
            return {}
        try:
            study = self.store()
        except KeyError:
            return {}
        return {
            t.number: float(t.value)
            for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE
        }

    def count(self, state: str) -> int:
        """Trials in ``state`` (an optuna state name) now; 0 before the study exists."""
        if not self.journal.exists():
            return 0
        try:
            trials = self.store().get_trials(deepcopy=False)
        except KeyError:
            return 0
        return sum(t.state.name == state for t in trials)

    def executions(self) -> list[dict[str, Any]]:
        if not self.executions_file.exists():
            return []
        lines = self.executions_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def worker_pids(self) -> list[tuple[int, int]]:
        """(trial, pid) of every attempt that started, when ``CRASH_PIDS`` is set."""
        if not self.pids_file.exists():
            return []
        rows = [json.loads(line) for line in self.pids_file.read_text().splitlines() if line]
        return [(int(r["trial"]), int(r["pid"])) for r in rows]

    # --- the invariants --------------------------------------------------------------------

    def verdict(self, scenario: str, kill_point: str, started: float) -> Verdict:
        """Checks the four invariants on the study as it is now."""
        from optuna.trial import TrialState

        verdict = Verdict(scenario, kill_point, self.trials, 0, processes=list(self.processes))
        last = self.processes[-1] if self.processes else None
        if last is None or last.returncode != 0:
            verdict.problems.append(
                f"the last process did not end cleanly: {last.describe() if last else 'none'}"
            )
        if not self.journal.exists():
            verdict.problems.append(f"the study has no store ({self.journal} is missing)")
            verdict.seconds = time.monotonic() - started
            return verdict
        trials = self.store().get_trials(deepcopy=False)
        complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        verdict.finished = len(complete) + (len(pruned) if self.pruning else 0)
        if verdict.finished != self.trials:
            verdict.problems.append(
                f"{len(complete)} COMPLETE and {len(pruned)} PRUNED trials; expected "
                f"{self.trials} {'finished' if self.pruning else 'COMPLETE'}"
            )
        failed = [
            t.number
            for t in trials
            if t.state == TrialState.FAIL and not t.user_attrs.get("tuner.cancelled")
        ]
        if failed:
            verdict.problems.append(f"trials {failed} FAILED (the trial function never fails)")
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        if running:
            verdict.problems.append(f"trials {running} are still RUNNING in the store")

        for number, value in sorted(self.complete_at_kills.items()):
            now = complete.get(number)
            if now is None:
                verdict.lost.append(f"trial {number} was COMPLETE at a kill, now is not")
            elif now.value != value:
                verdict.lost.append(f"trial {number} was {value} at a kill, now {now.value}")

        by_trial: dict[int, list[dict[str, Any]]] = {}
        for row in self.executions():
            by_trial.setdefault(int(row["trial"]), []).append(row)
        for number, trial in sorted(complete.items()):
            runs = by_trial.get(number, [])
            if len(runs) > 1:
                pids = [r["pid"] for r in runs]
                verdict.duplicated.append(f"trial {number} ran to its end {len(runs)} times {pids}")
            elif not runs:
                verdict.problems.append(f"trial {number} is COMPLETE but no execution finished")
            elif runs[0]["params"] != dict(trial.params):
                verdict.problems.append(
                    f"trial {number} is COMPLETE with {dict(trial.params)} but its execution "
                    f"ran {runs[0]['params']}"
                )

        if self.tracking_uri is not None:
            verdict.divergences = mirror_divergences(
                self.name, self.tracking_uri, self.name, "loss", journal=self.journal
            )
        verdict.seconds = time.monotonic() - started
        return verdict


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILLs the process group ``process`` leads (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_until(condition: Callable[[], bool], limit: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def failpoint_scenario(
    folder: Path,
    failpoints: str,
    *,
    then: Sequence[str] = (),
    scenario: str | None = None,
    **study: Any,
) -> Verdict:
    """The common case: `tuner run` dies at ``failpoints``, `tuner resume` (killed again at
    each of ``then``) runs it to the end; the verdict on what is left.

    The run must really die at the point (a point never reached checks nothing)."""
    started = time.monotonic()
    crash = CrashStudy(folder, study.pop("name", "crash"), **study)
    crash.first_run(failpoints)
    crash.recover(then)
    kill_point = " then ".join([failpoints, *then])
    verdict = crash.verdict(scenario or failpoints, kill_point, started)
    for process in crash.processes:
        if process.failpoints and not process.killed:
            verdict.problems.append(f"the point was never reached: {process.describe()}")
    return verdict


def random_scenario(folder: Path, seed: int, span: float = 3.0, **study: Any) -> Verdict:
    """`tuner run` SIGKILLed at a random moment (seeded), then resumed to the end."""
    started = time.monotonic()
    crash = CrashStudy(folder, study.pop("name", "crash"), **study)
    first = crash.run_killed_at_random(seed, span)
    kill_point = f"random (seed {seed})" + ("" if first.killed else ", after the end")
    if first.killed:
        crash.recover()
    return crash.verdict(f"random moment seed {seed}", kill_point, started)


def table(verdicts: Sequence[Verdict]) -> str:
    """The results as a table, with a total line."""
    head = (
        f"{'scenario':34} {'kill point':34} {'trials exp/fin':>14} {'lost':>5} {'dup':>4} "
        f"{'mirror':>6} {'other':>5} {'s':>6}"
    )
    rows = [head, "-" * len(head)]
    for v in verdicts:
        rows.append(
            f"{v.scenario[:34]:34} {v.kill_point[:34]:34} {f'{v.expected}/{v.finished}':>14} "
            f"{len(v.lost):>5} {len(v.duplicated):>4} {len(v.divergences):>6} "
            f"{len(v.problems):>5} {v.seconds:>6.1f}"
        )
    survived = sum(v.ok for v in verdicts)
    rows.append(
        f"kill points survived: {survived}/{len(verdicts)}, "
        f"lost {sum(len(v.lost) for v in verdicts)}, "
        f"duplicated {sum(len(v.duplicated) for v in verdicts)}, "
        f"mirror diverged {sum(bool(v.divergences) for v in verdicts)}"
    )
    return "\n".join(rows)
