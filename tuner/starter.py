"""``tuner init``: a commented starter spec and a training script that validate and run as written.

A starter is a study of a small neural network (scikit-learn's ``MLPClassifier``) on the digits
data set that ships with scikit-learn, so it runs offline. Its spec has every section, each key
commented with what it means and what else it can be; its script is either a function that
reports a learning curve with ``tuner.report`` or a program that prints metric lines.

The spec is put together from one text per section (the sections that differ by backend or by
trial kind have one text per variant), so the three starters share every comment they can.
One job, the starters: most of its length is the templates' own text.

Example:
    >>> starter = render_starter(StarterBackend.RAY, name="digits")
    >>> starter.trial.value, sorted(starter.files)
    ('function', ['study.yaml', 'train.py'])
"""

from __future__ import annotations

import enum
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from tuner.errors import InputError
from tuner.spec.model import _NAME_PATTERN

SPEC_FILE = "study.yaml"
SCRIPT_FILE = "train.py"
FALLBACK_NAME = "my-study"


class StarterBackend(enum.Enum):
    """Where the starter's trials run."""

    RAY = "ray"
    SAGEMAKER = "sagemaker"


class TrialKind(enum.Enum):
    """What the starter's trial is: a Python function or a program."""

    FUNCTION = "function"
    COMMAND = "command"


class StarterError(InputError):
    """The starter cannot be written as asked (a combination, a name, files in the way)."""


@dataclass(frozen=True)
class Starter:
    """A starter study: its files' texts by file name.

    Attributes:
        name: the study's name.
        backend: where its trials run.
        trial: what a trial is.
        files: file name -> text, the spec first.
    """

    name: str
    backend: StarterBackend
    trial: TrialKind
    files: dict[str, str]


def render_starter(
    backend: StarterBackend, trial: TrialKind | None = None, name: str = FALLBACK_NAME
) -> Starter:
    """The starter for ``backend`` and ``trial``, named ``name``.

    Args:
        backend: where the trials run.
        trial: a function or a command; unset, a function on Ray and a command on SageMaker.
        name: the study's name (the spec's ``name`` rules).

    Raises:
        StarterError: for a SageMaker function trial or a name the spec would refuse.
    """
    if trial is None:
        trial = TrialKind.COMMAND if backend is StarterBackend.SAGEMAKER else TrialKind.FUNCTION
    if backend is StarterBackend.SAGEMAKER and trial is TrialKind.FUNCTION:
        raise StarterError(
            "`--backend sagemaker --trial function`: the sagemaker backend runs programs (one "
            "training job per trial), not Python functions; use `--trial command` (the default "
            "for sagemaker), or `--backend ray` for a function trial"
        )
    if not re.fullmatch(_NAME_PATTERN, name):
        raise StarterError(
            f"`--name {name}` is not a study name: use 1-63 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, e.g. `--name digits-mlp`"
        )
    values = {"name": _yaml_scalar(name), "bucket_prefix": name}
    sections = [
        _HEADER[backend],
        _NAME,
        _OBJECTIVE,
        _SPACE,
        _STRATEGY,
        _BUDGET[backend],
        _PRUNER,
        _TRIAL[backend, trial],
        _BACKEND[backend],
        _TRACKING,
        _STORAGE,
    ]
    spec = "\n".join(Template(text).substitute(values) for text in sections)
    script = _FUNCTION_SCRIPT if trial is TrialKind.FUNCTION else _COMMAND_SCRIPT
    return Starter(name, backend, trial, {SPEC_FILE: spec, SCRIPT_FILE: script})


