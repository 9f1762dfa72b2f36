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


QUALITY_CACHE = ROOT / "benchmarks" / "results" / "quality.jsonl"
"""Every quality curve measured so far, one JSON line each: a run adds only what is missing,
so the suite grows across sessions and the report is rebuilt from all of it."""
PLOTS = ROOT / "benchmarks" / "plots"


def _curve_job(job: tuple[str, str, int, int]) -> dict[str, Any]:
    from benchmarks.quality import curve

    problem, config, seed, trials = job
    values = curve(problem, config, seed, trials)
    return {"problem": problem, "config": config, "seed": seed, "trials": trials, "curve": values}


def _cached_curves() -> list[dict[str, Any]]:
    if not QUALITY_CACHE.exists():
        return []
    return [json.loads(line) for line in QUALITY_CACHE.read_text().splitlines() if line.strip()]


def _job_weight(job: tuple[str, str, int, int]) -> float:
    """Rough seconds, to start the long jobs first."""
    problem, config, _, trials = job
    weight = trials / 60
    weight *= 10 if "skopt" in config else 4 if ("gp" in config or "auto" in config) else 1
    return weight * (4 if problem.startswith("hgb") else 1)


def quality(repeats: int) -> str:
    """Best-so-far curves over seeds, measured where missing (``BENCH_SEEDS``, default 20;
    ``BENCH_TRIALS``, default 60; ``BENCH_PROBLEMS``; ``BENCH_CONFIGS``), then the report of
    everything measured so far."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from benchmarks.quality import CONFIGS, PROBLEMS, TRIALS

    seeds = int(os.environ.get("BENCH_SEEDS", "20"))
    trials = int(os.environ.get("BENCH_TRIALS", str(TRIALS)))
    problems = [p for p in os.environ.get("BENCH_PROBLEMS", ",".join(PROBLEMS)).split(",") if p]
    configs = [c for c in os.environ.get("BENCH_CONFIGS", ",".join(CONFIGS)).split(",") if c]
    have = {(r["problem"], r["config"], r["seed"]): r["trials"] for r in _cached_curves()}
    jobs = [
        (problem, config, seed, trials)
        for problem in problems
        for config in configs
        for seed in range(seeds)
        if have.get((problem, config, seed), 0) < trials
    ]
    # Seed by seed, so that a run cut short leaves every configuration with as many seeds.
    jobs.sort(key=lambda job: (job[2], -_job_weight(job)))
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one process per core, as for every tool
    QUALITY_CACHE.parent.mkdir(parents=True, exist_ok=True)
    print(f"  {len(jobs)} quality runs to measure", flush=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = [pool.submit(_curve_job, job) for job in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            with QUALITY_CACHE.open("a") as cache:
                cache.write(json.dumps(future.result()) + "\n")
            if done % 20 == 0:
                print(f"  {done}/{len(jobs)}", flush=True)
    return quality_report(_cached_curves())


def quality_report(rows: list[dict[str, Any]]) -> str:
    """The search-quality section, from measured curves: per problem a plot of best-so-far
    against trials and a table at 60 and 200 trials; then the targets of issue #13."""

    from benchmarks.quality import CONFIGS, DEFAULT, PROBLEMS

    curves: dict[tuple[str, str], dict[int, list[float]]] = {}
    for row in rows:  # the longest curve of each seed
        seeds = curves.setdefault((row["problem"], row["config"]), {})
        if len(row["curve"]) > len(seeds.get(row["seed"], [])):
            seeds[row["seed"]] = row["curve"]
    lines = [
        "## Search quality",
        "",
        "Best value found against trials: simple regret (best found minus the optimum) where the "
        "optimum is known, the CV error or log loss itself for real models; for the noisy "
        "problem, the true value of the trial the noisy observations rank best. Median and "
        "interquartile range over seeds; `-x4` and `-x16` keep 4 and 16 trials in flight. "
        f"`{DEFAULT}` is the default (`strategy: {{type: bayesian}}`). Every curve is kept in "
        "`benchmarks/results/quality.jsonl`; `python -m benchmarks.run --only quality` measures "
        "what is missing (`BENCH_SEEDS`, `BENCH_TRIALS`, `BENCH_PROBLEMS`, `BENCH_CONFIGS`) and "
        "rebuilds this section from all of it.",
        "",
    ]
    lines += [_identical(curves, "tuner-gp", "optuna-gp"), ""]
    targets = []
    for problem, spec in PROBLEMS.items():
        measured = {c: curves[(problem, c)] for c in CONFIGS if (problem, c) in curves}
        if DEFAULT not in measured:
            continue
        what = "regret" if spec.optimum is not None else "value"
        lines += [f"### {problem}: {spec.kind}", ""]
        plot = _plot_curves(problem, measured, log=spec.optimum is not None)
        lines += [f"![{problem}](plots/{plot.name})", ""]
        for horizon in (60, 200):
            stats = _stats_at(measured, horizon)
            if DEFAULT not in stats:
                continue
            lines += [
                f"After {horizon} trials:",
                "",
                f"| strategy | seeds | median {what} | IQR |",
                "|---|---|---|---|",
            ]
            for config, (count, q1, median, q3) in stats.items():
                lines.append(f"| {config} | {count} | {median:.3g} | {q1:.3g} - {q3:.3g} |")
            lines.append("")
            targets.append(_targets(problem, horizon, stats))
    return "\n".join([*lines, "### Targets (issue #13)", "", *targets])


