"""The report's metric catalogue, derived from the sample records, and how each value is shown.

Every numeric field of :class:`~fleet_hwmon.sample.ResourceUtilization` is a metric of the report
(mean, min, max, standard deviation, latest per worker); every numeric field of
:class:`~fleet_hwmon.sample.GpuUtilization` becomes a ``gpu_<field>`` metric whose per-sample value
is the busiest GPU's (percent, temperature, clocks) or the sum over the worker's GPUs (bytes,
watts). Adding a field to the records adds it to the report's SQL, tables and JSON; nothing here
names a metric by hand except the three headline resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from fleet_hwmon.reports.render import fmt_bytes, fmt_number, fmt_percent
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization
from fleet_hwmon.store.schema import record_columns

_NUMERIC_SQL = ("DOUBLE", "BIGINT")
# Not measurements: a clock reading and the worker clock's correction (sample bookkeeping), a GPU's
# index and the code of its last Xid error (identifiers: their mean or max means nothing).
_SKIP_SAMPLE = {"monotonic_s", "clock_offset_s"}
_SKIP_GPU = {"index", "last_xid"}


@dataclass(frozen=True)
class Metric:
    """One report metric: ``name`` (the record field, ``gpu_`` prefixed for GPU fields), the SQL
    expression of its per-sample value in ``resource_utilization`` (non-finite values read as
    NULL), its unit for display, and the sample fields whose simulation makes it simulated."""

    name: str
    sql: str
    unit: str
    source_fields: frozenset[str]
    gpu: bool = False

    @property
    def label(self) -> str:
        """Human name without the unit suffix: ``gpu_power_watts`` -> ``GPU power``."""
        text = self.name
        for suffix in ("_bytes_per_s", "_percent", "_bytes", "_celsius", "_watts", "_mhz", "_cores"):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        words = [_WORDS.get(word, word) for word in text.split("_")]
        return " ".join(words)[:1].upper() + " ".join(words)[1:]


_WORDS = {"cpu": "CPU", "gpu": "GPU", "sm": "SM", "net": "network", "recv": "received", "1m": "1 min",
          "5m": "5 min", "15m": "15 min", "cgroup": "cgroup", "utilization": "utilization"}


def unit_of(name: str) -> str:
    """Display unit from the field name's suffix (rule 7: units are in the name)."""
    for suffix, unit in (("_bytes_per_s", "B/s"), ("_percent", "%"), ("_bytes", "B"), ("_celsius", "°C"),
                         ("_watts", "W"), ("_mhz", "MHz"), ("_cores", "cores")):
        if name.endswith(suffix):
            return unit
    if name.startswith("load_average"):
        return "runnable"
    if name == "cpu_count_effective":
        return "CPUs"
    return ""


