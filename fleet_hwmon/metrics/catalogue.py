"""Every metric the collector exposes: name, type, labels and meaning, in one table.

The collector builds its families from this table and the README's metric list is generated
from it (:func:`markdown_list`), so the two cannot drift. Names follow Prometheus conventions:
the ``fleet_hwmon_`` prefix, base units at the end (``_bytes``, ``_seconds``, ``_celsius``,
``_watts``, ``_ratio`` for 0-1 fractions), ``_total`` on counters.

Labels are kept few, because every label costs the scrape (prometheus_client encodes each
one of each series) and the server's index: a GPU's series carry ``worker_id`` and
``gpu_uuid`` only and its model name is in ``fleet_hwmon_gpu_info``, joined where a panel
shows it (``* on (worker_id, gpu_uuid) group_left (gpu_name) fleet_hwmon_gpu_info``). A
sample's age is not exposed: it is ``time() - fleet_hwmon_worker_last_sample_timestamp_seconds``
(Prometheus exports the timestamp of an event, not the time since it).
"""

from __future__ import annotations

from typing import NamedTuple


class MetricSpec(NamedTuple):
    name: str  # counters end in _total; prometheus_client names the family without it
    kind: str  # "gauge", "counter", "histogram" or "info" (a gauge of 1 whose labels are the facts)
    labels: tuple[str, ...]
    help: str


