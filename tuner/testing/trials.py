"""Trial functions the backend contract suite runs on backends that run Python functions.

They ship with tuner, so a worker that has tuner installed can import them: a backend's tests
need no trial code of their own (see :class:`tuner.testing.backend_contract.FunctionTrials`).
"""

from __future__ import annotations

from typing import Any

import tuner


def quadratic(params: dict[str, Any]) -> float:
    """``(x - 1)^2``: a trial that completes with one metric."""
    return float((params["x"] - 1.0) ** 2)


def curve(params: dict[str, Any]) -> dict[str, float]:
    """Reports ``loss`` at steps ``0 .. steps - 1``, then completes with the last one."""
    loss = 0.0
    for step in range(int(params["steps"])):
        loss = params["x"] ** 2 + 1.0 / (step + 1)
        tuner.report(step=step, loss=loss)
    return {"loss": loss}


def fails(params: dict[str, Any]) -> float:
    """Raises: an error in the trial's own code."""
    raise ValueError(f"the trial code failed on purpose with {params}")
