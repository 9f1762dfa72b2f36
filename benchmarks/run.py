"""Runs the benchmark suite side by side and writes ``benchmarks/RESULTS.md``.

Usage: ``python -m benchmarks.run [--repeats 3] [--only overhead,startup,...]`` (``make bench``).
Every timed measurement runs in its own process; medians over the repeats are reported, with
ratios against the peers. No number here is asserted anywhere: where a target is missed, the
report says by how much.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.overhead import SCENARIOS, SLOW_ZERO_TRIALS, WORKERS, trial_count

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}


def _run_module(module: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Runs ``python -m module args`` in its own process; its last line is a JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _measure_overhead(tool: str, scenario: str) -> float:
    return float(_run_module("benchmarks.overhead", tool, scenario)["seconds"])


def _median(measure: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    values = [measure() for _ in range(repeats)]
    return statistics.median(values), values


def overhead(repeats: int) -> str:
    """Trials per second on zero-cost trials, and makespans against the ideal."""
    tools = ["tuner", "tuner+mlflow", "raytune", "raytune-reuse", "raytune-optuna", "optuna"]
    rows = []
    medians: dict[tuple[str, str], float] = {}
    for scenario in ("zero", "sleep-0.5", "sleep-2"):
        for tool in tools:
            if scenario != "zero" and tool == "raytune-optuna":
                continue
            median, values = _median(lambda t=tool, s=scenario: _measure_overhead(t, s), repeats)
            medians[(tool, scenario)] = median
            print(f"  {scenario:10} {tool:15} {median:8.2f}s  {values}", flush=True)

    def rate_of(tool: str) -> float:
        return trial_count(tool, "zero") / medians[(tool, "zero")]

    best_tune = max(rate_of(t) for t in tools if t.startswith("raytune"))
    optuna_rate = rate_of("optuna")
    for tool in tools:
        rate = rate_of(tool)
        cells = [f"{rate:,.0f}", f"{rate / best_tune:.2f}x", f"{rate / optuna_rate:.3f}x"]
        for scenario in ("sleep-0.5", "sleep-2"):
            if (tool, scenario) in medians:
                count, seconds = SCENARIOS[scenario]
                ideal = count * seconds / WORKERS
                cells.append(
                    f"{medians[(tool, scenario)]:.2f} s ({medians[(tool, scenario)] / ideal:.3f}x)"
                )
            else:
                cells.append("-")
        rows.append(f"| {tool} | " + " | ".join(cells) + " |")
    tuner_rate = rate_of("tuner")
    makespan = medians[("tuner", "sleep-0.5")] / (32 * 0.5 / WORKERS)
    return "\n".join(
        [
            "## Orchestration overhead and parallel efficiency",
            "",
            f"{WORKERS} workers, random search, a fresh process per measurement with Ray started and "
            "its workers warm before the clock starts; medians of "
            f"{repeats}. `tuner` runs on the embedded Ray cluster with its journal store "
            "(fsync per write); `tuner+mlflow` also mirrors every trial into a sqlite MLflow store.",
            "",
            f"Zero-cost rates are over {SCENARIOS['zero'][0]} trials, except "
            + ", ".join(f"{t} ({n} trials)" for t, n in SLOW_ZERO_TRIALS.items())
            + ", which run about one trial a second.",
            "",
            "| tool | zero-cost trials/s | vs best Ray Tune | vs optuna n_jobs=2 | 32 x 0.5 s (ideal 8 s) | 16 x 2 s (ideal 16 s) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Targets: at least 5x the best Ray Tune configuration's trials/s "
            f"({'met' if tuner_rate >= 5 * best_tune else 'missed'}: {tuner_rate / best_tune:.1f}x); "
            f"within 3x of optuna in memory ({'met' if optuna_rate <= 3 * tuner_rate else 'missed'}: "
            f"optuna is {optuna_rate / tuner_rate:.0f}x faster — it runs threads in one process "
            "with no store writes and no scheduler, so its per-trial cost is microseconds); "
            f"makespan within 5% of the ideal ({'met' if makespan <= 1.05 else 'missed'}: "
            f"{makespan:.3f}x).",
        ]
    )


def startup(repeats: int) -> str:
    """Wall time of a whole process running one trial: `tuner run` versus Ray Tune."""
    with tempfile.TemporaryDirectory(prefix="tuner-bench-startup-") as tmp:
        spec = Path(tmp) / "one.yaml"
        spec.write_text(
            textwrap.dedent(
                """\
                name: one
                objective: {metric: loss}
                space: {x: {type: float, low: 0, high: 1}}
                strategy: {type: random, seed: 0}
                budget: {max_trials: 1}
                trial: {function: "benchmarks.overhead:objective"}
                tracking: {mlflow: null}
                """
            )
        )
        tune_script = Path(tmp) / "one_tune.py"
        tune_script.write_text(
            textwrap.dedent(
                """\
                from ray import tune
                def trainable(config):
                    return {"loss": config["x"]}
                tune.Tuner(trainable, param_space={"x": tune.uniform(0, 1)},
                           tune_config=tune.TuneConfig(num_samples=1),
                           run_config=tune.RunConfig(verbose=0)).fit()
                """
            )
        )

        def timed(command: list[str]) -> float:
            started = time.perf_counter()
            subprocess.run(
                command,
                cwd=tmp,
                env={**ENV, "PYTHONPATH": f"{ROOT}:{tmp}"},
                capture_output=True,
                check=True,
                timeout=600,
            )
            return time.perf_counter() - started

        tuner_s, tuner_all = _median(
            lambda: timed([sys.executable, "-m", "tuner.cli", "run", str(spec), "--overwrite"]),
            repeats,
        )
        tune_s, tune_all = _median(lambda: timed([sys.executable, str(tune_script)]), repeats)
    print(f"  startup tuner {tuner_all} ray tune {tune_all}", flush=True)
    return "\n".join(
        [
            "## Start-up: one trial as a whole process",
            "",
            "| tool | seconds (median) | ratio |",
            "|---|---|---|",
            f"| `tuner run` | {tuner_s:.2f} | {tuner_s / tune_s:.2f}x |",
            f"| Ray Tune script | {tune_s:.2f} | 1.00x |",
        ]
    )


def _measure_tracking(mode: str, what: str) -> float:
    return float(_run_module("benchmarks.tracking", mode, what)["seconds"])


def tracking(repeats: int) -> str:
    """MLflow tracking: its effect on a study's makespan, and its cost per trial."""
    on, on_all = _median(lambda: _measure_tracking("makespan", "on"), repeats)
    off, off_all = _median(lambda: _measure_tracking("makespan", "off"), repeats)
    print(f"  makespan on {on_all} off {off_all}", flush=True)
    costs = {}
    for what in ("tuner", "optuna-callback", "raytune-callback"):
        costs[what], values = _median(lambda w=what: _measure_tracking("cost", w), repeats)
        print(f"  cost {what} {values}", flush=True)
    ratio = on / off
    return "\n".join(
        [
            "## Tracking cost",
            "",
            "1,000 trials of 50 ms on 2 workers (ideal 25 s), MLflow's sqlite store, the study's "
            f"whole run timed (every run written by the end); medians of {repeats}.",
            "",
            "| tracking | makespan | vs ideal |",
            "|---|---|---|",
            f"| off | {off:.1f} s | {off / 25:.2f}x |",
            f"| on | {on:.1f} s | {on / 25:.2f}x |",
            "",
            f"Ratio on/off: **{ratio:.2f}** (target at most 1.15: "
            f"{'met' if ratio <= 1.15 else f'missed by {ratio - 1.15:.2f}'}).",
            "",
            "Tracking work per trial (200 trials, 5 intermediate values each, sqlite store):",
            "",
            "| writer | ms per trial | what it writes |",
            "|---|---|---|",
            f"| tuner MLflow mirror | {costs['tuner'] * 1000:.1f} | parent + nested child runs, "
            "every intermediate value, tags, counts, run ids ahead of need; off the loop's thread |",
            f"| optuna-integration MLflowCallback | {costs['optuna-callback'] * 1000:.1f} | flat "
            "runs, final values only; in the optimisation loop |",
            f"| Ray Tune MLflowLoggerCallback | {costs['raytune-callback'] * 1000:.1f} | flat runs, "
            "no parent; in Tune's driver loop |",
        ]
    )