def default_name(folder: Path) -> str:
    """A study name made from ``folder``'s name, or ``my-study`` if nothing of it fits."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name)
    text = re.sub(r"^[^A-Za-z0-9]+", "", text)[:63].rstrip("-._")
    return text or FALLBACK_NAME


def write_starter(folder: Path, starter: Starter, *, force: bool = False) -> list[Path]:
    """Writes ``starter``'s files into ``folder`` (created if missing).

    Args:
        folder: where the files go.
        starter: what to write.
        force: overwrite files that exist.

    Returns:
        The paths written, the spec first.

    Raises:
        StarterError: if ``folder`` is a file, or some files exist and ``force`` is not set.
    """
    if folder.exists() and not folder.is_dir():
        raise StarterError(f"{folder} is a file; give a folder to write the starter into")
    paths = [folder / file_name for file_name in starter.files]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise StarterError(
            f"{' and '.join(existing)} already exist{'s' * (len(existing) == 1)}; "
            "`tuner init` overwrites nothing without `--force`: pass `--force` to replace "
            f"{'it' if len(existing) == 1 else 'them'}, or give another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, starter.files.values(), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def next_commands(folder: Path, starter: Starter) -> list[str]:
    """The commands that take the written starter from here: check, run, review."""
    here = folder.resolve() == Path.cwd().resolve()
    commands = [] if here else [f"cd {shlex.quote(str(folder))}"]
    if starter.backend is StarterBackend.SAGEMAKER:
        commands += [
            f"python {SCRIPT_FILE} --lr 0.01",
            f"tuner validate {SPEC_FILE}",
            f"tuner run {SPEC_FILE} --dry-run",
        ]
    else:
        commands.append(f"tuner validate {SPEC_FILE}")
    return [*commands, f"tuner run {SPEC_FILE}", f"tuner ui {SPEC_FILE}"]


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML string: bare when YAML reads it back as that string, else quoted."""
    try:
        bare = yaml.safe_load(text) == text
    except yaml.YAMLError:
        bare = False
    return text if bare else json.dumps(text)


# --- the spec, section by section -------------------------------------------------------------
# Templates: `${name}` is the study's name as a YAML scalar, `$$` a literal dollar sign.

_RUN_LINES = """\
#   tuner validate study.yaml          # every problem, with its line and how to fix it
#   tuner run study.yaml --dry-run     # the plan and the first configurations; runs nothing
"""

_HEADER = {
    StarterBackend.RAY: """\
# A starter study written by `tuner init`. It tunes a small neural network (scikit-learn's
# MLPClassifier) on the handwritten-digits data set that ships with scikit-learn, so it runs
# offline as it is, on an embedded Ray cluster on this machine. Make it yours by changing
# train.py and `space`; every key below says what it does and what else it can be.
#
"""
    + _RUN_LINES
    + """\
#   tuner run study.yaml               # 12 trials, 2 at a time; after Ctrl-C, `tuner resume`
#   tuner ui study.yaml                # the trials and their learning curves in MLflow
#
# `tuner schema` prints this file's JSON Schema, for an editor's completion.
""",
    StarterBackend.SAGEMAKER: """\
# A starter study written by `tuner init`. Each trial is a SageMaker training job that runs
# train.py (a small neural network, scikit-learn's MLPClassifier, on the handwritten-digits
# data set that ships with scikit-learn) in AWS's scikit-learn image. Put your own account,
# role and bucket into `backend` below; every key says what it does and what else it can be.
#
#   python train.py --lr 0.01          # the script on this machine first, as a job runs it
"""
    + _RUN_LINES
    + """\
#   tuner run study.yaml               # starts the jobs: needs AWS credentials (AWS_PROFILE, ...)
#   tuner ui study.yaml                # the trials and their learning curves in MLflow
#
# `tuner schema` prints this file's JSON Schema, for an editor's completion.
""",
}

_NAME = """\
# The study's name: 1-63 letters, digits, '.', '_', '-'. `tuner status`, `tuner best`,
# `tuner resume` and `tuner ui` find the study by it (or by this file).
name: ${name}
"""

_OBJECTIVE = """\
# The metric to optimise, by the name the trial reports it under, and its direction
# (maximize or minimize).
objective: {metric: val_accuracy, direction: maximize}
"""

_SPACE = """\
# The search space: one entry per hyperparameter, handed to the trial by its name. Bounds are
# inclusive.
#   {type: float, low: 0.0, high: 0.5}          `log: true` spreads the search evenly over
#                                               orders of magnitude; `step: 0.05` makes it discrete
#   {type: int, low: 1, high: 8}                `log` and `step` as for float
#   {type: categorical, choices: [adam, sgd]}   strings, numbers or booleans
#   when: {solver: sgd}                         searched only while an earlier categorical takes
#                                               that value; the trial gets no value otherwise
space:
  lr:       {type: float, low: 1.0e-4, high: 1.0e-1, log: true}   # initial learning rate
  hidden:   {type: int, low: 16, high: 128, log: true}            # units per hidden layer
  layers:   {type: int, low: 1, high: 2}                          # hidden layers
  alpha:    {type: float, low: 1.0e-6, high: 1.0e-2, log: true}   # L2 penalty
  solver:   {type: categorical, choices: [adam, sgd]}
  momentum: {type: float, low: 0.5, high: 0.95, when: {solver: sgd}}
"""

