"""The Prometheus collector: builds the exposition from a :class:`FleetSnapshot` at scrape time.

Sampling and scheduling pay nothing for it: the collector asks its source for a snapshot
(the source copies references under its own narrow lock) and builds every family from that
copy, outside every lock. A value that is unknown (``None``) is left out of the exposition,
never exposed as 0.

Example::

    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(FleetCollector(integration.metrics_snapshot))
    print(generate_latest(registry).decode())
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                     InfoMetricFamily, Metric)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from fleet_hwmon.metrics.catalogue import METRICS, MetricSpec, family_name
from fleet_hwmon.metrics.snapshot import FleetSnapshot
from fleet_hwmon.sample import ResourceUtilization

_FAMILY = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily,
           "info": InfoMetricFamily}

# (metric, sample field, scale): a worker's figures straight from its latest sample
_WORKER_FIELDS = (
    ("fleet_hwmon_worker_cpu_utilization_ratio", "cpu_percent", 0.01),
    ("fleet_hwmon_worker_cpu_cores", "cpu_count_effective", 1),
    ("fleet_hwmon_worker_memory_utilization_ratio", "memory_percent", 0.01),
    ("fleet_hwmon_worker_memory_used_bytes", "memory_used_bytes", 1),
    ("fleet_hwmon_worker_memory_available_bytes", "memory_available_bytes", 1),
    ("fleet_hwmon_worker_memory_total_bytes", "memory_total_bytes", 1),
    ("fleet_hwmon_worker_disk_usage_ratio", "disk_usage_percent", 0.01),
    ("fleet_hwmon_worker_disk_read_bytes_per_second", "disk_read_bytes_per_s", 1),
    ("fleet_hwmon_worker_disk_write_bytes_per_second", "disk_write_bytes_per_s", 1),
    ("fleet_hwmon_worker_network_receive_bytes_per_second", "net_recv_bytes_per_s", 1),
    ("fleet_hwmon_worker_network_transmit_bytes_per_second", "net_sent_bytes_per_s", 1),
)
_GPU_FIELDS = (
    ("fleet_hwmon_gpu_utilization_ratio", "utilization_percent", 0.01),
    ("fleet_hwmon_gpu_memory_used_bytes", "memory_used_bytes", 1),
    ("fleet_hwmon_gpu_memory_total_bytes", "memory_total_bytes", 1),
    ("fleet_hwmon_gpu_temperature_celsius", "temperature_celsius", 1),
    ("fleet_hwmon_gpu_power_watts", "power_watts", 1),
)
# the scheduler's verdicts on a worker (None where no scheduler watches it)
_VERDICTS = (("fleet_hwmon_worker_stale", "stale", 1), ("fleet_hwmon_worker_excluded", "excluded", 1))
# what the scheduler's statistics call an outcome, by the names older statistics used
_DERIVED_OUTCOMES = ("decisions", "alternatives_chosen", "no_worker")


def _family(spec: MetricSpec) -> Metric:
    return _FAMILY[spec.kind](family_name(spec), spec.help, labels=list(spec.labels))


def _fields(families: dict[str, Metric], fields: tuple, rows: list[tuple[dict, Any]]) -> Iterator[Metric]:
    """For each (metric, field, scale) of ``fields``, takes the metric's family out of
    ``families``, fills it with the field of each ``(labels, record)`` row times the scale
    (a ``None`` field is left out) and yields it."""
    for name, field, scale in fields:
        family = families.pop(name)
        append = family.samples.append
        for labels, record in rows:
            value = getattr(record, field)
            if value is not None:
                append(Sample(name, labels, value * scale))
        yield family


SKEW_S = 1.0  # a worker's clock further off than this is skewed; nearer, the offset is transport delay


def _coordinator_time_s(sample: ResourceUtilization) -> float:
    """When ``sample`` was taken, on the coordinator's clock (epoch seconds), as its staleness is
    judged: a worker whose clock is off by more than :data:`SKEW_S` has its time corrected by
    the offset the coordinator estimated (``clock_offset_s``), so ``time() - this`` is the
    sample's age; nearer, the worker's own time is kept (it matches the stored row)."""
    offset = sample.clock_offset_s
    correction = offset if offset is not None and abs(offset) > SKEW_S else 0.0
    return sample.timestamp.timestamp() - correction


def _label(text: Any) -> str:
    """A label value in the snake case the rest of the exposition uses ("task limit" -> "task_limit")."""
    return str(text).strip().lower().replace(" ", "_").replace("-", "_")


class FleetCollector(Collector):
    """A ``prometheus_client`` collector over ``source``, a callable returning a
    :class:`FleetSnapshot` (e.g. ``integration.metrics_snapshot``). Register it with any
    ``CollectorRegistry``; :meth:`describe` names every family without calling the source."""

    def __init__(self, source: Callable[[], FleetSnapshot]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        for spec in METRICS:
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        families = {spec.name: _family(spec) for spec in METRICS}
        # The fleet's families are built one at a time, as the encoder asks for the next: on a
        # large fleet one family's samples are alive at a time (4,000 for 1,000 x 4 GPUs), not
        # all of them (42,000).
        for family in self._workers(families, snapshot):
            if family.samples:  # a metric nobody knows is absent, not an empty 0
                yield family
        self._scheduling(families, snapshot)
        self._store(families, snapshot.store)
        for family in families.values():
            if family.samples:
                yield family

    # -- workers, GPUs, alerts ------------------------------------------------------------
    @staticmethod
    def _workers(families: dict[str, Metric], snapshot: FleetSnapshot) -> Iterator[Metric]:
        """Yields the fleet's families, each filled over every worker (or GPU), and takes them
        out of ``families``. One label dict is shared by all series of a worker or GPU (the
        encoder only reads them)."""
        workers = [({"worker_id": worker.worker_id}, worker) for worker in snapshot.workers]
        sampled = [(labels, worker.latest) for labels, worker in workers if worker.latest is not None]
        yield from _fields(families, _WORKER_FIELDS, sampled)
        yield from _fields(families, _VERDICTS, workers)
        family = families.pop("fleet_hwmon_worker_last_sample_timestamp_seconds")
        family.samples.extend(Sample(family.name, labels, _coordinator_time_s(sample)) for labels, sample in sampled)
        yield family
        family = families.pop("fleet_hwmon_alerts_firing")
        for _, worker in workers:
            for alert in worker.alerts:
                family.add_metric([worker.worker_id, alert.resource, alert.severity.value], 1.0)
        yield family
        gpus = [({"worker_id": labels["worker_id"], "gpu_uuid": gpu.uuid}, gpu)
                for labels, sample in sampled for gpu in sample.gpus]
        yield from _fields(families, _GPU_FIELDS, gpus)
        family = families.pop("fleet_hwmon_gpu_info")
        family.samples.extend(Sample(family.name + "_info", dict(labels, gpu_name=gpu.name), 1.0)
                              for labels, gpu in gpus)
        yield family
        family = families.pop("fleet_hwmon_gpu_health")  # health None: the sampler did not read it
        family.samples.extend(Sample(family.name, dict(labels, state=_label(gpu.health)), 1.0)
                              for labels, gpu in gpus if gpu.health is not None)
        yield family
        family = families.pop("fleet_hwmon_gpu_simulated")  # measured GPUs carry no flag: a series fewer each
        family.samples.extend(Sample(family.name, labels, 1.0) for labels, gpu in gpus if gpu.simulated)
        yield family

    # -- scheduling and tasks ---------------------------------------------------------------
    @staticmethod
    def _scheduling(families: dict[str, Metric], snapshot: FleetSnapshot) -> None:
        stats = snapshot.scheduler or {}
        decisions = families["fleet_hwmon_scheduling_decisions_total"]
        for outcome, count in _outcomes(stats).items():
            decisions.add_metric([outcome], count)
        kinds = stats.get("exclusions_by_kind", stats.get("exclusions_by_category"))
        if isinstance(kinds, Mapping):
            exclusions = families["fleet_hwmon_scheduling_exclusions_total"]
            for kind, count in sorted(kinds.items(), key=lambda kv: str(kv[0])):
                exclusions.add_metric([_label(getattr(kind, "value", kind))], count)
        latency = stats.get("decision_latency_s")
        if isinstance(latency, Mapping) and latency.get("count") is not None and latency.get("sum") is not None:
            # without buckets the histogram still has its count and sum (the +Inf bucket)
            buckets = [(str(le), n) for le, n in latency.get("buckets") or ()] or [("+Inf", latency["count"])]
            families["fleet_hwmon_scheduling_decision_duration_seconds"].add_metric([], buckets, latency["sum"])
        if snapshot.tasks is not None:
            finished = families["fleet_hwmon_tasks_finished_total"]
            for (task_type, status), count in sorted(snapshot.tasks.finished.items()):
                finished.add_metric([task_type, status], count)
            durations = families["fleet_hwmon_task_duration_seconds"]
            for task_type, buckets in sorted(snapshot.tasks.durations.items()):
                durations.add_metric([task_type], buckets.cumulative(), buckets.total)

    # -- store --------------------------------------------------------------------------------
    @staticmethod
    def _store(families: dict[str, Metric], counters: Mapping[str, Any] | None) -> None:
        if not counters:
            return
        written = counters.get("written_rows")
        if isinstance(written, Mapping):
            family = families["fleet_hwmon_store_rows_written_total"]
            for table, rows in sorted(written.items()):
                family.add_metric([str(table)], rows)
        for key, name in (("rejected_rows", "fleet_hwmon_store_rows_rejected_total"),
                          ("dropped_rows", "fleet_hwmon_store_rows_dropped_total"),
                          ("failed_flushes", "fleet_hwmon_store_failed_flushes_total"),
                          ("pending_rows", "fleet_hwmon_store_pending_rows")):
            value = _count(counters.get(key + "_total", counters.get(key)))
            if value is not None:
                families[name].add_metric([], value)

def _outcomes(stats: Mapping[str, Any]) -> dict[str, int]:
    """Decisions by outcome: the statistics' own ``decisions_by_outcome`` when they have it, else
    derived from ``decisions``, ``alternatives_chosen`` and ``no_worker``; ``{}`` when unknown."""
    by_outcome = stats.get("decisions_by_outcome")
    if isinstance(by_outcome, Mapping):
        return {_label(getattr(k, "value", k)): v for k, v in by_outcome.items()}
    counts = [stats.get(key) for key in _DERIVED_OUTCOMES]
    if any(not isinstance(count, int) for count in counts):
        return {}
    decisions, alternatives, no_worker = counts
    return {"original": decisions - alternatives - no_worker, "alternative": alternatives, "no_worker": no_worker}


def _count(value: Any) -> int | float | None:
    """A counter's total: a number as is, counts per table (and per reason) summed."""
    if isinstance(value, Mapping):
        return sum(_count(v) or 0 for v in value.values())
    return value