def format_metric(name: str, value: Any) -> str:
    """``value`` of metric (or record field) ``name`` for display; ``None`` -> ``n/a``."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else ("yes" if value else "no")
    if not isinstance(value, (int, float)):
        return str(value)
    unit = unit_of(name)
    if unit == "%":
        return fmt_percent(value)
    if unit == "B/s":
        return fmt_bytes(value) + "/s"
    if unit == "B":
        return fmt_bytes(value)
    if name.endswith("_s") or name.endswith("_seconds"):
        return fmt_number(value, 2) + " s"
    if isinstance(value, int) and not unit:
        return f"{value:,}"
    digits = 0 if unit == "MHz" else 2 if unit in ("runnable", "cores", "CPUs", "") else 1
    text = fmt_number(value, digits)
    return f"{text} {unit}" if unit else text


def _guard(expr: str, sql_type: str) -> str:
    # The records already turn NaN / inf into NULL; a file written by another tool may not have.
    return f"CASE WHEN isfinite({expr}) THEN {expr} END" if sql_type == "DOUBLE" else expr


def _build_catalogue() -> tuple[Metric, ...]:
    metrics = []
    for column in record_columns(ResourceUtilization):
        if column.kind == "scalar" and column.sql_type in _NUMERIC_SQL and column.name not in _SKIP_SAMPLE:
            metrics.append(Metric(column.name, _guard(f'"{column.name}"', column.sql_type), unit_of(column.name),
                                  frozenset({column.name})))
    for column in record_columns(GpuUtilization):
        if column.kind != "scalar" or column.sql_type not in _NUMERIC_SQL or column.name in _SKIP_GPU:
            continue
        combine = "list_sum" if column.name.endswith(("_bytes", "_watts")) else "list_max"
        inner = _guard(f"g.{column.name}", column.sql_type)
        single = _guard(f"gpus[1].{column.name}", column.sql_type)
        name = f"gpu_{column.name}"
        # Most samples have no GPU or one: those skip the list lambda, which costs 3x more.
        sql = (f"CASE len(gpus) WHEN 0 THEN NULL WHEN 1 THEN {single} "
               f"ELSE {combine}(list_transform(gpus, lambda g: {inner})) END")
        metrics.append(Metric(name, sql, unit_of(name), frozenset({"gpus", name}), gpu=True))
    return tuple(metrics)


METRICS: tuple[Metric, ...] = _build_catalogue()
METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

# The three headline resources of the report (0-100 %), as metric names of the catalogue.
RESOURCES: dict[str, str] = {"cpu": "cpu_percent", "memory": "memory_percent", "gpu": "gpu_utilization_percent"}
RESOURCE_LABELS: dict[str, str] = {"cpu": "CPU", "memory": "Memory", "gpu": "GPU"}

# Sample fields that make a headline resource simulated (``simulated_fields`` of a sample / worker).
_SIMULATED_SOURCES: dict[str, frozenset[str]] = {
    "cpu": frozenset({"cpu", "cpu_percent", "per_cpu_percent"}),
    "memory": frozenset({"memory", "memory_percent", "memory_used_bytes", "memory_available_bytes"}),
    "gpu": frozenset({"gpu", "gpus", "gpu_percent", "gpu_utilization_percent"}),
}


def simulated_resources(simulated_fields: Iterable[str]) -> dict[str, bool]:
    """Which headline resources (cpu, memory, gpu) the named simulated fields cover."""
    fields = set(simulated_fields or ())
    return {resource: bool(fields & sources) for resource, sources in _SIMULATED_SOURCES.items()}


def simulated_metric(metric: Metric, simulated_fields: Iterable[str]) -> bool:
    return bool(set(simulated_fields or ()) & metric.source_fields)


# Task columns -> the sample (or task) fields they are computed from, for the simulated label.
TASK_SOURCES: dict[str, frozenset[str]] = {
    "cpu": _SIMULATED_SOURCES["cpu"] | {"peak_cpu_percent", "mean_cpu_percent"},
    "memory": _SIMULATED_SOURCES["memory"] | {"peak_memory_percent", "mean_memory_percent",
                                              "peak_memory_used_bytes"},
    "gpu": _SIMULATED_SOURCES["gpu"] | {"peak_gpu_utilization_percent", "mean_gpu_utilization_percent",
                                        "peak_gpu_memory_used_bytes"},
    "disk_read_bytes": frozenset({"disk_read_bytes", "disk_read_bytes_per_s"}),
    "disk_write_bytes": frozenset({"disk_write_bytes", "disk_write_bytes_per_s"}),
    "net_sent_bytes": frozenset({"net_sent_bytes", "net_sent_bytes_per_s"}),
    "net_recv_bytes": frozenset({"net_recv_bytes", "net_recv_bytes_per_s"}),
    "process_cpu_seconds": frozenset({"process_cpu_seconds"}),
    "process_peak_rss_bytes": frozenset({"process_peak_rss_bytes"}),
    "process_read_bytes": frozenset({"process_read_bytes"}),
    "process_write_bytes": frozenset({"process_write_bytes"}),
    "process_gpu_memory_peak_bytes": frozenset({"process_gpu_memory_peak_bytes", "gpus"}),
    "process_gpu_utilization_percent": frozenset({"process_gpu_utilization_percent", "gpus"}),
}


def simulated_task_columns(simulated_fields: Iterable[str]) -> list[str]:
    fields = set(simulated_fields or ())
    return sorted(column for column, sources in TASK_SOURCES.items() if fields & sources)
