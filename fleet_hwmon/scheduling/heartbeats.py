"""Workers' own heartbeat metrics turned into samples.

In the distributed testing framework this package plugs into, each worker sends its load in
its heartbeats and the coordinator keeps it in the worker's dict::

    coordinator.workers[worker_id]["hardware_metrics"] = {
        "cpu_percent": 35.0, "memory_percent": 61.5, "gpu_percent": 80.0, "disk_percent": 42.0,
        "updated": "2026-03-01T10:15:02+00:00"}

:class:`HeartbeatReader` reads those dicts once per update interval and gives a sample dict
(the form :meth:`update_worker_utilization` takes) for each worker whose metrics are newer
than the last ones read, so they go down the same path as a pushed sample. Pure apart from
remembering what it has read; the integration owns the thread that calls it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Iterator, Mapping

from fleet_hwmon.logutil import RateLimitedLogger
from fleet_hwmon.sample import finite
from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind

log = logging.getLogger(__name__)

HEARTBEAT_METRICS_KEY = "hardware_metrics"
"""Where a worker dict carries the worker's own metrics (the framework's name)."""

UTILIZATION_KEY = "hardware_utilization"
"""Where the integration may write its smoothed view back into a worker dict (never over the
worker's own ``hardware_metrics``)."""

# heartbeat key -> sample field (percent 0-100); gpu_percent becomes the worker's one GPU entry
_PERCENT_FIELDS = {"cpu_percent": "cpu_percent", "memory_percent": "memory_percent",
                   "disk_percent": "disk_usage_percent"}
HEARTBEAT_FIELDS = (*_PERCENT_FIELDS, "gpu_percent", "updated")
GIB = 1024**3


def sample_from_heartbeat(worker_id: str, metrics: Mapping[str, Any],
                          capabilities: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sample dict of one heartbeat's ``metrics`` (keys :data:`HEARTBEAT_FIELDS`; others are
    ignored). ``updated`` (a ``datetime``, ISO 8601 string or epoch seconds; naive means UTC)
    is the sample's ``timestamp``. A missing or ``None`` figure stays unknown, never 0.

    Where the numbers come from: every percent is the worker's own. ``gpu_percent`` becomes one
    GPU entry (index 0, named after ``capabilities["gpu"]["name"]`` when known) since the
    heartbeat reports one figure for the worker. When ``capabilities["memory"]["total_gb"]`` is
    known, the sample also carries that total and the available memory it implies
    (``total * (1 - memory_percent / 100)``), so memory fit can be checked.
    """
    sample: dict[str, Any] = {"worker_id": worker_id, "timestamp": metrics.get("updated")}
    for source, target in _PERCENT_FIELDS.items():
        if metrics.get(source) is not None:
            sample[target] = metrics[source]
    capabilities = capabilities if isinstance(capabilities, Mapping) else {}
    gpu_percent = metrics.get("gpu_percent")
    if gpu_percent is not None:
        gpu = capabilities.get("gpu") if isinstance(capabilities.get("gpu"), Mapping) else {}
        sample["gpus"] = [{"index": 0, "uuid": f"{worker_id}/gpu0", "name": str(gpu.get("name") or "GPU"),
                           "utilization_percent": gpu_percent}]
    memory = capabilities.get("memory") if isinstance(capabilities.get("memory"), Mapping) else {}
    total_bytes = finite(memory.get("total_gb"))
    memory_percent = finite(metrics.get("memory_percent"))
    if total_bytes and memory_percent is not None and 0 <= memory_percent <= 100:
        total_bytes *= GIB
        sample["memory_total_bytes"] = int(total_bytes)
        sample["memory_available_bytes"] = int(total_bytes * (1 - memory_percent / 100))
    return sample


class HeartbeatReader:
    """Remembers the last heartbeat read of each worker and yields only newer ones.

    A heartbeat is new when its ``updated`` differs from the last one read (a worker whose
    heartbeats stopped therefore sends no more samples and turns stale, as it should). One
    without ``updated`` is new when any of its figures changed, and is dated ``read_at``.
    """

    def __init__(self, key: str = HEARTBEAT_METRICS_KEY) -> None:
        self.key = key
        self._last: dict[str, Any] = {}
        self._log = RateLimitedLogger(log)

    def new_samples(self, workers: Mapping[str, Any], read_at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(worker_id, sample dict)`` for each worker of ``workers`` (worker id -> worker dict)
        whose heartbeat metrics are newer than the last ones read."""
        for worker_id, info in _items(workers):
            metrics = info.get(self.key) if isinstance(info, Mapping) else None
            if not isinstance(metrics, Mapping) or not metrics:
                continue
            marker = metrics.get("updated")
            if marker is None:
                marker = tuple(metrics.get(k) for k in HEARTBEAT_FIELDS)
            if self._last.get(worker_id) == marker:
                continue
            self._last[worker_id] = marker
            sample = sample_from_heartbeat(str(worker_id), metrics, info.get("capabilities"))
            if sample["timestamp"] is None:
                self._log.log(f"undated:{worker_id}", logging.WARNING,
                              "worker %s's %s has no 'updated' time: dated when read", worker_id, self.key)
                sample["timestamp"] = read_at
            yield str(worker_id), sample

    def forget(self, worker_id: str) -> None:
        self._last.pop(worker_id, None)


def _items(workers: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """A copy of the coordinator's workers, taken while its own threads may change them."""
    for _ in range(3):
        try:
            return list(workers.items())
        except RuntimeError:  # "dictionary changed size during iteration": take it again
            continue
    return []


BUSY_STATUS = "busy"
"""The framework's status of a worker at its task limit (``"idle"`` and ``"active"`` are available)."""


def busy_exclusion(worker_id: str | None, workers: Mapping[str, Any]) -> Exclusion | None:
    """``at task limit (status busy)`` when ``workers[worker_id]`` says ``"status": "busy"``, else ``None``."""
    info = workers.get(worker_id) if worker_id is not None else None
    if info is not None and info.get("status") == BUSY_STATUS:
        return Exclusion(worker_id, ExclusionKind.TASK_LIMIT, "at task limit (status busy)")
    return None