_STRATEGY = """\
# How the next configuration is chosen.
#   {type: bayesian}   a model of the results so far picks it; the default engine, `auto`,
#                      chooses one per trial (a Gaussian process on spaces of floats, TPE
#                      otherwise); `engine: gp | tpe | cmaes | skopt | qmc | nsga2` picks one;
#                      `n_startup_trials` random ones first
#   {type: random}     independent samples
#   {type: grid}       every combination once (float parameters need a `step`); ends by itself,
#                      `shuffle: true` tries it in a random order
# `seed` makes the sequence of configurations repeatable.
strategy: {type: bayesian, n_startup_trials: 5, seed: 42}
"""

_BUDGET_HEAD = """\
# When the study stops: at the first limit reached. Counts include the trials of earlier runs
# of the same study (`tuner resume`).
budget:
  max_trials: 12        # trials that end, in any state (complete, pruned, failed)
  max_concurrent: 2     # trials running at once
"""

_BUDGET = {
    StarterBackend.RAY: _BUDGET_HEAD
    + """\
  max_time: 15m         # wall time of one `tuner run`: 90s, 30m, 2h
  max_failures: 3       # failed trials before the study gives up
  # max_cost: 25        # USD to spend, for a backend that knows its prices (sagemaker)
""",
    StarterBackend.SAGEMAKER: _BUDGET_HEAD
    + """\
  max_time: 3h          # wall time of one `tuner run`: 90s, 30m, 2h
  max_failures: 3       # failed trials before the study gives up
  max_cost: 5           # USD: no new job starts once the jobs so far cost this much (from the
                        # instance type's price; `backend.prices` adds or corrects one)
""",
}

_PRUNER = """\
# Early stopping: a trial whose intermediate objective (one value per epoch) is worse than the
# other trials' at the same step is stopped, and its slot goes to the next configuration.
#   {type: none}                                            every trial runs to its end
#   {type: median, n_startup_trials: 5, n_warmup_steps: 0}  worse than the median of earlier
#                                                           trials; the first trials and steps
#                                                           are never judged
#   {type: asha, min_resource: auto, reduction_factor: 3}   asynchronous successive halving
#   {type: hyperband, min_resource: 1, max_resource: auto, reduction_factor: 3}
pruner: {type: median, n_startup_trials: 4, n_warmup_steps: 3}
"""

_METRIC_DEFINITIONS = """\
  metric_definitions:   # each regex's first group is the value; every match is one step
    - {name: val_accuracy, regex: "val_accuracy=([0-9.]+)"}
    - {name: val_loss, regex: "val_loss=([0-9.eE+-]+)"}
"""

_RAY_TRIAL_TAIL = """\
  resources: {cpus: 1}          # one trial's share: cpus, gpus (0.5 shares a GPU), memory: 2GB
  timeout: 5m                   # a trial running longer fails
  max_retries: 2                # retries after a lost worker or node
  retry_on_error: false         # true: an error in the trial's own code is retried too
  env: {OMP_NUM_THREADS: "1"}   # extra environment variables (here: one BLAS thread a trial)
"""

