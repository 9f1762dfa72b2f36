"""A study's standing kept as its trials finish: counts per state, cost, and the best trials
(the best one, or the Pareto front of several objectives), with no storage scans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tuner.records import StopReason, StudySummary, TrialRecord, TrialState


@dataclass
class Tally:
    """Counts and the best trials, kept as trials finish (no storage scans on the hot path).

    Args:
        maximize: per objective, whether it is maximised (one ``bool`` for one objective).
    """

    maximize: tuple[bool, ...] | bool
    counts: dict[TrialState, int] = field(default_factory=lambda: dict.fromkeys(TrialState, 0))
    front: list[TrialRecord] = field(default_factory=list)
    """The feasible completed trials no other one dominates (one: the best, for one objective)."""
    cost: float | None = None
    totals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.maximize, bool):
            self.maximize = (self.maximize,)

    @property
    def best(self) -> TrialRecord | None:
        """The best feasible trial of a single-objective study (``None`` for several)."""
        return self.front[0] if self.front and len(self._senses) == 1 else None

    @property
    def _senses(self) -> tuple[bool, ...]:
        assert isinstance(self.maximize, tuple)
        return self.maximize

    def add(self, record: TrialRecord) -> bool:
        """Counts ``record``; returns whether it is a new best (joins the Pareto front)."""
        self.counts[record.state] += 1
        self.spend(record.cost)
        for key, value in record.details.items():
            if isinstance(value, int | float) and key.endswith("_usd"):
                self.totals[key] = self.totals.get(key, 0.0) + value
        values = record.objective_values
        if (
            record.state is not TrialState.COMPLETE
            or values is None
            or len(values) != len(self._senses)
            or record.infeasible
        ):
            return False
        if any(_dominates(other, values, self._senses) for other in self.front):
            return False
        if len(self._senses) == 1 and self.front and self.front[0].objective_values == values:
            return False  # a tie keeps the earlier trial
        self.front = [other for other in self.front if not _dominates(values, other, self._senses)]
        self.front.append(record)
        self.front.sort(key=lambda r: r.number)
        return True

    def summary(
        self,
        name: str,
        metric: str,
        direction: str,
        *,
        running: int = 0,
        stop_reason: StopReason | None = None,
        message: str | None = None,
    ) -> StudySummary:
        """The study's summary from these counts (``running`` trials on their backends now)."""
        return StudySummary(
            name=name,
            metric=metric,
            direction=direction,
            counts={**self.counts, TrialState.RUNNING: running},
            best=self.best,
            stop_reason=stop_reason,
            message=message,
            cost=self.cost,
            totals=dict(self.totals),
            front=tuple(self.front),
        )

    def spend(self, cost: float | None) -> None:
        """Adds what a trial cost, counted or not (a cancelled one is queued again)."""
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s.is_finished())


def _dominates(
    a: TrialRecord | tuple[float, ...], b: TrialRecord | tuple[float, ...], senses: tuple[bool, ...]
) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    av = a.objective_values if isinstance(a, TrialRecord) else a
    bv = b.objective_values if isinstance(b, TrialRecord) else b
    assert av is not None
    assert bv is not None
    signed = [(x, y) if up else (-x, -y) for x, y, up in zip(av, bv, senses, strict=True)]
    return all(x >= y for x, y in signed) and any(x > y for x, y in signed)


def pareto_front(records: Sequence[TrialRecord], maximize: tuple[bool, ...]) -> list[TrialRecord]:
    """The feasible completed trials of ``records`` that no other one dominates."""
    tally = Tally(maximize)
    for record in records:
        tally.add(record)
    return tally.front