def _identical(curves: dict[tuple[str, str], dict[int, list[float]]], ours: str, peer: str) -> str:
    """Whether two configurations that run the same sampler gave the same curves."""
    pairs = [
        (seeds[seed], curves[(problem, peer)][seed])
        for (problem, config), seeds in curves.items()
        if config == ours and (problem, peer) in curves
        for seed in seeds
        if seed in curves[(problem, peer)]
    ]
    same = sum(1 for a, b in pairs if a == b)
    return (
        f"`{ours}` is the sampler of `{peer}` behind tuner's wrapper: their curves are identical "
        f"on {same} of the {len(pairs)} problem-seed pairs where both ran, so `{ours}` runs on "
        f"fewer seeds; sequentially, `tuner-auto` is that GP on the problems of floats (up to 200 "
        "trials) and `tuner-tpe` on the others."
    )


def _stats_at(
    measured: dict[str, dict[int, list[float]]], horizon: int
) -> dict[str, tuple[int, float, float, float]]:
    import numpy as np

    stats = {}
    for config, seeds in measured.items():
        values = [curve[horizon - 1] for curve in seeds.values() if len(curve) >= horizon]
        if len(values) >= 3:
            q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
            stats[config] = (len(values), q1, median, q3)
    return stats


def _targets(problem: str, horizon: int, stats: dict[str, tuple[int, float, float, float]]) -> str:
    from benchmarks.quality import DEFAULT

    _, q1, default, q3 = stats[DEFAULT]
    # Single engines on at least half the default's seeds (tuner-gp, which is optuna-gp, runs on
    # a few only).
    singles = {
        c: s
        for c, s in stats.items()
        if not c.startswith(DEFAULT) and 2 * s[0] >= stats[DEFAULT][0]
    }
    parts = [f"the default {default:.3g}, no single engine measured this far"]
    if singles:
        best = min(singles, key=lambda c: singles[c][2])
        _, _, best_median, best_q3 = singles[best]
        parts = [
            f"matches the best single engine ({best}, {best_median:.3g}, IQR up to "
            f"{best_q3:.3g}): {'yes' if _within(default, best_q3) else 'NO'} ({default:.3g})"
        ]
    for flight in ("x4", "x16"):
        if f"{DEFAULT}-{flight}" in stats:
            median = stats[f"{DEFAULT}-{flight}"][2]
            inside = "yes" if _within(median, q3) else "NO"
            parts.append(
                f"{flight[1:]} in flight within its sequential IQR: {inside} ({median:.3g})"
            )
    return f"- {problem}, {horizon} trials: " + "; ".join(parts) + f" (IQR {q1:.3g} - {q3:.3g})."


