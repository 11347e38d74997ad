"""The names of the earlier hardware-monitoring modules, kept readable for code written against them.

Every alias here maps to a name of the product's own API (the README's section "Coming from the
earlier modules" lists them); nothing in the product depends on this module, and new code
should use the new names. The top-level classes mix these in:

- :class:`EarlierMonitorNames`: ``monitoring_active``, ``alerts``, ``historical_metrics``;
- :func:`narrowed`: the report of ``generate_resource_report(worker_id=, task_id=)`` and
  ``generate_html_report(path, worker_id=, task_id=)`` narrowed to one worker or task;
- :class:`EarlierSample`: an entry of ``get_worker_utilization()``, readable as the earlier dict;
- :func:`earlier_export_keys`: the demo's earlier JSON keys ``timestamp``, ``worker_tasks``,
  ``task_details``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

GIB = 1024**3


class EarlierSample(Mapping):
    """A sample (:class:`ResourceUtilization`) read two ways: as itself (attributes, e.g.
    ``entry.cpu_percent``, ``entry.gpus``; ``entry.sample`` is the record) and as the earlier
    dict, ``entry["cpu_percent"]``, with the earlier keys:

    ``cpu_percent``, ``memory_percent``, ``memory_used_gb``, ``memory_available_gb``,
    ``swap_percent``, ``disk_percent`` (disk usage of the monitored path), ``gpu_utilization``
    (``[{"id": index, "load": percent, "memory_percent": percent}]``), ``timestamp`` (ISO 8601
    UTC, the sample's time) and ``updated`` (the same). Unknown figures are ``None``, never 0.
    """

    __slots__ = ("sample",)

    def __init__(self, sample: Any) -> None:
        object.__setattr__(self, "sample", sample)

    def _earlier(self) -> dict[str, Any]:
        s = self.sample
        stamp = s.timestamp.isoformat()
        return {
            "cpu_percent": s.cpu_percent, "memory_percent": s.memory_percent,
            "memory_used_gb": _gb(s.memory_used_bytes), "memory_available_gb": _gb(s.memory_available_bytes),
            "swap_percent": s.swap_percent, "disk_percent": s.disk_usage_percent,
            "gpu_utilization": [{"id": g.index, "load": g.utilization_percent, "memory_percent": g.memory_percent}
                                for g in s.gpus],
            "timestamp": stamp, "updated": stamp,
        }

    def __getitem__(self, key: str) -> Any:
        return self._earlier()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._earlier())

    def __len__(self) -> int:
        return len(self._earlier())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sample, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EarlierSample):
            return self.sample == other.sample
        return self.sample == other or (isinstance(other, Mapping) and dict(self) == dict(other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EarlierSample({self.sample!r})"


def _gb(value: int | None) -> float | None:
    return None if value is None else value / GIB


def earlier_view(sample: Any) -> EarlierSample | None:
    return None if sample is None else EarlierSample(sample)


class EarlierMonitorNames:
    """Earlier attribute names of ``HardwareUtilizationMonitor``, read-only."""

    @property
    def monitoring_active(self) -> bool:
        """Earlier name of ``is_running``."""
        return self.is_running

    @property
    def alerts(self) -> list:
        """Earlier name of ``get_alerts()`` (every alert event, oldest first)."""
        return self.get_alerts()

    @property
    def historical_metrics(self) -> list:
        """Earlier name of ``get_historical_metrics()`` (the samples in memory, oldest first)."""
        return self.get_historical_metrics()


def narrowed(data: dict[str, Any], worker_id: str | None, task_id: str | None) -> dict[str, Any]:
    """``data`` (the fleet report's) with only the rows of ``worker_id`` and ``task_id`` (either
    may be ``None``: no narrowing by it). Summary counts stay the fleet's."""
    if worker_id is None and task_id is None:
        return data

    def keep(row: Mapping[str, Any], worker_key: str = "worker_id") -> bool:
        return ((worker_id is None or row.get(worker_key) == worker_id)
                and (task_id is None or row.get("task_id") == task_id))

    out = dict(data, filter={"worker_id": worker_id, "task_id": task_id})
    if worker_id is not None:
        out["workers"] = [w for w in data.get("workers", []) if w.get("worker_id") == worker_id]
    for section, worker_key in (("tasks", "worker_id"), ("alerts", "worker_id")):
        if isinstance(data.get(section), Mapping):
            rows = [r for r in data[section].get("rows", []) if keep(r, worker_key)]
            out[section] = dict(data[section], rows=rows, shown=len(rows))
    scheduler = data.get("scheduler")
    if isinstance(scheduler, Mapping) and isinstance(scheduler.get("decisions"), Mapping):
        decisions = scheduler["decisions"]
        rows = [r for r in decisions.get("rows", []) if keep(r, "chosen_worker_id")]
        out["scheduler"] = dict(scheduler, decisions=dict(decisions, rows=rows))
    return out


def earlier_export_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """The demo export's earlier keys, from the report's data: ``timestamp`` (when the report was
    made), ``worker_tasks`` (worker id -> the ids of the tasks it ran, newest first) and
    ``task_details`` (task id -> its usage row, as in ``tasks.rows``)."""
    worker_tasks: dict[str, list[str]] = {}
    task_details: dict[str, Any] = {}
    for row in (data.get("tasks") or {}).get("rows", []):
        worker_tasks.setdefault(str(row.get("worker_id")), []).append(str(row.get("task_id")))
        task_details[str(row.get("task_id"))] = row
    return {"timestamp": data.get("generated_at"), "worker_tasks": worker_tasks, "task_details": task_details}
