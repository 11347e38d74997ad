"""Outcomes of a replay, computed from its event log and the workers' ground truth (pure)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from fleet_hwmon.replay.sim import ReplayResult

# key, short label, unit (lower is better for all)
METRICS: tuple[tuple[str, str, str], ...] = (
    ("makespan_s", "makespan", "s"),
    ("mean_wait_s", "wait", "s"),
    ("p95_wait_s", "p95 wait", "s"),
    ("mean_turnaround_s", "turnaround", "s"),
    ("failures", "failures", ""),
    ("overload_worker_s", ">95 %", "worker-s"),
    ("overload_share_percent", ">95 %", "% time"),
    ("incompatible_placements", "no hw", ""),
    ("utilization_cv", "util CV", ""),
)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` (0-100) percentile by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def compute_outcomes(result: ReplayResult) -> dict[str, Any]:
    """Makespan (last finish), waits (time queued: from arrival to the first start, plus from
    each failed attempt's end to the next start), turnaround (final finish - arrival), failures
    (failed attempts; ``tasks_failed``: tasks whose last attempt failed too), worker-seconds
    above 95 % of any resource (ground truth, background included), placements on a worker
    lacking the hardware, and the coefficient of variation of the workers' mean CPU utilization
    over the makespan (0 = perfectly even)."""
    arrive: dict[str, float] = {}
    queued_since: dict[str, float] = {}
    wait: dict[str, float] = {}
    last: dict[str, tuple[float, str | None]] = {}
    errors: dict[str, int] = {}
    for t, kind, task_id, _worker, detail in result.events:
        if kind == "arrive":
            arrive[task_id] = queued_since[task_id] = t
            wait[task_id] = 0.0
        elif kind == "start":
            wait[task_id] += t - queued_since.pop(task_id)
        elif kind == "finish":
            last[task_id] = (t, detail)
            if detail is not None:
                queued_since[task_id] = t
                errors[detail] = errors.get(detail, 0) + 1
    waits = list(wait.values())
    turnaround = [t - arrive[k] for k, (t, _) in last.items()]
    overload = sum(w["overload_s"] for w in result.workers.values())
    makespan = max((t for t, _ in last.values()), default=0.0)
    utilization = [w["cpu_utilization"] for w in result.workers.values()]
    mean_util = statistics.fmean(utilization) if utilization else 0.0
    by_resource: dict[str, float] = {}
    for worker in result.workers.values():
        for resource, seconds in worker["overload_by_resource_s"].items():
            by_resource[resource] = by_resource.get(resource, 0.0) + seconds
    return {
        "tasks": len(arrive),
        "completed": sum(1 for _, d in last.values() if d is None),
        "failures": sum(errors.values()),
        "tasks_failed": sum(1 for _, d in last.values() if d is not None),
        "failures_by_error": errors,
        "makespan_s": makespan,
        "mean_wait_s": statistics.fmean(waits) if waits else 0.0,
        "p95_wait_s": percentile(waits, 95),
        "mean_turnaround_s": statistics.fmean(turnaround) if turnaround else 0.0,
        "overload_worker_s": overload,
        "overload_share_percent": 100.0 * overload / (makespan * len(result.workers)) if makespan else 0.0,
        "overload_by_resource_s": by_resource,
        "background_overload_worker_s": sum(w["background_overload_s"] for w in result.workers.values()),
        "incompatible_placements": result.incompatible_placements,
        "mean_cpu_utilization": mean_util,
        "utilization_cv": statistics.pstdev(utilization) / mean_util if mean_util else 0.0,
        "wall_s": result.wall_s,
    }


def mean_outcomes(outcomes: Iterable[dict[str, Any]]) -> dict[str, float]:
    """The mean over seeds of every numeric outcome."""
    rows = list(outcomes)
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: statistics.fmean(r[k] for r in rows) for k in keys}
