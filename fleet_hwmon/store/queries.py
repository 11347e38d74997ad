"""Read queries over the metrics tables, aggregated in SQL so large histories stay cheap.

Non-finite values never reach the tables (the records turn them into NULL), and aggregates
skip NULL, so an unknown value never pulls a mean towards 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleet_hwmon.store.writer import MetricsStore

# The busiest GPU of a sample; NULL when no GPU reports a value (MIG, NotSupported, no GPU).
GPU_UTILIZATION_SQL = "list_max(list_transform(gpus, lambda g: g.utilization_percent))"
GPU_MEMORY_USED_SQL = "list_sum(list_transform(gpus, lambda g: g.memory_used_bytes))"

# Resource name -> SQL expression of its 0-100 utilization in resource_utilization.
RESOURCE_SQL = {
    "cpu": "cpu_percent",
    "memory": "memory_percent",
    "gpu": GPU_UTILIZATION_SQL,
    "disk": "disk_usage_percent",
}


def _where(start: datetime | None, end: datetime | None, worker_id: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if start is not None:
        clauses.append("timestamp >= ?")
        params.append(start)
    if end is not None:
        clauses.append("timestamp <= ?")
        params.append(end)
    if worker_id is not None:
        clauses.append("worker_id = ?")
        params.append(worker_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def samples(store: MetricsStore, start: datetime | None = None, end: datetime | None = None,
            worker_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Raw sample rows (every column), oldest first."""
    where, params = _where(start, end, worker_id)
    sql = f"SELECT * FROM resource_utilization{where} ORDER BY timestamp"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return store.query_dicts(sql, params)


def bucketed(store: MetricsStore, bucket_seconds: float, start: datetime | None = None,
             end: datetime | None = None, worker_id: str | None = None) -> list[dict[str, Any]]:
    """Per worker and time bucket: mean and max of each resource's percent, sample count.

    Rows: ``{"worker_id", "bucket_start", "samples", "cpu_percent_mean", "cpu_percent_max",
    "memory_percent_mean", ..., "gpu_percent_mean", "gpu_percent_max", "disk_percent_mean", ...}``.
    Raises ``ValueError`` when ``bucket_seconds`` is not positive.
    """
    if not bucket_seconds or bucket_seconds <= 0:
        raise ValueError(f"bucket_seconds must be positive, got {bucket_seconds!r}")
    where, params = _where(start, end, worker_id)
    aggregates = ", ".join(
        f"avg({expr}) AS {name}_percent_mean, max({expr}) AS {name}_percent_max"
        for name, expr in RESOURCE_SQL.items()
    )
    micros = int(bucket_seconds * 1_000_000)
    sql = (f"SELECT worker_id, time_bucket(to_microseconds({micros}), timestamp) AS bucket_start, "
           f"count(*) AS samples, {aggregates} FROM resource_utilization{where} "
           f"GROUP BY ALL ORDER BY worker_id, bucket_start")
    return store.query_dicts(sql, params)


def summary(store: MetricsStore, worker_id: str | None = None) -> list[dict[str, Any]]:
    """Per worker: sample count, first/last time, and min / mean / max / current of each resource.

    Rows: ``{"worker_id", "samples", "first_sample", "last_sample", "cpu": {"min", "mean",
    "max", "current"}, "memory": {...}, "gpu": {...}, "disk": {...}}``; values are percent,
    ``None`` when never known. ``current`` is the latest sample's value, ``None`` when the latest
    sample could not read it (``arg_max_null``: a stale older value is not shown as current,
    the same rule as the monitor's in-memory summary).
    """
    where, params = _where(None, None, worker_id)
    parts = []
    for name, expr in RESOURCE_SQL.items():
        parts.append(f"min({expr}) AS {name}_min, avg({expr}) AS {name}_mean, max({expr}) AS {name}_max, "
                     f"arg_max_null({expr}, timestamp) AS {name}_current")
    sql = (f"SELECT worker_id, count(*) AS samples, min(timestamp) AS first_sample, "
           f"max(timestamp) AS last_sample, {', '.join(parts)} FROM resource_utilization{where} "
           f"GROUP BY worker_id ORDER BY worker_id")
    rows = []
    for row in store.query_dicts(sql, params):
        out = {k: row[k] for k in ("worker_id", "samples", "first_sample", "last_sample")}
        for name in RESOURCE_SQL:
            out[name] = {stat: _float(row[f"{name}_{stat}"]) for stat in ("min", "mean", "max", "current")}
        rows.append(out)
    return rows


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
