"""Running tallies the scheduler keeps for the metrics endpoint: bucketed counts of decision
latencies and task durations, tasks by type and status. Pure, no locks: the owner updates them
under its own lock (one bisect and two additions per event) and hands a :meth:`copy` to a
scrape, so scraping never holds that lock while it builds the exposition."""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field

# Seconds. A decision takes tens of microseconds on a small fleet and about a millisecond at
# 1,000 workers; tasks run from under a second to hours.
DECISION_BUCKETS_S: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1, 0.25)
TASK_DURATION_BUCKETS_S: tuple[float, ...] = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                                              1800.0, 3600.0)


@dataclass
class BucketCounts:
    """Observations counted per upper bound (``le``, inclusive), their count and their sum; a
    Prometheus histogram's figures. ``counts[i]`` counts values in (bounds[i-1], bounds[i]];
    the last slot counts values above every bound (the ``+Inf`` bucket takes them all)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"bucket bounds must be strictly increasing, got {self.bounds}")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.observations += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count of values <= le), ..., ("+Inf", all)]`` as Prometheus exposes them."""
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            out.append((repr(float(bound)), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out

    def copy(self) -> BucketCounts:
        return BucketCounts(self.bounds, list(self.counts), self.total, self.observations)


@dataclass
class TaskTally:
    """Finished tasks by (type, status) and their durations by type. A task without a type is
    counted under the type ``""`` (Prometheus reads an empty label as no label); a task whose
    duration is unknown is counted but not put in a duration bucket."""

    finished: collections.Counter = field(default_factory=collections.Counter)  # (type, status) -> n
    durations: dict[str, BucketCounts] = field(default_factory=dict)  # type -> seconds

    def observe(self, task_type: str | None, success: bool, duration_s: float | None) -> None:
        task_type = task_type or ""
        self.finished[(task_type, "succeeded" if success else "failed")] += 1
        if duration_s is not None:
            buckets = self.durations.get(task_type)
            if buckets is None:
                buckets = self.durations[task_type] = BucketCounts(TASK_DURATION_BUCKETS_S)
            buckets.observe(duration_s)

    def copy(self) -> TaskTally:
        return TaskTally(collections.Counter(self.finished),
                            {t: b.copy() for t, b in self.durations.items()})
