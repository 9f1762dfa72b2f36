"""An SVM on scikit-learn's bundled digits data set, scored by 3-fold cross-validation.

Runs offline: the data ships with scikit-learn. Each fold's running accuracy is reported as an
intermediate metric, so MLflow shows a curve per trial.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import tuner


def train_svm(params: dict[str, Any]) -> dict[str, float]:
    """Cross-validated accuracy of an SVC with ``params`` on the digits data."""
    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    model_args = {"C": params["C"], "gamma": params["gamma"], "kernel": params["kernel"]}
    if params["kernel"] == "poly":
        model_args["degree"] = params["degree"]
    started = time.perf_counter()
    scores = []
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    for fold, (train, test) in enumerate(folds.split(x, y)):
        model = SVC(**model_args, cache_size=100).fit(x[train], y[train])
        scores.append(model.score(x[test], y[test]))
        tuner.report(step=fold, val_accuracy=float(np.mean(scores)))
    return {
        "val_accuracy": float(np.mean(scores)),
        "val_accuracy_std": float(np.std(scores)),
        "fit_seconds": time.perf_counter() - started,
    }
