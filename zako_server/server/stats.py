"""The figures both reporting faces read: the Stats RPC (service.py) and Prometheus
(metrics.py).

    engine counters ──TaskFigures.of──▶ TaskFigures ──▶ Stats.tasks / zako_tasks_total ...
    observations ──Histogram.observe──▶ Histogram   ──▶ Stats histograms / *_seconds

Totals are computed here once, so the two faces cannot disagree on what "failed" sums.
Histograms use fixed log-spaced buckets from 100 µs to ~100 s: percentiles are estimated
within a bucket (linear interpolation), which is what Prometheus-style histograms give
too, and memory stays constant however many tasks pass.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from zako_sdk.stats import quantile

# 1e-4 s .. ~1.3e2 s, four buckets per decade.
BOUNDS: tuple[float, ...] = tuple(round(1e-4 * 10 ** (i / 4), 6) for i in range(25))


@dataclass
class Histogram:
    """Counts of observations (seconds) per bucket, plus count and sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def copy(self) -> Histogram:
        return Histogram(list(self.counts), self.count, self.total)

    def quantile(self, q: float) -> float:
        """Estimate the q-quantile (0..1): the SDK's estimate, so a server's p99 and the
        p99 `stats_all()` computes from summed buckets are the same function."""
        return quantile(BOUNDS, self.counts, q)


class TaskCounts(Protocol):
    """What the engine counts as tasks end (records.Counters), read-only here."""

    @property
    def accepted(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def failed(self) -> Mapping[str, int]: ...
    @property
    def rejected(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class TaskFigures:
    """Task outcomes since start, as reported: totals and the per-reason breakdowns.

    `failed_by_reason` is keyed by failure reason, `rejected_by_reason` by status name;
    each total is the sum of its breakdown.
    """

    accepted: int
    completed: int
    failed: int
    cancelled: int
    rejected: int
    failed_by_reason: Mapping[str, int]
    rejected_by_reason: Mapping[str, int]

    @classmethod
    def of(cls, counts: TaskCounts) -> TaskFigures:
        failed, rejected = dict(counts.failed), dict(counts.rejected)
        return cls(
            accepted=counts.accepted,
            completed=counts.completed,
            failed=sum(failed.values()),
            cancelled=counts.cancelled,
            rejected=sum(rejected.values()),
            failed_by_reason=failed,
            rejected_by_reason=rejected,
        )
