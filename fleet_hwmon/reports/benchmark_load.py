"""The load each benchmark task ran under, read from the metrics store (one SQL query).

A benchmark is a task placed with ``requirements.isolation`` ``"quiet"`` or ``"exclusive"`` (its
scheduling decision records the level): its figures are only worth something when its worker was
otherwise calm. For each run of such a task (a ``task_resource_usage`` row), the samples of its
worker attributed to it (``task_ids`` holds the task, taken between its start and end) give the
peak and mean CPU and GPU utilisation (busiest GPU) it ran under, and how many of those samples
stayed at or under the isolation threshold: CPU, and GPU for a task its decision treated as a GPU
task, at most ``quiet_threshold_percent`` (the scheduler's, 80 % by default); for an exclusive
task also no other task of ours in the sample. A sample with an unknown figure is neither under
nor over. Percent values are 0-100; unknown is ``None``.
"""

from __future__ import annotations

from typing import Any, Protocol

from fleet_hwmon.reports.fleet_metrics import METRICS_BY_NAME

SAMPLES = "resource_utilization"
TASKS = "task_resource_usage"
DECISIONS = "scheduling_decisions"
MAX_RUNS = 500


class Reader(Protocol):
    def has(self, table: str, *columns: str) -> bool: ...

    def dicts(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]: ...


def benchmark_load(reader: Reader, threshold_percent: float) -> dict[str, Any]:
    """``{"threshold_percent", "runs", "runs_under_threshold", "samples", "samples_under_threshold",
    "under_threshold_percent", "shown", "rows"}``; each row a run: ``task_id``, ``task_type``,
    ``worker_id``, ``isolation``, ``needs_gpu`` (``None`` in files that predate it), ``start_time``,
    ``end_time``, ``duration_s``, ``success``, ``samples``, ``peak_cpu_percent``,
    ``mean_cpu_percent``, ``peak_gpu_percent``, ``mean_gpu_percent``, ``samples_shared`` (another
    task of ours beside it), ``samples_over_threshold``, ``samples_under_threshold``,
    ``under_threshold_percent`` and ``stayed_under_threshold`` (True: every sample under; False:
    one over; None: no sample, or only unknown ones besides those under). Latest runs first, at
    most ``MAX_RUNS`` rows; the totals count every run."""
    out: dict[str, Any] = {"threshold_percent": threshold_percent, "runs": 0, "runs_under_threshold": 0,
                           "samples": 0, "samples_under_threshold": 0, "under_threshold_percent": None,
                           "shown": 0, "rows": []}
    if not (reader.has(DECISIONS, "task_id", "isolation", "chosen_worker_id", "timestamp")
            and reader.has(TASKS, "task_id", "worker_id", "start_time", "end_time")
            and reader.has(SAMPLES, "worker_id", "timestamp", "task_ids", "cpu_percent", "gpus")):
        return out
    needs_gpu = "arg_max(needs_gpu, timestamp)" if reader.has(DECISIONS, "needs_gpu") else "NULL::BOOLEAN"
    cpu = METRICS_BY_NAME["cpu_percent"].sql
    gpu = METRICS_BY_NAME["gpu_utilization_percent"].sql
    optional = ", ".join(f'r."{c}"' if reader.has(TASKS, c) else f'NULL AS "{c}"'
                         for c in ("task_type", "duration_s", "success"))
    rows = reader.dicts(f"""
        WITH benchmarks AS (
            SELECT task_id, arg_max(isolation, timestamp) AS isolation, {needs_gpu} AS needs_gpu
            FROM {DECISIONS} WHERE chosen_worker_id IS NOT NULL AND isolation IN ('quiet', 'exclusive')
            GROUP BY task_id),
        attributed AS (
            SELECT r.task_id, r.worker_id, r.start_time, r.end_time, {optional}, b.isolation, b.needs_gpu,
                   s.cpu, s.gpu, s.tasks_beside
            FROM {TASKS} r JOIN benchmarks b USING (task_id)
            LEFT JOIN (SELECT worker_id, timestamp, unnest(task_ids) AS task_id, {cpu} AS cpu, {gpu} AS gpu,
                              len(task_ids) AS tasks_beside FROM {SAMPLES} WHERE len(task_ids) > 0) s
                ON s.worker_id = r.worker_id AND s.task_id = r.task_id
                AND s.timestamp >= r.start_time AND (r.end_time IS NULL OR s.timestamp <= r.end_time)),
        judged AS (
            SELECT *, CASE WHEN cpu > $1 OR (needs_gpu AND gpu > $1) OR (isolation = 'exclusive' AND tasks_beside > 1)
                           THEN 'over'
                           WHEN cpu IS NULL OR (needs_gpu AND gpu IS NULL) THEN 'unknown'
                           ELSE 'under' END AS verdict
            FROM attributed)
        SELECT task_id, any_value(task_type) AS task_type, worker_id, any_value(isolation) AS isolation,
               any_value(needs_gpu) AS needs_gpu, start_time, end_time, any_value(duration_s) AS duration_s,
               any_value(success) AS success, count(tasks_beside) AS samples,
               max(cpu) AS peak_cpu_percent, avg(cpu) AS mean_cpu_percent,
               max(gpu) AS peak_gpu_percent, avg(gpu) AS mean_gpu_percent,
               count_if(coalesce(tasks_beside, 0) > 1) AS samples_shared,
               count_if(tasks_beside IS NOT NULL AND verdict = 'over') AS samples_over_threshold,
               count_if(tasks_beside IS NOT NULL AND verdict = 'under') AS samples_under_threshold
        FROM judged GROUP BY task_id, worker_id, start_time, end_time
        ORDER BY start_time DESC, task_id, worker_id""", [float(threshold_percent)])
    for row in rows:
        samples, under, over = row["samples"], row["samples_under_threshold"], row["samples_over_threshold"]
        row["under_threshold_percent"] = 100.0 * under / samples if samples else None
        row["stayed_under_threshold"] = False if over else (True if samples and under == samples else None)
    out.update(runs=len(rows), runs_under_threshold=sum(1 for r in rows if r["stayed_under_threshold"]),
               samples=sum(r["samples"] for r in rows),
               samples_under_threshold=sum(r["samples_under_threshold"] for r in rows),
               shown=min(len(rows), MAX_RUNS), rows=rows[:MAX_RUNS])
    if out["samples"]:
        out["under_threshold_percent"] = 100.0 * out["samples_under_threshold"] / out["samples"]
    return out