def _regret_job(job: tuple[str, str, int]) -> tuple[str, str, int, float]:
    from benchmarks.quality import regret

    problem, config, seed = job
    return problem, config, seed, regret(problem, config, seed)


def quality(repeats: int) -> str:
    """Simple regret after 60 trials, median and IQR over seeds (``--seeds``, default 10)."""
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks.quality import CONFIGS, GRID_STEPS, PROBLEMS, TRIALS

    seeds = int(os.environ.get("BENCH_SEEDS", "10"))
    problems = [p for p in os.environ.get("BENCH_PROBLEMS", ",".join(PROBLEMS)).split(",") if p]
    jobs = [
        (problem, config, seed)
        for problem in problems
        for config in CONFIGS
        if config != "tuner-grid" or problem in GRID_STEPS
        for seed in range(seeds if config != "tuner-grid" else 1)
    ]
    results: dict[tuple[str, str], list[float]] = {}
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one process per core, as for every tool
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for problem, config, _seed, value in pool.map(_regret_job, jobs):
            results.setdefault((problem, config), []).append(max(value, 0.0))
    lines = [
        "## Search quality",
        "",
        f"Simple regret after {TRIALS} trials (best found minus the optimum; for the real model, "
        "whose optimum is unknown, the best CV log loss found), median [25th-75th "
        f"percentile] over {seeds} seeds; `-x4` runs keep 4 trials in flight. The default "
        "bayesian engine here is `gp` (torch is installed). Seeds: `BENCH_SEEDS` (the suite's "
        "default is 10); problems: `BENCH_PROBLEMS`.",
        "",
    ]
    targets = []
    for problem in problems:
        what = "regret" if PROBLEMS[problem][2] is not None else "CV log loss"
        lines += [f"**{problem}**", "", f"| strategy | median {what} | IQR |", "|---|---|---|"]
        stats = {}
        for config in CONFIGS:
            values = results.get((problem, config))
            if not values:
                continue
            q1, median, q3 = (
                float(v) for v in __import__("numpy").percentile(values, [25, 50, 75])
            )
            stats[config] = (q1, median, q3)
            lines.append(f"| {config} | {median:.3g} | {q1:.3g} - {q3:.3g} |")
        lines.append("")
        default, rand = stats["tuner-gp"][1], stats["tuner-random"][1]
        peer = min(stats[c][1] for c in ("optuna-tpe", "optuna-gp", "skopt-gp_minimize"))
        x4 = stats["tuner-gp-x4"][1]
        q1, _, q3 = stats["tuner-gp"]
        targets.append(
            f"- {problem}: default beats random {'yes' if default < rand else 'NO'} "
            f"({default:.3g} vs {rand:.3g}); matches the best peer "
            f"{'yes' if default <= peer * 1.05 + 1e-12 else 'NO'} ({default:.3g} vs {peer:.3g}); "
            f"4 in flight within the sequential IQR {'yes' if x4 <= q3 else 'NO'} "
            f"({x4:.3g}, IQR {q1:.3g} - {q3:.3g})."
        )
    return "\n".join([*lines, "Targets:", "", *targets])


