"""What one scrape reads: a plain, immutable copy of the fleet's latest state.

The owners of the state (the integration, a monitor) copy references under their own narrow
locks and hand them to :func:`fleet_snapshot`; the collector builds the exposition from the
copy, outside every lock. Everything here is read through public methods or plain dicts and
read defensively: a figure a source does not offer is ``None`` and its metric is left out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from fleet_hwmon.alerts import HardwareAlert
from fleet_hwmon.metrics.tally import TaskTally
from fleet_hwmon.sample import ResourceUtilization, utc_now


@dataclass(frozen=True, slots=True)
class WorkerState:
    """One worker as a scrape sees it. ``latest`` is its latest sample (``None`` before the
    first); ``stale`` / ``excluded`` are the scheduler's verdicts (``None`` where no scheduler
    watches the worker, e.g. a lone monitor); ``alerts`` are the alerts firing now."""

    worker_id: str
    latest: ResourceUtilization | None
    stale: bool | None = None
    excluded: bool | None = None
    alerts: tuple[HardwareAlert, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """The whole fleet at ``taken_at`` (UTC; sample ages are measured against it).

    ``store``: the store's counters (see :func:`store_counters`); ``scheduler``: the
    integration's ``scheduler_statistics()`` dict; ``tasks``: a copy of the finished tasks'
    tally. Any of them is ``None`` when the source has none.
    """

    taken_at: datetime
    workers: tuple[WorkerState, ...] = ()
    store: Mapping[str, Any] | None = None
    scheduler: Mapping[str, Any] | None = None
    tasks: TaskTally | None = None


def store_counters(store: Any) -> dict[str, Any] | None:
    """A store's counters as a plain dict: ``written_rows`` (table -> rows), ``rejected_rows`` and
    ``dropped_rows`` (a number, or counts per table and reason, with their ``*_total``),
    ``pending_rows`` (the write queue), ``failed_flushes``. Reads the store's ``status()`` dict
    when it has one, else the fields of its ``stats()`` record; ``None`` for no store."""
    if store is None:
        return None
    status = getattr(store, "status", None)
    if callable(status):
        found = status()
        if isinstance(found, Mapping):
            return dict(found)
    stats = getattr(store, "stats", None)
    if callable(stats):
        record = stats()
        if dataclasses.is_dataclass(record):
            return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
        if isinstance(record, Mapping):
            return dict(record)
    return None


def worker_state(worker_id: str, monitor: Any, stale: bool | None = None,
                 excluded: bool | None = None) -> WorkerState:
    """A worker's state read from its monitor's public methods (the latest sample and the
    alerts firing, each copied under the monitor's own lock)."""
    return WorkerState(worker_id, monitor.get_current_metrics(), stale, excluded,
                       tuple(monitor.get_alerts(active_only=True)))


def fleet_snapshot(monitors: Mapping[str, Any], *, verdicts: Mapping[str, tuple[bool, bool]] | None = None,
                   store: Any = None, scheduler: Mapping[str, Any] | None = None,
                   tasks: TaskTally | None = None, taken_at: datetime | None = None) -> FleetSnapshot:
    """A :class:`FleetSnapshot` of ``monitors`` (worker id -> monitor), in worker-id order.
    ``verdicts`` maps a worker id to ``(stale, excluded)``; a worker with a verdict but no
    monitor is still listed (without a sample)."""
    verdicts = verdicts or {}
    workers = []
    for worker_id in sorted(set(monitors) | set(verdicts)):
        stale, excluded = verdicts.get(worker_id, (None, None))
        monitor = monitors.get(worker_id)
        workers.append(WorkerState(worker_id, None, stale, excluded) if monitor is None
                       else worker_state(worker_id, monitor, stale, excluded))
    return FleetSnapshot(taken_at or utc_now(), tuple(workers), store_counters(store), scheduler, tasks)