W = ("worker_id",)
GPU = ("worker_id", "gpu_uuid")

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("fleet_hwmon_worker_cpu_utilization_ratio", "gauge", W,
               "CPU utilization of the worker, 0-1 (latest sample's cpu_percent / 100)."),
    MetricSpec("fleet_hwmon_worker_cpu_cores", "gauge", W,
               "CPUs the worker may use: min(affinity, cgroup CPU quota)."),
    MetricSpec("fleet_hwmon_worker_memory_utilization_ratio", "gauge", W,
               "Memory in use, 0-1 of the worker's memory (the cgroup limit inside a container)."),
    MetricSpec("fleet_hwmon_worker_memory_used_bytes", "gauge", W, "Memory in use, bytes."),
    MetricSpec("fleet_hwmon_worker_memory_available_bytes", "gauge", W, "Memory available to new work, bytes."),
    MetricSpec("fleet_hwmon_worker_memory_total_bytes", "gauge", W,
               "The worker's memory, bytes (the cgroup limit inside a container)."),
    MetricSpec("fleet_hwmon_worker_disk_usage_ratio", "gauge", W, "Space used on the monitored disk, 0-1."),
    MetricSpec("fleet_hwmon_worker_disk_read_bytes_per_second", "gauge", W,
               "Disk read rate over the last sampling interval, all disks."),
    MetricSpec("fleet_hwmon_worker_disk_write_bytes_per_second", "gauge", W,
               "Disk write rate over the last sampling interval, all disks."),
    MetricSpec("fleet_hwmon_worker_network_receive_bytes_per_second", "gauge", W,
               "Network receive rate over the last sampling interval, all interfaces but loopback."),
    MetricSpec("fleet_hwmon_worker_network_transmit_bytes_per_second", "gauge", W,
               "Network send rate over the last sampling interval, all interfaces but loopback."),
    MetricSpec("fleet_hwmon_worker_last_sample_timestamp_seconds", "gauge", W,
               "When the latest sample was taken, Unix time on the coordinator's clock (a worker's clock off by "
               "more than 1 s is corrected by its estimated offset)."),
    MetricSpec("fleet_hwmon_worker_stale", "gauge", W,
               "1 when the scheduler counts the worker as stale (its samples stopped), else 0; absent before its "
               "first sample."),
    MetricSpec("fleet_hwmon_worker_excluded", "gauge", W,
               "1 while the scheduler excludes the worker for load above the critical level, else 0."),
    MetricSpec("fleet_hwmon_gpu_info", "info", GPU + ("gpu_name",),
               "1 for each GPU (or MIG instance) in the worker's latest sample; its model name as a label."),
    MetricSpec("fleet_hwmon_gpu_utilization_ratio", "gauge", GPU,
               "GPU utilization, 0-1 (NVML; absent under MIG and where NVML cannot tell)."),
    MetricSpec("fleet_hwmon_gpu_memory_used_bytes", "gauge", GPU, "GPU memory in use, bytes."),
    MetricSpec("fleet_hwmon_gpu_memory_total_bytes", "gauge", GPU, "GPU memory, bytes."),
    MetricSpec("fleet_hwmon_gpu_temperature_celsius", "gauge", GPU, "GPU temperature, degrees Celsius."),
    MetricSpec("fleet_hwmon_gpu_power_watts", "gauge", GPU, "GPU power draw, watts."),
    MetricSpec("fleet_hwmon_gpu_health", "gauge", GPU + ("state",),
               "The GPU's health: one series with value 1, its state label ok, degraded or lost."),
    MetricSpec("fleet_hwmon_gpu_simulated", "gauge", GPU,
               "1 when the GPU's figures were generated (a demo worker without that GPU); absent when measured."),
    MetricSpec("fleet_hwmon_alerts_firing", "gauge", ("worker_id", "resource", "severity"),
               "1 for each alert firing now (resource: cpu, memory, gpu, gpu_memory, disk)."),
    MetricSpec("fleet_hwmon_scheduling_decisions_total", "counter", ("outcome",),
               "Scheduling decisions by outcome: original (the original scheduler's choice kept), "
               "alternative (another worker chosen), no_worker."),
    MetricSpec("fleet_hwmon_scheduling_exclusions_total", "counter", ("kind",),
               "Workers excluded from a decision, by kind of reason."),
    MetricSpec("fleet_hwmon_scheduling_decision_duration_seconds", "histogram", (),
               "Time the hardware-aware scheduler took per decision."),
    MetricSpec("fleet_hwmon_tasks_finished_total", "counter", ("task_type", "status"),
               "Tasks finished, by type and status (succeeded, failed)."),
    MetricSpec("fleet_hwmon_task_duration_seconds", "histogram", ("task_type",),
               "Duration of finished tasks, by type."),
    MetricSpec("fleet_hwmon_store_rows_written_total", "counter", ("table",), "Rows written to DuckDB, by table."),
    MetricSpec("fleet_hwmon_store_rows_rejected_total", "counter", (),
               "Rows the store could not write and set aside (the rejected_rows table), all tables and reasons."),
    MetricSpec("fleet_hwmon_store_rows_dropped_total", "counter", (),
               "Rows lost (write queue full, store closed), all tables and reasons."),
    MetricSpec("fleet_hwmon_store_failed_flushes_total", "counter", (), "Batches DuckDB failed to write."),
    MetricSpec("fleet_hwmon_store_pending_rows", "gauge", (), "Rows queued for the writer thread (queue depth)."),
)

SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in METRICS}


def family_name(spec: MetricSpec) -> str:
    """The name prometheus_client gives the family: without a counter's ``_total`` or an info
    metric's ``_info`` (its encoders add them back)."""
    suffix = {"counter": "_total", "info": "_info"}.get(spec.kind, "")
    return spec.name[:-len(suffix)] if suffix else spec.name


def sample_names(spec: MetricSpec) -> tuple[str, ...]:
    """The series names ``spec`` puts in the exposition (a histogram's three)."""
    if spec.kind == "histogram":
        return (spec.name + "_bucket", spec.name + "_sum", spec.name + "_count")
    return (spec.name,)


def exposed_names() -> frozenset[str]:
    """Every series name the collector can expose; queries may use only these."""
    return frozenset(name for spec in METRICS for name in sample_names(spec))


def markdown_list() -> str:
    """The metric list of the README: one table row per metric."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for spec in METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "-"
        rows.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.help} |")
    return "\n".join(rows)

