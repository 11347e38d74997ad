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
    ("failures", "failed attempts", ""),
    ("tasks_failed", "failed for good", ""),
    ("dropped_work_percent", "work dropped", "%"),
    ("overload_share_percent", ">95 %", "% time"),
    ("idle_while_waiting_percent", "idle while waiting", "% core-time"),
    ("decisions_per_placed_task", "decisions", "per start"),
    ("tenant_cpu_taken_percent", "tenant CPU taken", "%"),
    ("incompatible_placements", "no hw", ""),
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
    """The figures of one run, in seconds, counts and percent:

    * ``makespan_s``: the last end (the run's end when it did not finish), beside
      ``makespan_lower_bound_s``; ``finished`` and ``unfinished_tasks``;
    * waits: time queued, from arrival to the first start plus from each failed attempt's end to
      the next start (a task still queued at the end waits until then); mean and p95;
    * ``failures``: failed attempts (``failures_by_error`` by message); ``tasks_failed``: tasks
      whose last attempt failed too, or that no worker has the hardware for, and
      ``dropped_work_percent``, their share of the workload's work (never done);
    * time above 95 % of any resource (ground truth, background included) in worker-seconds and
      as a share of the fleet's worker-time; ``idle_while_waiting_percent``: core-time idle on
      workers that had a free slot and room for a waiting task, over the fleet's core-time, and
      ``idle_while_waiting_by_reason``, the same split by why the policy held that task off the
      worker (its ``held_on``: an exclusion kind, ``no free slot``, ``not decided``; empty for a
      policy that does not say);
    * ``tenant_cpu_taken_percent``: the share of the other tenants' CPU demand our tasks took;
    * ``decisions_per_placed_task`` (the policy's own count, else how often it was asked) and
      ``asks_per_placed_task`` per started attempt;
    * ``isolation_quiet_percent``: the share of quiet / exclusive tasks' samples that ran under
      the utilisation threshold (None when the workload has none);
    * placements on a worker lacking the hardware, and the coefficient of variation of the
      workers' mean CPU utilization (0 = perfectly even)."""
    arrive: dict[str, float] = {}
    queued_since: dict[str, float] = {}
    wait: dict[str, float] = {}
    last: dict[str, tuple[float, str | None]] = {}
    errors: dict[str, int] = {}
    starts = 0
    for t, kind, task_id, worker_id, detail in result.events:
        if kind == "arrive":
            arrive[task_id] = queued_since[task_id] = t
            wait[task_id] = 0.0
        elif kind == "start":
            starts += 1
            wait[task_id] += t - queued_since.pop(task_id)
        elif kind == "finish":
            last[task_id] = (t, detail)
            if worker_id is None:  # refused at arrival: never queued
                queued_since.pop(task_id, None)
            elif detail is not None:
                queued_since[task_id] = t
                errors[detail] = errors.get(detail, 0) + 1
    for task_id, since in queued_since.items():  # still queued when the run was cut
        wait[task_id] += result.end_s - since
    waits = list(wait.values())
    workers = result.workers.values()
    overload = sum(w["overload_s"] for w in workers)
    makespan = max((t for t, _ in last.values()), default=0.0) if result.finished else result.end_s
    utilization = [w["cpu_utilization"] for w in workers]
    mean_util = statistics.fmean(utilization) if utilization else 0.0
    fleet_core_s = sum(w["cores"] for w in workers) * makespan
    by_resource: dict[str, float] = {}
    for worker in workers:
        for resource, seconds in worker["overload_by_resource_s"].items():
            by_resource[resource] = by_resource.get(resource, 0.0) + seconds
    tenant_core_s = sum(w["tenant_core_s"] for w in workers)
    isolation_samples = sum(n for n, _ in result.isolation.values())
    decisions = result.decisions if result.decisions is not None else result.asks
    final_state = [d for _, d in last.values()]
    return {
        "tasks": len(arrive),
        "finished": result.finished,
        "unfinished_tasks": result.unfinished_tasks,
        "stop_reason": result.stop_reason,
        "completed": sum(1 for d in final_state if d is None),  # a task's last attempt succeeded
        "failures": sum(errors.values()),
        "tasks_failed": result.tasks_failed,
        "dropped_work_percent": result.dropped_work_percent,
        "failures_by_error": errors,
        "makespan_s": makespan,
        "makespan_lower_bound_s": result.makespan_lower_bound_s,
        "mean_wait_s": statistics.fmean(waits) if waits else 0.0,
        "p95_wait_s": percentile(waits, 95),
        "mean_turnaround_s": statistics.fmean([t - arrive[k] for k, (t, _) in last.items()]) if last else 0.0,
        "overload_worker_s": overload,
        "overload_share_percent": 100.0 * overload / (makespan * len(result.workers)) if makespan else 0.0,
        "overload_by_resource_s": by_resource,
        "background_overload_worker_s": sum(w["background_overload_s"] for w in workers),
        "idle_while_waiting_percent": (100.0 * sum(w["idle_while_waiting_core_s"] for w in workers) / fleet_core_s
                                       if fleet_core_s else 0.0),
        "idle_while_waiting_by_reason": _by_reason(workers, fleet_core_s),
        "tenant_cpu_taken_percent": (100.0 * sum(w["tenant_taken_core_s"] for w in workers) / tenant_core_s
                                     if tenant_core_s else 0.0),
        "placed": starts,
        "decisions_per_placed_task": decisions / starts if starts else 0.0,
        "asks_per_placed_task": result.asks / starts if starts else 0.0,
        "isolation_samples": isolation_samples,
        "isolation_quiet_percent": (100.0 * sum(q for _, q in result.isolation.values()) / isolation_samples
                                    if isolation_samples else None),
        "incompatible_placements": result.incompatible_placements,
        "mean_cpu_utilization": mean_util,
        "utilization_cv": statistics.pstdev(utilization) / mean_util if mean_util else 0.0,
        "wall_s": result.wall_s,
    }


def mean_outcomes(outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of every numeric outcome (None where a seed has none), and of each
    figure of a breakdown (``idle_while_waiting_by_reason``, ``overload_by_resource_s``: 0 where
    a seed has none, largest first); ``finished`` is true only when every seed finished."""
    rows = list(outcomes)
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float, type(None))) and not isinstance(v, bool)]
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        out[key] = statistics.fmean(values) if values else None
    for key in ("idle_while_waiting_by_reason", "overload_by_resource_s"):
        parts = {part for r in rows for part in r.get(key, {})}
        means = {part: statistics.fmean(r.get(key, {}).get(part, 0.0) for r in rows) for part in parts}
        out[key] = dict(sorted(means.items(), key=lambda kv: -kv[1]))
    out["finished"] = all(r["finished"] for r in rows)
    return out


def _by_reason(workers: Iterable[dict[str, Any]], fleet_core_s: float) -> dict[str, float]:
    """Idle-while-waiting core-time per reason the policy gave, percent of the fleet's core-time,
    largest first."""
    totals: dict[str, float] = {}
    for worker in workers:
        for reason, core_s in worker.get("idle_by_reason_core_s", {}).items():
            totals[reason] = totals.get(reason, 0.0) + core_s
    if not fleet_core_s:
        return {}
    return {reason: 100.0 * core_s / fleet_core_s for reason, core_s in sorted(totals.items(), key=lambda kv: -kv[1])}