_TRIAL = {
    (StarterBackend.RAY, TrialKind.FUNCTION): """\
# What one trial runs.
trial:
  # A Python function, `module:function`, imported from this folder (more folders: `path:
  # [src]`): train.py's `train(params)` gets the parameters as a dict, reports each epoch's
  # metrics with `tuner.report` and returns the last ones. The alternative is a program,
  # `command: [python, train.py]`, whose printed metrics `metric_definitions` read (what
  # `tuner init --trial command` writes).
  function: train:train
"""
    + _RAY_TRIAL_TAIL,
    (StarterBackend.RAY, TrialKind.COMMAND): """\
# What one trial runs.
trial:
  # A program, run in this folder without a shell, with the trial's parameters appended as
  # `--name value` arguments (and in the JSON file named by $$TUNER_PARAMS_FILE). Fixed
  # arguments go here: [python, train.py, --epochs, "30"]. The alternative is a Python
  # function, `function: train:train`, that returns its metrics (what
  # `tuner init --trial function` writes).
  command: [python, train.py]
"""
    + _METRIC_DEFINITIONS
    + _RAY_TRIAL_TAIL,
    (StarterBackend.SAGEMAKER, TrialKind.COMMAND): """\
# What one trial runs. On SageMaker a trial is a program: the image runs `backend.entry_point`
# with the trial's parameters as `--name value` arguments (and only those: fixed settings are
# the script's defaults), and SageMaker reads its metrics from its log.
trial:
  command: [python, train.py]   # how the same script runs when `backend` is {type: ray}
"""
    + _METRIC_DEFINITIONS
    + """\
  timeout: 30m                  # a trial running longer is stopped and fails
  max_retries: 2                # retries after an infrastructure failure
  # env: {LOG_LEVEL: debug}     # extra environment variables of this trial's job
""",
}

_BACKEND = {
    StarterBackend.RAY: """\
# Where trials run.
#   {type: ray}                  an embedded Ray cluster on this machine, started and stopped
#                                by tuner
#   {type: ray, address: auto}   the Ray cluster this machine belongs to (`ray start --head`)
#   {type: ray, address: "ray://head-node:10001", runtime_env: {working_dir: .}}
#                                a remote cluster; runtime_env ships this folder to its nodes
#   {type: sagemaker, ...}       one SageMaker training job per trial
#                                (`tuner init --backend sagemaker` writes one)
backend:
  type: ray
  # num_cpus: 8                  # CPUs of the embedded cluster (default: all of this machine's)
  # num_gpus: 1                  # GPUs of the embedded cluster
  # cancel_grace: 10             # seconds a cancelled trial gets to stop before it is killed
""",
    StarterBackend.SAGEMAKER: """\
# Where trials run: one SageMaker training job per trial. (The same search on this machine:
# `tuner init --backend ray --trial command` writes it.)
backend:
  type: sagemaker
  region: us-east-1             # default: the AWS profile's region
  # The IAM role the jobs run as: SageMaker's training permissions and access to the buckets
  # below (`aws iam list-roles` lists yours).
  role_arn: arn:aws:iam::123456789012:role/SageMakerExecution
  # AWS's scikit-learn image (its registry account differs by region: see "Docker Registry
  # Paths" in SageMaker's documentation). It runs `entry_point` from `source_dir`, which tuner
  # packs and uploads once per study. With an image of your own that holds the code, drop
  # `entry_point` and the image's own entry point runs.
  image_uri: 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3
  entry_point: train.py
  # source_dir: .               # the folder shipped to the job (default: this file's folder)
  instance_type: ml.m5.large    # ml.c5.xlarge, ml.g5.xlarge (a GPU), ...
  # instance_count: 1
  # volume_size_gb: 30
  output_path: s3://my-bucket/${bucket_prefix}/models   # a job's model: <output_path>/<job>/output/
  # inputs:                     # data channels: the job finds each in /opt/ml/input/data/<name>
  #   train: s3://my-bucket/${bucket_prefix}/data/train
  max_runtime: 30m              # SageMaker's own limit on one job
  # Managed spot capacity, cheaper but interruptible: enabled: true, max_wait: 1h (at least
  # max_runtime), checkpoint_path: s3://my-bucket/${bucket_prefix}/checkpoints
  spot: {enabled: false}
  # keep_alive: 10m             # a warm pool: the next on-demand job starts in seconds
  environment: {PYTHONUNBUFFERED: "1"}   # every job's variables: metric lines reach the log at once
  tags: {project: ${name}}
  # poll_interval: 15           # seconds between status polls (one call covers every job)
""",
}

_TRACKING = """\
# Where results are recorded: an MLflow run for the study and a child run per trial, with its
# parameters, metrics and learning curve. `mlflow: null` turns MLflow off.
tracking:
  mlflow:
    experiment: ${name}   # default: the study's name
    # tracking_uri: http://127.0.0.1:5000   # default: $$MLFLOW_TRACKING_URI, else ./mlflow.db
"""

_STORAGE = """\
# Where the study's state lives, which `tuner status`, `tuner best` and `tuner resume` read.
storage:
  dir: tuner-studies      # one folder per study, relative to where tuner runs
  # url: postgresql://tuner@db-host/tuner   # a database shared by several machines instead
"""


