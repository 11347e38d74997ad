"""Counts of the scheduler's decisions and exclusions, and how long decisions take (pure)."""

from __future__ import annotations

import collections
import itertools
import operator
from typing import Any, Mapping

import numpy as np

from fleet_hwmon.metrics.tally import DECISION_BUCKETS_S, BucketCounts
from fleet_hwmon.scoring.decide import SchedulingDecision
from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind

_LATENCY_WINDOW = 4096  # decisions whose latency the percentiles cover
# Decisions, and exclusions still to count by kind, kept uncounted at most: a few hundred small
# decisions are counted at once; one with hundreds of exclusions to count, at once, as it comes.
_PENDING_DECISIONS, _PENDING_EXCLUSIONS = 256, 512
_kind = operator.attrgetter("kind")
_chosen = operator.attrgetter("chosen_worker_id")
_original = operator.attrgetter("original_worker_id")


class SchedulerStatistics:
    """What the scheduler did, as plain data for reports and exporters. Not thread-safe: the
    scheduler calls it under its lock.

    Decisions are counted in batches, when the figures are read or once a few hundred (or a
    few hundred exclusions to count by kind) wait: a decision only queues itself, and a batch is
    counted with a few C-level passes, cheaper than counting each decision as it comes."""

    def __init__(self) -> None:
        self.outcomes = collections.Counter({"original": 0, "alternative": 0, "no_worker": 0})
        self.exclusions = collections.Counter({kind: 0 for kind in ExclusionKind})
        self.tasks_per_worker: collections.Counter[str] = collections.Counter()
        self.tasks = collections.Counter({"succeeded": 0, "failed": 0})
        self._latency_s = np.zeros(_LATENCY_WINDOW)
        self._latency_count = 0
        self._latency_sum_s = 0.0
        self._latency_buckets = BucketCounts(DECISION_BUCKETS_S)  # all decisions, for a Prometheus histogram
        self._asked_again = 0
        self._pending: list[SchedulingDecision] = []  # decided, not counted yet, and how long each took
        self._pending_latency_s: list[float | None] = []
        self._uncounted: list[tuple[Exclusion, ...]] = []  # their exclusions not counted by kind yet
        self._pending_exclusions = 0

    def asked_again(self) -> None:
        """A held task asked about again with nothing changed: answered without a decision."""
        self._asked_again += 1

    def decided(self, decision: SchedulingDecision, latency_s: float | None = None,
                kinds: Mapping[ExclusionKind, int] | None = None) -> None:
        """Count ``decision`` (and its exclusions by kind); ``latency_s``: how long it took;
        ``kinds``: its exclusions already counted by kind (the column path counts them from its
        masks), else they are counted here."""
        self._pending.append(decision)
        self._pending_latency_s.append(latency_s)
        if kinds is not None:
            self.exclusions.update(kinds)
        else:
            self._uncounted.append(decision.exclusions)
            self._pending_exclusions += len(decision.exclusions)
        if len(self._pending) >= _PENDING_DECISIONS or self._pending_exclusions >= _PENDING_EXCLUSIONS:
            self._count_pending()

    def _count_pending(self) -> None:
        decisions, latencies_s, uncounted = self._pending, self._pending_latency_s, self._uncounted
        if not decisions:
            return
        self._pending, self._pending_latency_s, self._uncounted, self._pending_exclusions = [], [], [], 0
        chosen = list(map(_chosen, decisions))
        no_worker = chosen.count(None)
        kept = sum(1 for original, worker in zip(map(_original, decisions), chosen)
                   if worker is not None and original == worker)
        self.outcomes["no_worker"] += no_worker
        self.outcomes["original"] += kept
        self.outcomes["alternative"] += len(decisions) - no_worker - kept
        self.tasks_per_worker.update(worker for worker in chosen if worker is not None)
        self.exclusions.update(map(_kind, itertools.chain.from_iterable(uncounted)))
        for latency_s in latencies_s:
            if latency_s is not None:
                self._latency_s[self._latency_count % _LATENCY_WINDOW] = latency_s
                self._latency_count += 1
                self._latency_sum_s += latency_s
                self._latency_buckets.observe(latency_s)

    def finished(self, success: bool) -> None:
        self.tasks["succeeded" if success else "failed"] += 1

    def as_dict(self, resource_aware: bool) -> dict[str, Any]:
        """Plain data: ``decisions``, ``decisions_by_outcome`` (``original``: the original
        scheduler's choice kept, ``alternative``, ``no_worker``), ``alternatives_chosen`` and
        ``no_worker`` (the same counts, flat), ``exclusions_by_kind`` (every
        :class:`ExclusionKind` value), ``tasks_per_worker``, ``tasks_succeeded``,
        ``tasks_failed``, ``resource_aware`` and ``decision_latency_s`` (``count``, ``sum``,
        ``p50``, ``p99`` over the latest decisions, ``None`` before the first; ``buckets``: the
        count of all decisions at most ``le`` seconds, as ``[(le, count), ..., ("+Inf", count)]``)
        and ``asked_again_unchanged`` (a held task asked about again before anything changed)."""
        self._count_pending()
        recent = self._latency_s[:min(self._latency_count, _LATENCY_WINDOW)]
        p50, p99 = (np.percentile(recent, [50, 99]).tolist() if recent.size else (None, None))
        return {
            "decisions": sum(self.outcomes.values()),
            "decisions_by_outcome": dict(self.outcomes),
            "alternatives_chosen": self.outcomes["alternative"],
            "no_worker": self.outcomes["no_worker"],
            "tasks_succeeded": self.tasks["succeeded"],
            "tasks_failed": self.tasks["failed"],
            "exclusions_by_kind": {kind.value: count for kind, count in self.exclusions.items()},
            "tasks_per_worker": dict(self.tasks_per_worker),
            "resource_aware": resource_aware,
            "asked_again_unchanged": self._asked_again,
            "decision_latency_s": {"count": self._latency_count, "sum": self._latency_sum_s, "p50": p50, "p99": p99,
                                   "buckets": self._latency_buckets.cumulative()},
        }
