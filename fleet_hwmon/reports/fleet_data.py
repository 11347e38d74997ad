"""Everything the fleet report shows, read from the metrics store with SQL aggregation.

:func:`build_report_data` returns one plain dict (datetimes stay ``datetime``; the JSON writer
turns them into ISO 8601 UTC). Large tables are aggregated in DuckDB: per-worker statistics of
every metric in two scans, the time series per worker and for the fleet in one grouped query with
``time_bucket``, and only the latest N tasks / alerts / decisions are fetched row by row, next to
their aggregate counts. Missing tables (a file the monitor never wrote tasks to) and missing
columns (a file from an older version) read as empty / unknown, never as an error. Unknown is
``None`` everywhere, never 0 (DESIGN rule 2).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from fleet_hwmon.reports.benchmark_load import benchmark_load
from fleet_hwmon.reports.fleet_metrics import (
    METRICS,
    METRICS_BY_NAME,
    RESOURCES,
    simulated_metric,
    simulated_resources,
    simulated_task_columns,
)
from fleet_hwmon.sample import finite
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.tasks import hardware_verdict
from fleet_hwmon.store.writer import MetricsStore

SAMPLES = "resource_utilization"
TASKS = "task_resource_usage"
ALERTS = "hardware_alerts"
DECISIONS = "scheduling_decisions"
CAPABILITIES = "hardware_capabilities"
REJECTED = "rejected_rows"
OUTCOMES = "task_outcomes"

REPORT_FORMAT = "fleet-hwmon-report/1"
MAX_TASK_ROWS = 500
MAX_ALERT_ROWS = 500
MAX_DECISION_ROWS = 200
TOP_CANDIDATES = 3
MAX_EXCLUSIONS_SHOWN = 8
SPARKLINE_POINTS = 60

# Bucket widths a reader can reason about, in seconds; beyond a day: whole days.
_NICE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


# -- small helpers --------------------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """Non-finite floats -> None, recursively through dicts and lists (DuckDB may hand back NaN
    from a file written by another tool; the report never shows or writes NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


def choose_bucket_seconds(span_s: float, max_points: int, requested: float | None = None,
                          min_seconds: float = 0.0) -> float:
    """Bucket width so that a series over ``span_s`` seconds has at most ``max_points`` buckets.

    ``time_bucket`` aligns buckets to a fixed origin, so a span touches at most
    ``ceil(span / width) + 1`` buckets; the width is therefore at least ``span / (max_points - 1)``.
    A ``requested`` width is kept when it satisfies that, else the smallest "nice" width that does
    (1 s, 2 s, 5 s, ... 1 h, ... whole days) that is also at least ``min_seconds`` (the sampling
    interval: a narrower bucket would leave every other bucket empty and break the lines).
    Raises ``ValueError`` when ``max_points < 2``.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points!r}")
    need = max(0.0, float(span_s)) / (max_points - 1)
    if requested is not None and requested > 0 and requested >= need:
        return float(requested)
    need = max(need, float(min_seconds or 0.0))
    for width in _NICE_BUCKETS:
        if width >= need:
            return float(width)
    return float(math.ceil(need / 86400) * 86400)


class _Reader:
    """Queries of one report over one store: knows which tables and columns exist."""

    def __init__(self, store: MetricsStore) -> None:
        self.store = store
        # A writer that runs a flush command right after a batch could return with rows appended
        # meanwhile still queued; repeating while rows are pending is cheap and safe either way.
        for _ in range(10):
            store.flush()
            if not store.stats().pending_rows:
                break
        rows = store.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_name IN (?, ?, ?, ?, ?, ?, ?)", [SAMPLES, TASKS, ALERTS, DECISIONS, CAPABILITIES, REJECTED,
                                                    OUTCOMES],
            flush=False)
        self.columns: dict[str, set[str]] = {}
        self.types: dict[tuple[str, str], str] = {}
        for table, column, data_type in rows:
            self.columns.setdefault(table, set()).add(column)
            self.types[(table, column)] = str(data_type)

    def has(self, table: str, *columns: str) -> bool:
        present = self.columns.get(table)
        return present is not None and all(c in present for c in columns)

    def dicts(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]:
        return [_finite(row) for row in self.store.query_dicts(sql, params, flush=False)]

    def one(self, sql: str, params: list | tuple = ()) -> dict[str, Any]:
        rows = self.dicts(sql, params)
        return rows[0] if rows else {}

    def col(self, table: str, column: str, alias: str | None = None) -> str:
        """``"column"`` when the table has it, else ``NULL`` (a file from an older version)."""
        expr = f'"{column}"' if self.has(table, column) else "NULL"
        return f'{expr} AS "{alias or column}"'


# -- samples: per-worker statistics, latest sample, time series --------------------------------

def _metric_stats(reader: _Reader) -> tuple[dict[str, dict], dict[str, dict], dict[str, Any]]:
    """Per worker and for the whole fleet: mean / min / max / stddev of every metric.

    Returns ``(per_worker, fleet, span)``; ``per_worker[worker_id]`` holds ``samples``,
    ``first_sample``, ``last_sample`` and ``metrics[name] = {"mean", "min", "max", "stddev"}``.
    Two scans grouped by worker only: plain columns, then the GPU list columns over the samples
    that have GPUs. The fleet figures are combined from the workers' (count, mean, variance)
    exactly (Chan et al.'s pairwise formula) rather than by a second grouping set, which would
    update every aggregate twice per row.
    """
    per_worker: dict[str, dict] = {}
    span: dict[str, Any] = {"samples": 0, "first_sample": None, "last_sample": None}
    if not reader.has(SAMPLES, "worker_id", "timestamp"):
        return per_worker, {}, span
    present = reader.columns[SAMPLES]
    plain = [m for m in METRICS if not m.gpu and m.name in present]
    gpu = [m for m in METRICS if m.gpu] if "gpus" in present else []
    partials: dict[str, list[tuple[int, float, float, float, float]]] = {}
    for group, extra, where in ((plain, "count(*) AS samples, min(timestamp) AS first_sample, "
                                        "max(timestamp) AS last_sample, ", ""),
                                (gpu, "", " WHERE len(gpus) > 0")):
        if not group and not extra:
            continue
        aggregates = ", ".join(
            f"count(m{i}) AS m{i}_n, avg(m{i}) AS m{i}_mean, min(m{i}) AS m{i}_min, max(m{i}) AS m{i}_max, "
            f"var_pop(m{i}) AS m{i}_var" for i in range(len(group)))
        inner = ", ".join(f"{m.sql} AS m{i}" for i, m in enumerate(group))
        sql = (f"SELECT worker_id, {extra}{aggregates or 'NULL AS none'} "
               f"FROM (SELECT worker_id, timestamp{', ' + inner if inner else ''} FROM {SAMPLES}{where}) "
               f"GROUP BY worker_id")
        for row in reader.dicts(sql):
            target = per_worker.setdefault(str(row["worker_id"]), {"metrics": {}})
            if extra:
                target.update(samples=row["samples"], first_sample=row["first_sample"],
                              last_sample=row["last_sample"])
                span["samples"] += row["samples"] or 0
                for key, pick in (("first_sample", min), ("last_sample", max)):
                    if row[key] is not None:
                        span[key] = row[key] if span[key] is None else pick(span[key], row[key])
            for i, metric in enumerate(group):
                n, mean, var = row[f"m{i}_n"] or 0, row[f"m{i}_mean"], row[f"m{i}_var"]
                stddev = math.sqrt(var * n / (n - 1)) if n > 1 and var is not None else None
                target["metrics"][metric.name] = {"mean": mean, "min": row[f"m{i}_min"],
                                                  "max": row[f"m{i}_max"], "stddev": stddev}
                if n and mean is not None:
                    partials.setdefault(metric.name, []).append(
                        (n, mean, var or 0.0, row[f"m{i}_min"], row[f"m{i}_max"]))
    return per_worker, {name: _combine(parts) for name, parts in partials.items()}, span


def _combine(parts: list[tuple[int, float, float, float, float]]) -> dict[str, float | None]:
    """Mean, min, max and sample stddev of the union of groups given as (n, mean, var_pop, min, max)."""
    total = sum(n for n, *_ in parts)
    mean = sum(n * m for n, m, *_ in parts) / total
    m2 = sum(n * var + n * (m - mean) ** 2 for n, m, var, *_ in parts)
    mins = [lo for *_, lo, _ in parts if lo is not None]
    maxs = [hi for *_, hi in parts if hi is not None]
    return _finite({"mean": mean, "min": min(mins) if mins else None, "max": max(maxs) if maxs else None,
                    "stddev": math.sqrt(max(0.0, m2) / (total - 1)) if total > 1 else None})


def _latest_samples(reader: _Reader) -> dict[str, dict]:
    """The newest sample of each worker: its headline values, simulated fields and GPUs."""
    if not reader.has(SAMPLES, "worker_id", "timestamp"):
        return {}
    present = reader.columns[SAMPLES]
    values = []
    for resource, name in RESOURCES.items():
        metric = METRICS_BY_NAME[name]
        available = "gpus" in present if metric.gpu else name in present
        values.append(f"{metric.sql if available else 'NULL'} AS {resource}_percent")
    values = ", ".join(values)
    extras = ", ".join(reader.col(SAMPLES, c) for c in ("simulated_fields", "gpus", "memory_total_bytes",
                                                        "cpu_count_effective", "clock_offset_s"))
    sql = (f"SELECT r.worker_id, r.timestamp, {values}, {extras} FROM {SAMPLES} r "
           f"JOIN (SELECT worker_id, max(timestamp) AS last FROM {SAMPLES} GROUP BY worker_id) l "
           f"ON r.worker_id = l.worker_id AND r.timestamp = l.last")
    return {str(row["worker_id"]): row for row in reader.dicts(sql)}


def _sick_gpus(gpus: Any) -> list[dict[str, Any]]:
    """The GPUs of a worker's latest sample whose health is not ok: index, uuid, health, reason."""
    return [{"index": g.get("index"), "uuid": g.get("uuid"), "health": g["health"], "reason": g.get("health_reason")}
            for g in gpus or () if isinstance(g, Mapping) and g.get("health") not in (None, "ok")]


def _sample_simulation(reader: _Reader) -> dict[str, set[str]] | None:
    """Per worker: every field any of its stored samples lists as simulated, plus ``gpus`` when
    any stored sample has a GPU marked ``simulated``. ``None`` when the store cannot tell (a file
    without either column); a worker whose samples are all measured maps to an empty set."""
    has_fields = reader.has(SAMPLES, "worker_id", "simulated_fields")
    has_gpu_flag = (reader.has(SAMPLES, "worker_id", "gpus")
                    and "simulated BOOLEAN" in reader.types.get((SAMPLES, "gpus"), ""))
    if not has_fields and not has_gpu_flag:
        return None
    parts = []
    if has_fields:
        parts.append(f"SELECT DISTINCT worker_id, unnest(simulated_fields) AS field FROM {SAMPLES}")
    if has_gpu_flag:
        parts.append(f"SELECT DISTINCT worker_id, 'gpus' AS field FROM {SAMPLES} "
                     f"WHERE len(gpus) > 0 AND list_contains(list_transform(gpus, lambda g: g.simulated), true)")
    out: dict[str, set[str]] = {}
    for row in reader.dicts(" UNION ".join(parts)):
        if row["field"] is not None:
            out.setdefault(str(row["worker_id"]), set()).add(str(row["field"]))
    return out


def _series(reader: _Reader, span: dict[str, Any], per_worker: dict[str, dict], max_points: int,
            requested: float | None) -> dict[str, Any]:
    """Per-worker and fleet time series of the headline resources, one grouped query.

    Per worker and bucket: mean and max of each resource over the samples in the bucket. Fleet
    per bucket: the mean of the workers' means, and the max of their maxima. All series share
    one time axis (bucket starts, empty buckets are ``None``) of at most ``max_points`` points.
    """
    empty = {"bucket_seconds": None, "times": [], "fleet": {}, "workers": {}}
    first, last = span.get("first_sample"), span.get("last_sample")
    if first is None or last is None:
        empty["bucket_seconds"] = choose_bucket_seconds(0, max_points, requested)
        return empty
    span_s = (last - first).total_seconds()
    # Typical sampling interval of a worker: its span over its samples (span, fleet, evenly sampled).
    sampled = [w for w in per_worker.values() if (w.get("samples") or 0) > 1]
    intervals = sorted((w["last_sample"] - w["first_sample"]).total_seconds() / (w["samples"] - 1) for w in sampled)
    interval = intervals[len(intervals) // 2] if intervals else 0.0
    bucket_s = choose_bucket_seconds(span_s, max_points, requested, min_seconds=min(interval, span_s))
    present = reader.columns[SAMPLES]
    exprs = {}
    for resource, name in RESOURCES.items():
        metric = METRICS_BY_NAME[name]
        if metric.gpu:
            exprs[resource] = metric.sql if "gpus" in present else "NULL"
        else:
            exprs[resource] = metric.sql if name in present else "NULL"
    while True:
        step_us = max(1, int(round(bucket_s * 1_000_000)))
        per_worker = ", ".join(f"avg({e}) AS {r}_mean, max({e}) AS {r}_max" for r, e in exprs.items())
        fleet = ", ".join(f"avg({r}_mean) AS {r}_mean, max({r}_max) AS {r}_max" for r in exprs)
        sql = (f"WITH b AS MATERIALIZED (SELECT worker_id, "
               f"epoch_us(time_bucket(to_microseconds({step_us}::BIGINT), timestamp)) AS bucket_us, "
               f"count(*) AS samples, {per_worker} FROM {SAMPLES} GROUP BY ALL) "
               f"SELECT false AS is_fleet, * FROM b UNION ALL "
               f"SELECT true, NULL, bucket_us, sum(samples), {fleet} FROM b GROUP BY bucket_us")
        rows = reader.dicts(sql)
        if not rows:
            return empty
        starts = [row["bucket_us"] for row in rows]
        first_us, last_us = min(starts), max(starts)
        count = (last_us - first_us) // step_us + 1
        if count <= max_points:
            break
        bucket_s *= 2  # cannot happen with the width rule; a guard against rounding surprises

    def blank() -> dict[str, dict[str, list]]:
        return {r: {"mean": [None] * count, "max": [None] * count} for r in exprs}

    fleet_series = blank()
    workers: dict[str, dict] = {}
    for row in rows:
        index = (row["bucket_us"] - first_us) // step_us
        target = fleet_series if row["is_fleet"] else workers.setdefault(str(row["worker_id"]), blank())
        for resource in exprs:
            target[resource]["mean"][index] = row[f"{resource}_mean"]
            target[resource]["max"][index] = row[f"{resource}_max"]
    times = [datetime.fromtimestamp((first_us + i * step_us) / 1_000_000, tz=timezone.utc) for i in range(count)]
    return {"bucket_seconds": step_us / 1_000_000, "times": times, "fleet": fleet_series, "workers": workers}


def sparkline(values: list[float | None], points: int = SPARKLINE_POINTS) -> list[float | None]:
    """``values`` averaged down to at most ``points`` values (``None`` where a group is unknown)."""
    if len(values) <= points:
        return list(values)
    out = []
    for i in range(points):
        group = [v for v in values[i * len(values) // points:(i + 1) * len(values) // points] if v is not None]
        out.append(sum(group) / len(group) if group else None)
    return out


# -- workers ------------------------------------------------------------------------------------

def _capability_rows(reader: _Reader) -> dict[str, dict]:
    if not reader.has(CAPABILITIES, "worker_id"):
        return {}
    columns = ", ".join(reader.col(CAPABILITIES, c) for c in ("hostname", "os", "cpu_count", "total_memory_bytes",
                                                              "hardware_types", "detected_at", "capabilities"))
    rows = {}
    for row in reader.dicts(f"SELECT worker_id, {columns} FROM {CAPABILITIES}"):
        caps = row.get("capabilities")
        if isinstance(caps, str):
            try:
                caps = json.loads(caps)
            except ValueError:
                caps = None
        row["capabilities"] = caps if isinstance(caps, dict) else {}
        rows[str(row["worker_id"])] = row
    return rows


def _gpu_entry(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        return None
    memory_gb = finite(item.get("memory_gb"))
    memory_bytes = finite(item.get("memory_total_bytes"))
    if memory_bytes is None and memory_gb is not None:
        memory_bytes = memory_gb * 2**30
    name = item.get("name")
    return {"name": None if name is None else str(name), "memory_bytes": memory_bytes,
            "cuda_compute": None if item.get("cuda_compute") is None else str(item.get("cuda_compute"))}


def _hardware(caps: Mapping[str, Any], cap_row: Mapping[str, Any], latest: Mapping[str, Any]) -> dict[str, Any]:
    """A worker's hardware from the coordinator capabilities, the detector's row, or its samples."""
    caps = caps if isinstance(caps, Mapping) else {}
    types = caps.get("hardware") or cap_row.get("hardware_types") or []
    cpu = caps.get("cpu") if isinstance(caps.get("cpu"), Mapping) else {}
    cores = next((finite(cpu.get(k)) for k in ("cores_effective", "cores", "count", "logical_cores")
                  if finite(cpu.get(k)) is not None), None)
    if cores is None:
        cores = finite(cap_row.get("cpu_count")) or finite(latest.get("cpu_count_effective"))
    memory = caps.get("memory") if isinstance(caps.get("memory"), Mapping) else {}
    stated_gib = finite(memory.get("total_gb"))
    measured = finite(cap_row.get("total_memory_bytes")) or finite(latest.get("memory_total_bytes"))
    # The stated figure is GiB rounded (to 2 places by the embedded workers): the measured bytes
    # win where they round to it, else the statement stands, in whole bytes.
    if stated_gib is None or (measured is not None and abs(measured / 2**30 - stated_gib) <= 0.006):
        memory_bytes = measured
    else:
        memory_bytes = float(round(stated_gib * 2**30))
    gpus = [g for g in map(_gpu_entry, caps.get("gpus") or []) if g]
    if not gpus and isinstance(caps.get("gpu"), Mapping) and caps["gpu"]:
        gpus = [g for g in [_gpu_entry(caps["gpu"])] if g]
    if not gpus:
        gpus = [g for g in (_gpu_entry({"name": s.get("name"), "memory_total_bytes": s.get("memory_total_bytes")})
                            for s in latest.get("gpus") or [] if isinstance(s, Mapping)) if g]
    return {"types": [str(t) for t in types] if isinstance(types, (list, tuple)) else [str(types)],
            "cpu_cores": cores, "memory_bytes": memory_bytes, "gpus": gpus,
            "hostname": cap_row.get("hostname"), "os": cap_row.get("os")}


def _workers(reader: _Reader, live: Mapping[str, dict] | None, stats: dict[str, dict],
             latest: dict[str, dict], series: dict[str, Any], last_exclusions: dict[str, dict],
             latest_decision: datetime | None) -> list[dict[str, Any]]:
    capability_rows = _capability_rows(reader)
    sampled_simulation = _sample_simulation(reader)
    ids = set(stats) | set(latest)
    ids |= set(map(str, live)) if live is not None else set(capability_rows)
    live = {str(k): v for k, v in (live or {}).items()}
    workers = []
    for worker_id in sorted(ids, key=_natural_key):
        view = live.get(worker_id) or {}
        last = latest.get(worker_id, {})
        cap_row = capability_rows.get(worker_id, {})
        caps = view.get("capabilities") if view.get("capabilities") is not None else cap_row.get("capabilities", {})
        current_view = view.get("current")
        if isinstance(current_view, Mapping):
            current = {f"{r}_percent": finite(current_view.get(f"{r}_percent")) for r in RESOURCES}
        else:
            current = {f"{r}_percent": finite(last.get(f"{r}_percent")) for r in RESOURCES}
        simulated_fields = view.get("simulated_fields") if "simulated_fields" in view else last.get("simulated_fields")
        simulated_fields = sorted({str(f) for f in simulated_fields or ()})
        # The statistics and charts cover the stored samples: what those say is simulated (the
        # current view's fields only when the store cannot tell).
        history_fields = (sorted(sampled_simulation.get(worker_id, set())) if sampled_simulation is not None
                          else simulated_fields)
        metrics = stats.get(worker_id, {}).get("metrics", {})
        exclusion = last_exclusions.get(worker_id)
        if exclusion is not None:
            exclusion = dict(exclusion, at_last_decision=exclusion["timestamp"] == latest_decision)
        worker_series = series["workers"].get(worker_id, {})
        workers.append({
            "worker_id": worker_id,
            "source": "live" if worker_id in live else "store",
            "status": None if view.get("status") is None else str(view.get("status")),
            # ``stale`` is True / False, or the reason it is stale (a string) as the integration gives it
            "stale": None if view.get("stale") is None else bool(view.get("stale")),
            "stale_reason": view["stale"] if isinstance(view.get("stale"), str) and view["stale"] else None,
            "overloaded": view.get("overloaded") if isinstance(view.get("overloaded"), bool) else None,
            "excluded_reason": None if view.get("excluded_reason") is None else str(view["excluded_reason"]),
            "excluded_resource": view.get("excluded_resource"),
            # the worker's clock minus the coordinator's (seconds), estimated from its samples
            "clock_offset_s": finite(view["clock_offset_s"] if "clock_offset_s" in view
                                     else last.get("clock_offset_s")),
            "sick_gpus": _sick_gpus(last.get("gpus")),
            "hardware": _hardware(caps, cap_row, last),
            "current": current,
            "simulated_fields": simulated_fields,
            "simulated": simulated_resources(simulated_fields),
            "samples_simulated_fields": history_fields,
            "samples_simulated": simulated_resources(history_fields),
            # The latest recorded decision that excluded this worker (time, reason), if any.
            "last_exclusion": exclusion,
            "samples": stats.get(worker_id, {}).get("samples", 0),
            "first_sample": stats.get(worker_id, {}).get("first_sample"),
            "last_sample": stats.get(worker_id, {}).get("last_sample"),
            "resources": {r: dict(metrics.get(name) or {"mean": None, "min": None, "max": None, "stddev": None})
                          for r, name in RESOURCES.items()},
            "metrics": {name: dict(values, simulated=simulated_metric(METRICS_BY_NAME[name], history_fields))
                        for name, values in metrics.items()},
            "sparklines": {r: sparkline(worker_series.get(r, {}).get("mean", [])) for r in RESOURCES},
        })
    return workers


def _fleet_metrics(fleet: dict[str, dict], workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fleet statistics of every metric, with how many workers report it and how many of those
    report simulated values of it."""
    rows = []
    for metric in METRICS:
        values = fleet.get(metric.name)
        reporting = [w["metrics"][metric.name] for w in workers
                     if (w["metrics"].get(metric.name) or {}).get("mean") is not None]
        rows.append({"name": metric.name, "label": metric.label, "unit": metric.unit, "workers": len(reporting),
                     "simulated_workers": sum(1 for m in reporting if m.get("simulated")),
                     **(values or {"mean": None, "min": None, "max": None, "stddev": None})})
    return rows


# Alert and exclusion resources -> the headline resource they read.
_ALERT_RESOURCES = {"cpu": "cpu", "memory": "memory", "gpu": "gpu", "gpu_memory": "gpu"}


def _value_simulated(worker: Mapping[str, Any] | None, resource: Any) -> bool:
    """Whether a value of ``resource`` (an alert resource) on ``worker`` is simulated: the worker's
    stored samples or its current view say that resource is simulated."""
    headline = _ALERT_RESOURCES.get(str(resource)) if resource is not None else None
    if worker is None or headline is None:
        return False
    return bool(worker["samples_simulated"].get(headline) or worker["simulated"].get(headline))


def _exclusion_simulated(worker: Mapping[str, Any] | None, exclusion: Mapping[str, Any] | None) -> bool:
    """An exclusion for critical load (kind and resource as stored) measured on a simulated resource."""
    if not exclusion or exclusion.get("kind") != "critical":
        return False
    return _value_simulated(worker, exclusion.get("resource"))


# -- tasks, alerts, decisions -------------------------------------------------------------------

_TASK_SUMS = ("duration_s", "disk_read_bytes", "disk_write_bytes", "net_sent_bytes", "net_recv_bytes",
              "process_cpu_seconds", "process_read_bytes", "process_write_bytes")
_TASK_PEAKS = ("peak_cpu_percent", "peak_memory_percent", "peak_memory_used_bytes", "peak_gpu_utilization_percent",
               "peak_gpu_memory_used_bytes", "process_peak_rss_bytes", "process_gpu_memory_peak_bytes")


def _tasks(reader: _Reader) -> dict[str, Any]:
    out: dict[str, Any] = {"total": 0, "passed": 0, "failed": 0, "unknown": 0, "shown": 0, "rows": [],
                           "by_type": [], "totals": {}, "peaks": {}}
    if not reader.has(TASKS, "task_id"):
        return out
    has_success = reader.has(TASKS, "success")
    counts = ("count_if(success) AS passed, count_if(NOT success) AS failed, count_if(success IS NULL) AS unknown"
              if has_success else "0 AS passed, 0 AS failed, count(*) AS unknown")
    sums = ", ".join(f'sum("{c}") AS "{c}"' for c in _TASK_SUMS if reader.has(TASKS, c))
    peaks = ", ".join(f'max("{c}") AS "{c}"' for c in _TASK_PEAKS if reader.has(TASKS, c))
    row = reader.one(f"SELECT count(*) AS total, {counts}{', ' + sums if sums else ''}"
                     f"{', ' + peaks if peaks else ''} FROM {TASKS}")
    out.update(total=row.get("total") or 0, passed=row.get("passed") or 0, failed=row.get("failed") or 0,
               unknown=row.get("unknown") or 0)
    out["totals"] = {c: finite(row.get(c)) for c in _TASK_SUMS}
    out["peaks"] = {c: finite(row.get(c)) for c in _TASK_PEAKS}
    if reader.has(TASKS, "task_type"):
        failed = "count_if(NOT success)" if has_success else "NULL"
        by_type = ", ".join(f'avg("{c}") AS "mean_{c}"' for c in ("duration_s", "peak_cpu_percent",
                                                                   "peak_memory_percent", "process_cpu_seconds")
                            if reader.has(TASKS, c))
        out["by_type"] = reader.dicts(
            f"SELECT task_type, count(*) AS tasks, {failed} AS failed{', ' + by_type if by_type else ''}, "
            f"{'max(process_peak_rss_bytes)' if reader.has(TASKS, 'process_peak_rss_bytes') else 'NULL'} "
            f"AS max_process_peak_rss_bytes FROM {TASKS} GROUP BY task_type ORDER BY tasks DESC, task_type LIMIT 50")
    order = "start_time DESC NULLS LAST" if reader.has(TASKS, "start_time") else "task_id"
    rows = reader.dicts(f"SELECT * FROM {TASKS} ORDER BY {order} LIMIT {MAX_TASK_ROWS}")
    if has_success and out["failed"]:
        # Failures are what a reader looks for: keep the latest ones even when older than the rest.
        seen = {(r.get("task_id"), r.get("worker_id"), r.get("start_time")) for r in rows}
        for failed_row in reader.dicts(f"SELECT * FROM {TASKS} WHERE NOT success ORDER BY {order} "
                                       f"LIMIT {MAX_TASK_ROWS}"):
            if (failed_row.get("task_id"), failed_row.get("worker_id"), failed_row.get("start_time")) not in seen:
                rows.append(failed_row)
        far_past = datetime.min.replace(tzinfo=timezone.utc)
        rows.sort(key=lambda r: r.get("start_time") or far_past, reverse=True)
    for task in rows:
        task["hardware_events"] = list(task.get("hardware_events") or [])
        task["hardware_verdict"] = hardware_verdict(task.get("success"), task["hardware_events"])
        task["simulated_fields"] = list(task.get("simulated_fields") or [])
        # A column of the row with no value was not simulated: it is unknown, and says so alone.
        task["simulated"] = [c for c in simulated_task_columns(task["simulated_fields"])
                             if c not in task or task[c] is not None]
    out["rows"] = rows
    out["shown"] = len(rows)
    return out


def _outcomes(reader: _Reader) -> dict[str, Any]:
    """How the recorded runs' tasks ended (``task_outcomes``, written at the end of a run): counts
    per state, and the tasks that did not finish (cancelled, or never started) with the reason."""
    out: dict[str, Any] = {"total": 0, "by_state": {}, "rows": [], "shown": 0, "unfinished": 0}
    if not reader.has(OUTCOMES, "task_id", "state"):
        return out
    for row in reader.dicts(f"SELECT state, count(*) AS n FROM {OUTCOMES} GROUP BY state"):
        out["by_state"][str(row["state"])] = row["n"]
    out["total"] = sum(out["by_state"].values())
    unfinished = "state IN ('cancelled', 'queued')"
    out["unfinished"] = out["by_state"].get("cancelled", 0) + out["by_state"].get("queued", 0)
    order = "recorded_at DESC, task_id" if reader.has(OUTCOMES, "recorded_at") else "task_id"
    out["rows"] = reader.dicts(f"SELECT * FROM {OUTCOMES} WHERE {unfinished} ORDER BY {order} LIMIT {MAX_TASK_ROWS}")
    out["shown"] = len(out["rows"])
    return out


def _alerts(reader: _Reader) -> dict[str, Any]:
    out: dict[str, Any] = {"total": 0, "by_severity": {}, "by_resource": {}, "by_worker": [], "firing": 0,
                           "shown": 0, "rows": []}
    if not reader.has(ALERTS, "alert_id", "timestamp"):
        return out
    for row in reader.dicts(f"SELECT severity, state, resource, count(*) AS n FROM {ALERTS} GROUP BY ALL"):
        out["total"] += row["n"]
        if row["state"] == "firing":
            out["by_severity"][row["severity"]] = out["by_severity"].get(row["severity"], 0) + row["n"]
            out["by_resource"][row["resource"]] = out["by_resource"].get(row["resource"], 0) + row["n"]
            out["firing"] += row["n"]
    out["by_worker"] = reader.dicts(
        f"SELECT worker_id, count(*) AS alerts, count_if(severity = 'critical') AS critical FROM {ALERTS} "
        f"WHERE state = 'firing' GROUP BY worker_id ORDER BY alerts DESC, worker_id LIMIT 20")
    out["rows"] = reader.dicts(f"SELECT * FROM {ALERTS} ORDER BY timestamp DESC LIMIT {MAX_ALERT_ROWS}")
    out["shown"] = len(out["rows"])
    return out


def _decisions(reader: _Reader) -> dict[str, Any]:
    out: dict[str, Any] = {"total": 0, "alternatives": 0, "unassigned": 0, "exclusions": 0, "latest": None,
                           "exclusions_by_reason": [], "exclusion_reasons": {}, "last_exclusion_by_worker": {},
                           "tasks_per_worker": [], "shown": 0, "rows": []}
    needed = ("decision_id", "timestamp", "chosen_worker_id", "original_worker_id", "candidates", "exclusions")
    if not reader.has(DECISIONS, *needed):
        return out
    row = reader.one(
        f"SELECT count(*) AS total, count_if(chosen_worker_id IS NOT NULL AND original_worker_id IS NOT NULL "
        f"AND chosen_worker_id <> original_worker_id) AS alternatives, count_if(chosen_worker_id IS NULL) "
        f"AS unassigned, sum(len(exclusions)) AS exclusions, max(timestamp) AS latest FROM {DECISIONS}")
    out.update({k: row.get(k) or 0 for k in ("total", "alternatives", "unassigned", "exclusions")})
    out["latest"] = row.get("latest")
    # A reason with its numbers replaced by '#' is its kind: "cpu at #% > critical #%".
    out["exclusions_by_reason"] = reader.dicts(
        f"SELECT regexp_replace(e.reason, '[0-9]+([.][0-9]+)?', '#', 'g') AS reason, count(*) AS exclusions, "
        f"count(DISTINCT e.worker_id) AS workers FROM (SELECT unnest(exclusions) AS e FROM {DECISIONS}) "
        f"GROUP BY 1 ORDER BY exclusions DESC, reason LIMIT 30")
    # The exact reasons of each kind, most frequent first (a few per kind), to show the numbers.
    variants: dict[str, dict[str, Any]] = {}
    for variant in reader.dicts(
            f"SELECT regexp_replace(reason, '[0-9]+([.][0-9]+)?', '#', 'g') AS kind, reason, count(*) AS n, "
            f"count(*) OVER (PARTITION BY kind) AS distinct_reasons FROM "
            f"(SELECT unnest(exclusions).reason AS reason FROM {DECISIONS}) GROUP BY reason "
            f"QUALIFY row_number() OVER (PARTITION BY kind ORDER BY n DESC, reason) <= 3"):
        entry = variants.setdefault(variant["kind"], {"distinct": variant["distinct_reasons"], "top": []})
        entry["top"].append({"reason": variant["reason"], "exclusions": variant["n"]})
    for entry in variants.values():
        entry["top"].sort(key=lambda v: (-v["exclusions"], _natural_key(v["reason"])))
    out["exclusion_reasons"] = variants
    # Per worker: the latest decision that excluded it, and why.
    out["last_exclusion_by_worker"] = {
        str(r["worker_id"]): {"timestamp": r["timestamp"], "reason": r["e"]["reason"], "kind": r["e"].get("kind"),
                              "resource": r["e"].get("resource")} for r in reader.dicts(
            f"SELECT e.worker_id AS worker_id, max(timestamp) AS timestamp, arg_max(e, timestamp) AS e "
            f"FROM (SELECT timestamp, unnest(exclusions) AS e FROM {DECISIONS}) GROUP BY 1")}
    out["tasks_per_worker"] = reader.dicts(
        f"SELECT chosen_worker_id AS worker_id, count(*) AS tasks, count_if(chosen_worker_id <> original_worker_id) "
        f"AS as_alternative FROM {DECISIONS} WHERE chosen_worker_id IS NOT NULL GROUP BY 1 "
        f"ORDER BY tasks DESC, worker_id LIMIT 50")
    columns = ", ".join(reader.col(DECISIONS, c) for c in ("task_id", "task_type", "chosen_score", "original_score",
                                                           "candidate_count", "explanation"))
    # A task that waits is refused again and again for the same reason: such "no worker"
    # decisions fold into one row (the latest) with their count and first time. The reason is
    # the explanation with its numbers as '#', as for exclusions.
    fold = "decision_id"
    if reader.has(DECISIONS, "task_id", "explanation"):
        fold = ("CASE WHEN chosen_worker_id IS NULL THEN concat(task_id, chr(0), regexp_replace("
                "coalesce(explanation, ''), '[0-9]+([.][0-9]+)?', '#', 'g')) ELSE decision_id END")
    rows = reader.dicts(
        f"SELECT decision_id, timestamp, chosen_worker_id, original_worker_id, {columns}, "
        f"list_slice(candidates, 1, {TOP_CANDIDATES}) AS top_candidates, "
        f"list_slice(exclusions, 1, {MAX_EXCLUSIONS_SHOWN}) AS exclusions, len(exclusions) AS exclusion_count, "
        f"count(*) OVER folded AS repeats, min(timestamp) OVER folded AS first_timestamp "
        f"FROM {DECISIONS} WINDOW folded AS (PARTITION BY {fold}) "
        f"QUALIFY row_number() OVER (PARTITION BY {fold} ORDER BY timestamp DESC, decision_id) = 1 "
        f"ORDER BY timestamp DESC LIMIT {MAX_DECISION_ROWS}")
    for decision in rows:
        decision["alternative"] = bool(decision["chosen_worker_id"] and decision["original_worker_id"]
                                       and decision["chosen_worker_id"] != decision["original_worker_id"])
        for candidate in decision["top_candidates"] or []:
            candidate["total_penalty"] = sum(
                finite(candidate.get(k)) or 0.0
                for k in ("cpu_penalty", "memory_penalty", "gpu_penalty", "balance_penalty", "history_penalty"))
        decision["top_candidates"] = decision["top_candidates"] or []
        decision["exclusions"] = decision["exclusions"] or []
    out["rows"] = rows
    out["shown"] = len(rows)
    return out


# -- live inputs from the integration -----------------------------------------------------------

def _plain(value: Any, depth: int = 0) -> Any:
    """Scheduler statistics / factors / history as plain data (objects with ``as_dict`` / ``to_dict``)."""
    if depth > 6:
        return str(value)
    for method in ("as_dict", "to_dict"):
        if hasattr(value, method) and callable(getattr(value, method)):
            return _plain(getattr(value, method)(), depth + 1)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool, datetime)):
        return value
    return str(value)


def _count_order(item: tuple[str, Any]) -> tuple:
    """Largest count first, then the key in natural order."""
    key, value = item
    count = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
    return (-count, _natural_key(key))


def _scheduler_stats(stats: Mapping | None) -> dict[str, Any]:
    """Split the integration's statistics into scalars and tables (mappings of counts; of a
    mapping that also holds lists, such as a latency histogram's buckets, its figures alone:
    the lists stay in ``raw``, for the JSON export)."""
    plain = _plain(stats) if stats is not None else {}
    if not isinstance(plain, dict):
        plain = {"value": plain}
    scalars, tables, other = {}, {}, {}
    for key, value in plain.items():
        if value is None or isinstance(value, (str, int, float, bool, datetime)):
            scalars[key] = value
        elif isinstance(value, dict):
            figures = [(k, v) for k, v in value.items() if v is None or isinstance(v, (str, int, float, bool))]
            if len(figures) == len(value):
                tables[key] = sorted(figures, key=_count_order)
            elif figures:
                tables[key] = figures
            else:
                other[key] = value
        else:
            other[key] = value
    return {"given": stats is not None, "raw": plain, "scalars": scalars, "tables": tables, "other": other}


def _history(rows: list[dict] | None) -> dict[str, Any]:
    rows = [_plain(r) for r in (rows or []) if isinstance(r, Mapping)]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return {"columns": columns, "rows": rows}


def _task_summary(attempts: Mapping[str, Any], outcomes: Mapping[str, Any]) -> dict[str, int]:
    """Task counts for the summary: per task from the recorded outcomes when a run recorded
    them (so tasks that never started count), else per attempt."""
    if not outcomes["total"]:
        return {"tasks": attempts["total"], "tasks_passed": attempts["passed"], "tasks_failed": attempts["failed"],
                "tasks_unknown": attempts["unknown"], "tasks_cancelled": 0, "tasks_never_started": 0}
    by_state = outcomes["by_state"]
    return {"tasks": outcomes["total"], "tasks_passed": by_state.get("completed", 0),
            "tasks_failed": by_state.get("failed", 0), "tasks_unknown": 0,
            "tasks_cancelled": by_state.get("cancelled", 0), "tasks_never_started": by_state.get("queued", 0)}


# -- the whole report -----------------------------------------------------------------------------

def _storage(reader: _Reader) -> dict[str, Any]:
    """The writer's counters of this process (``MetricsStore.status()``) and the rows the file
    keeps in ``rejected_rows`` (from every run), by table and reason."""
    kept = []
    if reader.has(REJECTED, "table_name", "reason", "rejected_at"):
        kept = reader.dicts(f"SELECT table_name, reason, count(*) AS rows, max(rejected_at) AS last_rejected_at "
                            f"FROM {REJECTED} GROUP BY ALL ORDER BY rows DESC, table_name, reason")
    return {"status": reader.store.status(), "rejected_in_file": kept,
            "rejected_in_file_total": sum(r["rows"] for r in kept)}


def build_report_data(store: MetricsStore, *, title: str = "Hardware utilization report",
                      workers: Mapping[str, dict] | None = None, scheduler_stats: Mapping | None = None,
                      scoring_factors: Mapping | None = None, history: list[dict] | None = None,
                      bucket_seconds: float | None = None, max_points: int = 240) -> dict[str, Any]:
    """Everything the fleet report shows, as one dict (see the module docstring).

    ``store``: an open :class:`MetricsStore` (its tables may be missing or empty).
    ``workers``: the integration's live view, worker id -> ``{"status", "capabilities", "current":
    {"cpu_percent", "memory_percent", "gpu_percent"}, "simulated_fields", "excluded_reason",
    "excluded_resource", "stale"}``;
    without it, workers come from ``hardware_capabilities`` and the latest samples.
    ``scheduler_stats``, ``scoring_factors``, ``history``: shown as given (plain data).
    ``benchmarks``: the load each quiet / exclusive task ran under
    (:func:`fleet_hwmon.reports.benchmark_load.benchmark_load`), judged against
    ``scoring_factors["quiet_threshold_percent"]`` (the scheduler's default, 80, without it).
    ``bucket_seconds``: width of the time-series buckets; widened (and by default chosen) so that
    each series has at most ``max_points`` points. Raises ``ValueError`` when ``max_points < 2``.

    Example::

        store = open_store("metrics.duckdb")
        data = build_report_data(store, max_points=120)
        render_fleet_report(data, "report.html"); export_report_json(data, "report.json")
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points!r}")
    reader = _Reader(store)
    per_worker, fleet, span = _metric_stats(reader)
    latest = _latest_samples(reader)
    series = _series(reader, span, per_worker, max_points, bucket_seconds)
    tasks = _tasks(reader)
    tasks["outcomes"] = outcomes = _outcomes(reader)
    alerts = _alerts(reader)
    decisions = _decisions(reader)
    worker_rows = _workers(reader, workers, per_worker, latest, series, decisions["last_exclusion_by_worker"],
                           decisions["latest"])
    by_id = {w["worker_id"]: w for w in worker_rows}
    for alert in alerts["rows"]:
        alert["simulated"] = _value_simulated(by_id.get(str(alert.get("worker_id"))), alert.get("resource"))
    for decision in decisions["rows"]:
        for exclusion in decision["exclusions"]:
            exclusion["simulated"] = _exclusion_simulated(by_id.get(str(exclusion.get("worker_id"))), exclusion)
    for worker_row in worker_rows:
        worker_row["excluded_simulated"] = _exclusion_simulated(
            worker_row, {"kind": "critical", "resource": worker_row.pop("excluded_resource")})
        if worker_row["last_exclusion"] is not None:
            worker_row["last_exclusion"]["simulated"] = _exclusion_simulated(worker_row, worker_row["last_exclusion"])
    first, last = span.get("first_sample"), span.get("last_sample")
    factors = _plain(scoring_factors) if scoring_factors is not None else {}
    quiet = factors.get("quiet_threshold_percent") if isinstance(factors, dict) else None
    threshold = float(quiet) if isinstance(quiet, (int, float)) else ScoringFactors().quiet_threshold_percent
    return {
        "format": REPORT_FORMAT,
        "title": str(title),
        "generated_at": datetime.now(timezone.utc),
        "database": str(store.path),
        "max_points": max_points,
        "summary": {
            "workers": len(worker_rows),
            "workers_with_samples": sum(1 for w in worker_rows if w["samples"]),
            "samples": span.get("samples") or 0,
            "first_sample": first, "last_sample": last,
            "span_s": (last - first).total_seconds() if first is not None and last is not None else None,
            **_task_summary(tasks, outcomes),
            "alerts": alerts["firing"], "alerts_critical": alerts["by_severity"].get("critical", 0),
            "decisions": decisions["total"], "decisions_alternative": decisions["alternatives"],
            "decisions_unassigned": decisions["unassigned"],
        },
        "workers": worker_rows,
        "metrics": _fleet_metrics(fleet, worker_rows),
        "series": series,
        "tasks": tasks,
        "benchmarks": benchmark_load(reader, threshold),
        "alerts": alerts,
        "scheduler": {"stats": _scheduler_stats(scheduler_stats), "decisions": decisions},
        "scoring_factors": factors if isinstance(factors, dict) else {"value": factors},
        "history": _history(history),
        "storage": _storage(reader),
    }