# --- the training scripts ----------------------------------------------------------------------

_FUNCTION_SCRIPT = '''\
"""This study's trial: a small neural network on scikit-learn's handwritten digits.

tuner calls ``train(params)`` once per trial, ``params`` holding a value for each parameter of
the spec's ``space`` (a conditional one only while it is active). The metrics reported with
``tuner.report`` on the way are the trial's learning curve in MLflow, and what the pruner
judges to stop an unpromising trial early; the returned ones are its result.

The data ships with scikit-learn, so this runs offline. To tune your own model keep the shape:
read ``params``, train, report each epoch, return the metrics. Try it by hand:
``python train.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import tuner

EPOCHS = 15


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 8x8 digit images (10 classes), split 75/25 and standardised."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_val), y_train, y_val


def train(params: dict[str, Any]) -> dict[str, float]:
    """Trains for ``EPOCHS`` epochs with ``params``; returns the last epoch's metrics."""
    x_train, x_val, y_train, y_val = load_data()
    model = MLPClassifier(
        hidden_layer_sizes=(params["hidden"],) * params["layers"],
        learning_rate_init=params["lr"],
        alpha=params["alpha"],
        solver=params["solver"],
        momentum=params.get("momentum", 0.9),  # searched for sgd only
        random_state=0,
    )
    classes = np.unique(y_train)
    metrics: dict[str, float] = {}
    for epoch in range(EPOCHS):
        model.partial_fit(x_train, y_train, classes=classes)  # one pass over the data
        metrics = {
            "val_accuracy": float(model.score(x_val, y_val)),
            "val_loss": float(log_loss(y_val, model.predict_proba(x_val), labels=classes)),
        }
        tuner.report(step=epoch, **metrics)
    return metrics


if __name__ == "__main__":
    print(train({"lr": 0.01, "hidden": 64, "layers": 1, "alpha": 1e-4, "solver": "adam"}))
'''

# Runs in AWS's scikit-learn image too, whose Python may be older than tuner's: 3.8 syntax.
_COMMAND_SCRIPT = '''\
"""This study's trial: a small neural network on scikit-learn's handwritten digits.

The script knows nothing of tuner. Each trial runs it with the trial's parameters as
``--name value`` arguments (one for each parameter of the spec's ``space``; a conditional one
only while it is active) and reads the ``epoch=3 val_accuracy=0.95 val_loss=0.17`` lines it
prints through the spec's ``metric_definitions``: every line is a step of the trial's learning
curve in MLflow, which the pruner judges, and the last one is its result.

It runs as it is on SageMaker: AWS's scikit-learn image runs it with the parameters as
arguments, and what it saves into ``--model-dir`` (SageMaker's ``SM_MODEL_DIR``) becomes the
job's model.tar.gz. The data ships with scikit-learn, so it runs offline. Try it by hand:
``python train.py --lr 0.01 --hidden 64``.
"""

from __future__ import annotations

import argparse
import os

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def parse_args() -> argparse.Namespace:
    """The hyperparameters (the spec's `space`) and the fixed settings, with defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    parser.add_argument("--hidden", type=int, default=64, help="units per hidden layer")
    parser.add_argument("--layers", type=int, default=1, help="hidden layers")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 penalty")
    parser.add_argument("--solver", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("SM_MODEL_DIR"),
        help="where to save the model (SageMaker sets SM_MODEL_DIR); not saved if unset",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,) * args.layers,
        learning_rate_init=args.lr,
        alpha=args.alpha,
        solver=args.solver,
        momentum=args.momentum,
        random_state=0,
    )
    classes = np.unique(y_train)
    for epoch in range(args.epochs):
        model.partial_fit(x_train, y_train, classes=classes)  # one pass over the data
        val_accuracy = model.score(x_val, y_val)
        val_loss = log_loss(y_val, model.predict_proba(x_val), labels=classes)
        print(f"epoch={epoch} val_accuracy={val_accuracy:.6f} val_loss={val_loss:.6f}", flush=True)
    if args.model_dir:
        os.makedirs(args.model_dir, exist_ok=True)
        path = os.path.join(args.model_dir, "model.joblib")
        joblib.dump({"scaler": scaler, "model": model}, path)


if __name__ == "__main__":
    main()
'''