def strategy_cost(repeats: int) -> str:
    """Milliseconds per proposal as the history grows, cold and warm."""
    rows = []
    for engine in ("random", "tpe", "gp", "skopt"):
        ms = _run_module("benchmarks.quality", "cost", engine, timeout=3600)["ms"]
        print(f"  cost {engine} {ms}", flush=True)
        cells = [f"{ms[k]['cold']:.1f} / {ms[k]['warm']:.1f}" for k in ("10", "100", "500")]
        rows.append(f"| {engine} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            "## Strategy cost",
            "",
            "Milliseconds per proposal (ask + suggest + tell, 6-d space) with 10, 100 and 500 "
            "completed trials in the history: cold (the first proposal, a model fitted from "
            "scratch, as after a resume) / warm (median of the next three, as in a running "
            "study).",
            "",
            "| engine | 10 | 100 | 500 |",
            "|---|---|---|---|",
            *rows,
            "",
            "Target: under 50 ms per proposal at 500 trials for the default engine (gp).",
        ]
    )


def pruning(repeats: int) -> str:
    """Early-stopping savings: steps, best loss and makespan with and without pruning."""
    from benchmarks.pruning import ASHA, MEDIAN, STEP_SECONDS, STEPS, TRIALS

    seeds = int(os.environ.get("BENCH_PRUNING_SEEDS", "3"))
    rows = []
    for tool in ("tuner", "optuna", "raytune"):
        baseline: dict[str, float] = {}
        for pruner in ("none", "median", "asha"):
            runs = _run_module("benchmarks.pruning", tool, pruner, str(seeds))["runs"]
            steps, best, seconds = (
                statistics.median(r[key] for r in runs) for key in ("steps", "best", "seconds")
            )
            print(f"  pruning {tool} {pruner}: {steps} steps, best {best:.4g}, {seconds:.1f}s")
            if pruner == "none":
                baseline = {"steps": steps, "seconds": seconds}
            saved = 1 - steps / baseline["steps"]
            rows.append(
                f"| {tool} | {pruner} | {steps:.0f} | {saved:.0%} | {best:.4f} | "
                f"{seconds:.1f} | {seconds / baseline['seconds']:.2f} |"
            )
    return "\n".join(
        [
            "## Early-stopping savings",
            "",
            f"{TRIALS} trials of a synthetic learning curve (2 hyperparameters, curves that "
            f"cross), {STEPS} steps of {STEP_SECONDS * 1000:.0f} ms each, 2 at a time, TPE "
            f"proposals; median over {seeds} seeds (`BENCH_PRUNING_SEEDS`). Pruners: median "
            f"({MEDIAN}), ASHA ({ASHA}); Ray Tune's nearest equivalents are its "
            "`MedianStoppingRule` and `ASHAScheduler`. Best loss is the best of the trials "
            "trained to the end (the optimum is 0).",
            "",
            "| tool | pruner | steps trained | saved | best loss | makespan s | vs none |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


SECTIONS: dict[str, Callable[[int], str]] = {
    "quality": quality,
    "strategy_cost": strategy_cost,
    "overhead": overhead,
    "startup": startup,
    "tracking": tracking,
    "pruning": pruning,
}


def _versions() -> str:
    names = ["hpo-tuner", "optuna", "ray", "mlflow", "scikit-optimize", "scikit-learn", "torch"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    body = []
    for name in chosen:
        print(f"{name}...", flush=True)
        body.append(SECTIONS[name](args.repeats))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    report = "\n\n".join(
        [
            "# Benchmark results",
            f"Measured {datetime.date.today().isoformat()} on {machine}; {_versions()}.\n\n"
            f"Command: `python -m benchmarks.run --repeats {args.repeats} --only {args.only}` "
            "(`make bench` runs every section).",
            *body,
        ]
    )
    existing = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(_merge(existing, report, chosen))
    print(report)


def _merge(existing: str, report: str, sections: list[str]) -> str:
    """Keeps sections of an earlier report that this run did not measure."""
    if not existing:
        return report + "\n"
    kept = [
        part
        for part in existing.split("\n## ")[1:]
        if not any(part.lower().startswith(_HEADINGS[s]) for s in sections)
    ]
    return report + "".join(f"\n\n## {part.rstrip()}" for part in kept) + "\n"


_HEADINGS = {
    "overhead": "orchestration overhead",
    "startup": "start-up",
    "quality": "search quality",
    "strategy_cost": "strategy cost",
    "tracking": "tracking cost",
    "pruning": "early-stopping savings",
}


if __name__ == "__main__":
    main()
