"""Small trial functions for trying tuner out and for its tests: cheap, offline, deterministic."""

from __future__ import annotations

import math
import time
from typing import Any

import tuner


def quadratic(params: dict[str, Any]) -> float:
    """``(x - 1)^2``, with ``y`` added when present; the minimum is 0 at x = 1."""
    return (params["x"] - 1.0) ** 2 + params.get("y", 0.0) ** 2


def branin(params: dict[str, Any]) -> dict[str, float]:
    """The Branin function on x1 in [-5, 10], x2 in [0, 15]; minimum about 0.397887."""
    x1, x2 = params["x1"], params["x2"]
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5.0 / math.pi
    r, s, t = 6.0, 10.0, 1.0 / (8 * math.pi)
    value = a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s
    return {"value": value}


def curve(params: dict[str, Any]) -> dict[str, float]:
    """Reports a learning curve of ``steps`` steps, then returns its last point as ``loss``."""
    loss = 10.0
    for step in range(int(params.get("steps", 5))):
        loss = params["x"] ** 2 + 1.0 / (step + 1)
        tuner.report(step=step, loss=loss)
        time.sleep(params.get("sleep", 0.0))
    return {"loss": loss}


def flaky(params: dict[str, Any]) -> float:
    """Raises for ``x < 0``: a trial that fails for part of the space."""
    if params["x"] < 0:
        raise ValueError(f"x={params['x']} is negative")
    return params["x"]


def sleepy(params: dict[str, Any]) -> float:
    """Sleeps ``seconds`` (default 0.2), then returns ``x``."""
    time.sleep(params.get("seconds", 0.2))
    return float(params["x"])


def gated(params: dict[str, Any]) -> float:
    """Waits until the file ``params["gate"]`` exists, then returns ``x`` (for resume tests)."""
    from pathlib import Path

    while not Path(params["gate"]).exists():
        time.sleep(0.05)
    return float(params["x"])


def accuracy_vs_latency(params: dict[str, Any]) -> dict[str, float]:
    """A network whose error falls with its size while its latency and memory grow: two
    objectives in tension (and a memory constraint) for multi-objective studies.

    ``width`` and ``depth`` set the size, ``lr`` the learning rate (best near 1e-2); the error
    curve is reported at three steps, so pruners can watch it.
    """
    size = params["width"] * params["depth"]
    fit = (math.log10(params["lr"]) + 2.0) ** 2 * 0.05
    error = 1.0 / (1.0 + 0.01 * size) + fit
    for step in range(3):
        tuner.report(step=step, error=error * (1.0 + 0.3 * (2 - step)))
    return {"error": error, "latency_ms": 2.0 + 0.05 * size, "memory_mb": 4.0 * size}