def _within(value: float, bound: float) -> bool:
    """``value <= bound``, up to float noise (CV scores of the same models differ in the last
    digits)."""
    return value <= bound + 1e-9 * max(abs(bound), 1e-12)


def _plot_curves(problem: str, measured: dict[str, dict[int, list[float]]], *, log: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from benchmarks.quality import DEFAULT

    figure, axes = plt.subplots(figsize=(7, 4))
    for config, all_seeds in measured.items():
        # As far as at least 3 seeds go (the 200-trial runs cover fewer seeds than the 60).
        length = sorted((len(c) for c in all_seeds.values()), reverse=True)[
            min(2, len(all_seeds) - 1)
        ]
        seeds = {seed: c for seed, c in all_seeds.items() if len(c) >= length}
        values = np.array([c[:length] for c in seeds.values()])
        if log:
            values = np.maximum(values, 1e-9)
        q1, median, q3 = np.percentile(values, [25, 50, 75], axis=0)
        x = np.arange(1, length + 1)
        width = 2.5 if config == DEFAULT else 1.2
        (line,) = axes.plot(x, median, label=f"{config} ({len(seeds)})", linewidth=width)
        axes.fill_between(x, q1, q3, color=line.get_color(), alpha=0.12)
    if log:
        axes.set_yscale("log")
    axes.set_xlabel("trials")
    axes.set_ylabel("regret" if log else "best value")
    axes.set_title(f"{problem}: median best so far, IQR shaded (seeds in brackets)")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"quality-{problem}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


COST_SIZES = (10, 100, 190, 500, 2000)
"""History sizes for proposal cost: at 190 the default is still the GP in a space of floats
(at 200 completed trials it hands over to CMA-ES)."""
COST_ENGINES = {"auto": COST_SIZES, "gp": COST_SIZES, "skopt": (10, 100, 500)}
"""Engines measured, with their sizes: skopt takes 19 s per proposal at 500 already."""


def strategy_cost(repeats: int) -> str:
    """Milliseconds per proposal as the history grows, cold and warm."""
    engines = ["auto", "random", "qmc", "tpe", "cmaes", "nsga2", "gp", "skopt"]
    rows = []
    for engine in engines:
        sizes = COST_ENGINES.get(engine, COST_SIZES)
        spec = ",".join(map(str, sizes))
        ms = _run_module("benchmarks.quality", "cost", engine, spec, timeout=3600)["ms"]
        print(f"  cost {engine} {ms}", flush=True)
        cells = [
            f"{ms[str(n)]['warm']:.3g} ({ms[str(n)]['cold']:.3g})" if str(n) in ms else "—"
            for n in COST_SIZES
        ]
        name = "auto (the default)" if engine == "auto" else engine
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            "## Strategy cost",
            "",
            "Milliseconds per proposal (ask + suggest + tell) in Hartmann6's 6-d space of "
            "floats, with 10 to 2,000 completed random trials in the history: warm (the median "
            "of three proposals after the first, as in a running study) and, in brackets, cold "
            "(the first, a model fitted from scratch as after a resume; at 10 trials it includes "
            "imports). `python -m benchmarks.quality cost ENGINE 10,100,190,500,2000`.",
            "",
            "| engine | " + " | ".join(f"{n:,}" for n in COST_SIZES) + " |",
            "|---|" + "---|" * len(COST_SIZES),
            *rows,
            "",
            "Targets (issue #13): the default proposes in at most 50 ms (warm, median) at 500 "
            "trials and under 200 ms at 2,000. In this space `auto` is the GP up to 199 "
            "completed trials and CMA-ES, warm-started from them, after; in spaces with "
            "integers, categoricals or conditions it is TPE throughout (the `tpe` row).",
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
